"""The virtual nurses of ``bench/load.py`` (a locustfile: run by ``locust``, never imported
by the app or the tests).

Each user signs in through the real ``/login`` form (its CSRF token read from the page) as
an account of its own, from a workstation address of its own; when every nurse is signed
in, all of them dose for ``seconds``, then stop (the last one ends the run). Each loops:
open the dosing
screen, pick a patient still to dose among the first ``pick_from`` dose-able rows of the
list (every nurse sees the same list, so two nurses often pick the same patient at the
same moment), open the record-a-dose form, and post it as the page filled it (date of
birth confirmed, the amount the order asks for). Now and then a post is sent twice: again
after its answer (a resend) or twice at once (a double click) — the app must save it once.

The client plays the TLS-terminating proxy the app runs behind in production: it sends
``X-Forwarded-Proto: https`` and ``X-Forwarded-For`` (the app trusts one proxy,
``PROXY_FIX_X_FOR=1``), and sends back the ``Secure`` session cookie as a browser would
over HTTPS (``requests`` keeps a ``Secure`` cookie off plain HTTP, so the client keeps its
cookies itself: ``Cookies``). Every request goes to ``127.0.0.1`` only.

Configuration: a JSON file named by ``$LOAD_CONFIG`` (written by ``bench/load.py``):
``accounts`` ([{username, password, address}]), ``seconds``, ``log`` (the JSON-lines file
each request is written to), ``pick_from``, ``resend_share``, ``double_click_share``,
``seed``.
"""

from __future__ import annotations

import html
import itertools
import json
import os
import random
import re
import time
import uuid
from urllib.parse import urlsplit

import gevent
from gevent.event import Event
from locust import HttpUser, task
from locust.exception import StopUser

CONFIG = json.loads(open(os.environ["LOAD_CONFIG"], encoding="utf-8").read())  # noqa: SIM115
LOG = open(CONFIG["log"], "a", encoding="utf-8", buffering=1)  # noqa: SIM115 (closed at exit)
ACCOUNTS = itertools.count()
RUN = uuid.uuid4().hex[:6]
# The start line: every nurse signed in (or refused); then ``seconds`` of dosing.
ALL_SIGNED_IN = Event()
RUN_STATE = {"signed_in": 0, "refused": 0, "finished": 0, "deadline": float("inf")}

ROW = re.compile(r'<tr data-patient-id="(\d+)" class="([^"]*)">(.*?)</tr>', re.S)
HIDDEN = re.compile(r'<input\b[^>]*\bname="([a-z_]+)"[^>]*>')
VALUE = re.compile(r'\bvalue="([^"]*)"')
ERRORS = re.compile(r'class="(?:invalid-feedback|alert alert-danger)[^"]*"[^>]*>(.*?)</div>', re.S)
TAGS = re.compile(r"<[^>]+>")
# ``clinic.medications.ledger.RACE_MESSAGE``, as the page shows it.
RACE_WORDS = "recorded at the same moment"


def form_fields(page: str, marker: str = 'id="dose-form"') -> dict[str, str]:
    """The named inputs of the form whose tag holds ``marker`` (default: the dose form);
    empty when the page has no such form."""
    start = page.find(marker)
    if start < 0:
        return {}
    end = page.find("</form>", start)
    fields = {}
    for match in HIDDEN.finditer(page, start, end):
        value = VALUE.search(match.group(0))
        fields[match.group(1)] = html.unescape(value.group(1)) if value else ""
    return fields


def page_errors(page: str) -> str:
    found = [" ".join(TAGS.sub(" ", m).split()) for m in ERRORS.findall(page)]
    return "; ".join(f for f in found if f)[:200]


def dose_able(screen: str) -> list[int]:
    """Patient ids of the screen's rows a nurse may dose now, in the list's order: a link
    to the dose page, not dosed in full today, no hold or missed-days review (the red
    badges) and no warning flag left to acknowledge."""
    ids = []
    for patient_id, css, cells in ROW.findall(screen):
        if "dosing-done" in css or "dosing-select" not in cells:
            continue
        if "text-bg-danger" in cells or "(to acknowledge)" in cells:
            continue
        ids.append(int(patient_id))
    return ids


class Cookies:
    """The cookies the app set, sent back in a ``Cookie`` header (``Secure`` ones too: the
    client stands in for the TLS proxy; see the module docstring)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def header(self) -> dict[str, str]:
        if not self.values:
            return {}
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.values.items())}

    def keep(self, response) -> None:
        now = time.time()
        for cookie in response.cookies:
            if cookie.value == "" or (cookie.expires is not None and cookie.expires <= now):
                self.values.pop(cookie.name, None)
            else:
                self.values[cookie.name] = cookie.value


class Nurse(HttpUser):
    """One nurse at a dosing window (no think time: the load is as high as the server
    answers)."""

    def on_start(self) -> None:
        host = urlsplit(self.host)
        if host.hostname != "127.0.0.1":
            raise RuntimeError("the load test runs against 127.0.0.1 only")
        number = next(ACCOUNTS)
        account = CONFIG["accounts"][number]
        self.nurse = account["username"]
        self.rng = random.Random(f"{CONFIG['seed']}-{number}")
        self.requests = itertools.count(1)
        self.cookies = Cookies()
        self.client.headers.update(
            {
                "X-Forwarded-For": account["address"],
                "X-Forwarded-Proto": "https",
                "Sec-Fetch-Site": "same-origin",
                "User-Agent": f"clinic-bench-load/{number}",
            }
        )
        page = self.call("GET", "/login", "login page")
        token = form_fields(page.text, marker='<form method="post"')
        answer = self.call(
            "POST",
            "/login",
            "sign in",
            data={
                "csrf_token": token.get("csrf_token", ""),
                "username": account["username"],
                "password": account["password"],
            },
        )
        signed_in = answer.status_code == 302 and "/login" not in answer.headers.get("Location", "")
        RUN_STATE["signed_in" if signed_in else "refused"] += 1
        if RUN_STATE["signed_in"] + RUN_STATE["refused"] == len(CONFIG["accounts"]):
            RUN_STATE["deadline"] = time.time() + CONFIG["seconds"]
            ALL_SIGNED_IN.set()
        if not signed_in:
            raise RuntimeError(f"{self.nurse} could not sign in ({answer.status_code})")
        ALL_SIGNED_IN.wait()

    # --- one request, timed and written down -----------------------------------------

    def call(self, method: str, path: str, kind: str, *, data=None, judge=None, **facts):
        """Send one request (never following a redirect) and write it down: kind, start,
        milliseconds, status, request id, ``facts`` and what ``judge(response)`` adds."""
        request_id = f"load-{RUN}-{self.nurse}-{next(self.requests)}"
        started_at = time.time()
        started = time.perf_counter()
        with self.client.request(
            method,
            path,
            name=kind,
            data=data,
            headers={"X-Request-ID": request_id, **self.cookies.header()},
            allow_redirects=False,
            catch_response=True,
        ) as response:
            ms = (time.perf_counter() - started) * 1000
            self.cookies.keep(response)
            self.client.cookies.clear()  # never sent over plain HTTP: ours are
            # 2xx, 3xx and a refused race (409) are answers the app means to give; 0 is
            # no answer at all (refused connection, timeout).
            if 0 < response.status_code < 400 or response.status_code == 409:
                response.success()
            else:
                response.failure(f"HTTP {response.status_code}")
        if judge is not None:
            facts.update(judge(response))
        self.write(
            kind=kind,
            t=round(started_at, 3),
            ms=round(ms, 2),
            status=response.status_code,
            request_id=request_id,
            **facts,
        )
        return response

    def write(self, **entry) -> None:
        LOG.write(json.dumps({"nurse": self.nurse, **entry}) + "\n")

    def note(self, kind: str, outcome: str, **facts) -> None:
        self.write(kind=kind, outcome=outcome, t=round(time.time(), 3), **facts)

    # --- the dosing loop ---------------------------------------------------------------

    @task
    def dose_a_patient(self) -> None:
        if time.time() >= RUN_STATE["deadline"]:
            RUN_STATE["finished"] += 1
            if RUN_STATE["finished"] == RUN_STATE["signed_in"]:
                gevent.spawn(self.environment.runner.quit)  # the last nurse ends the run
            raise StopUser()
        screen = self.call("GET", "/dosing/", "dosing screen")
        if screen.status_code != 200:
            return
        candidates = dose_able(screen.text)[: CONFIG["pick_from"]]
        if not candidates:
            self.note("pick", "nobody left to dose")
            gevent.sleep(1)
            return
        patient_id = self.rng.choice(candidates)
        path = f"/dosing/patients/{patient_id}/dose"
        page = self.call("GET", path, "dose form", patient_id=patient_id)
        if page.status_code != 200:
            return
        fields = form_fields(page.text)
        if not fields:
            dosed = 'data-testid="dosed"' in page.text
            outcome = "dosed before it opened" if dosed else "refused before the form"
            self.note("dose form", outcome, patient_id=patient_id)
            return
        body = {
            "csrf_token": fields.get("csrf_token", ""),
            "submission_token": fields.get("submission_token", ""),
            "given_count": fields.get("given_count", ""),
            "dob_confirmed": "y",
            "amount_mg": fields.get("amount_mg", ""),
            "reason": "",
            "station": f"Window {self.nurse[-2:]}",
        }
        token = body["submission_token"]
        roll = self.rng.random()
        if roll < CONFIG["double_click_share"]:
            # Two posts of the same form at once (a double click).
            posts = [
                gevent.spawn(self.post_dose, path, body, patient_id, token, "double click")
                for _ in range(2)
            ]
            gevent.joinall(posts)
            return
        answer = self.post_dose(path, body, patient_id, token, "once")
        if answer == 302 and roll < CONFIG["double_click_share"] + CONFIG["resend_share"]:
            self.post_dose(path, body, patient_id, token, "resend")

    def post_dose(self, path: str, body: dict, patient_id: int, token: str, how: str) -> int:
        response = self.call(
            "POST",
            path,
            "record dose",
            data=body,
            judge=dose_outcome,
            patient_id=patient_id,
            token=token,
            how=how,
        )
        return response.status_code


def dose_outcome(response) -> dict:
    """What a post of the dose form came to, as the nurse sees it: ``acknowledged`` (the
    redirect to the screen), ``race refused`` (409 with the race message), ``refused``
    (the form again, with its error), or ``error``."""
    status = response.status_code
    if status == 302:
        location = urlsplit(response.headers.get("Location", "")).path
        return {"outcome": "acknowledged" if location.startswith("/dosing/") else "redirected"}
    if status in (200, 409):
        if status == 409:
            outcome = "race refused" if RACE_WORDS in response.text else "conflict"
        else:
            outcome = "refused"
        return {"outcome": outcome, "message": page_errors(response.text)}
    return {"outcome": "error"}
