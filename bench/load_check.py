"""What ``bench/load.py`` concludes from a load run: the timings of each kind of request
(from the client's log and the server's request log) and the checks of the ledger against
what the nurses were told.

How the app keeps a dose from being recorded twice (``clinic.medications.ledger``,
``clinic.web.save``, ``clinic.submissions``), which the checks follow:

- each dose of a patient's site-local day takes the next ``slot``; the unique constraint
  ``uq_dose_entry_patient_day_slot`` lets one of two racing nurses save, and the order row
  is locked (``SELECT ... FOR UPDATE``) so the second sees the first's dose: refused with
  ``RACE_MESSAGE`` (409), or "already dosed" on the page;
- a daily order gives one dose a day, a split order two portions whose total is the
  order's dose (split doses are legitimately two rows);
- the form's submission token (``form_submission.token``, unique) makes a post sent twice
  — a resend or a double click — save once and show the first result.

So, from the database, after the run: every post the server acknowledged (a redirect to the
screen) created exactly one ledger row, found through its ``X-Request-ID`` in the audit
event of the row's creation; no submission token created two rows; no patient has more
given doses on the day than the order allows; every row written during the run comes from
an acknowledged post (none unexpected); the audit chain written under load is one line
(consecutive ``seq``, each event linked to the one before).
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

# The kinds of request of the dosing loop (the sign-in is reported apart).
LOOP_KINDS = ("dosing screen", "dose form", "record dose")


def percentile(values: list[float], share: float) -> float:
    """The ``share`` (0-1) percentile, linearly interpolated."""
    ordered = sorted(values)
    position = share * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _ms(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50_ms": round(statistics.median(values), 1),
        "p95_ms": round(percentile(values, 0.95), 1),
        "max_ms": round(max(values), 1),
    }


def read_client_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def read_server_log(path: Path) -> tuple[dict[str, dict], list[dict]]:
    """(request lines by request id, unhandled exceptions) from the app's JSON log on
    gunicorn's stderr; other lines (gunicorn's own) are skipped."""
    requests: dict[str, dict] = {}
    exceptions = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "request" and entry.get("request_id"):
            requests[entry["request_id"]] = entry
        elif "exc_type" in entry:
            exceptions.append(
                {
                    "rule": entry.get("rule"),
                    "method": entry.get("method"),
                    "exc_type": entry.get("exc_type"),
                    "request_id": entry.get("request_id"),
                    "traceback_end": (entry.get("traceback") or "")[-600:],
                }
            )
    return requests, exceptions


def timings(entries: list[dict], server: dict[str, dict]) -> dict:
    """Per kind of request: client p50/p95/max (ms, queueing for a worker included) and
    the app's own (``duration_ms`` of its request log); throughput of the dosing loop."""
    timed = [e for e in entries if "ms" in e]
    by_kind: dict[str, dict] = {}
    for kind in dict.fromkeys(e["kind"] for e in timed):
        mine = [e for e in timed if e["kind"] == kind]
        in_app = [
            server[e["request_id"]]["duration_ms"]
            for e in mine
            if e["request_id"] in server and server[e["request_id"]].get("duration_ms") is not None
        ]
        by_kind[kind] = {"client": _ms([e["ms"] for e in mine]), "server": _ms(in_app)}
    loop = [e for e in timed if e["kind"] in LOOP_KINDS]
    if not loop:
        return {"by_kind": by_kind, "requests": 0, "seconds": 0.0, "throughput_rps": 0.0}
    first = min(e["t"] for e in loop)
    last = max(e["t"] + e["ms"] / 1000 for e in loop)
    seconds = max(last - first, 1e-9)
    return {
        "by_kind": by_kind,
        "requests": len(loop),
        "seconds": round(seconds, 1),
        "throughput_rps": round(len(loop) / seconds, 1),
    }


def errors(entries: list[dict], exceptions: list[dict]) -> dict:
    """Answers no nurse should get: by kind of request and status (5xx, any 4xx but the
    409 of a refused race, and 0: no answer — refused connection, timeout), and the
    server's unhandled exceptions."""
    by_kind: Counter[str] = Counter()
    for e in entries:
        status = e.get("status")
        unwanted = status == 0 or (status is not None and status >= 400 and status != 409)
        if "ms" in e and unwanted:
            by_kind[f"{e['kind']} {status}"] += 1
    return {
        "by_kind": dict(by_kind),
        "http_5xx": sum(1 for e in entries if "ms" in e and e.get("status", 0) >= 500),
        "unhandled_exceptions": exceptions,
    }


def outcomes(entries: list[dict]) -> dict:
    """What the nurses were told: posts by outcome (and the refusals' messages), forms
    found dosed before they opened, loops with nobody left to dose, sends of one form
    twice (``how``: resend, double click)."""
    posts = [e for e in entries if e["kind"] == "record dose"]
    messages = Counter(e.get("message") or "" for e in posts if e.get("outcome") == "refused")
    return {
        "posts": dict(Counter(e.get("outcome") for e in posts)),
        "refusal_messages": dict(messages),
        "posts_by_how": dict(Counter(e.get("how") for e in posts)),
        "forms": dict(
            Counter(e["outcome"] for e in entries if e["kind"] == "dose form" and "outcome" in e)
        ),
        "nobody_left_to_dose": sum(1 for e in entries if e["kind"] == "pick"),
    }


def check_ledger(conn: sa.Connection, entries: list[dict], baseline: dict) -> dict:
    """The ledger after the run against what the nurses were told (module docstring).
    ``baseline``: ``{"dose_id": highest dose_entry id, "audit_seq": highest seq}`` before
    the run. Returns counts (``lost``, ``doubled`` ...) and up to 20 examples of each."""
    posts = [e for e in entries if e["kind"] == "record dose"]
    post_by_rid = {e["request_id"]: e for e in posts}
    rows = conn.execute(
        sa.text(
            "SELECT d.id, d.patient_id, d.kind, d.dispensed_on, d.amount_mg, u.username,"
            " (SELECT a.request_id FROM audit_event a WHERE a.seq > :seq"
            "  AND a.entity_type = 'dose_entry' AND a.action = 'create'"
            "  AND a.entity_id = CAST(d.id AS VARCHAR(64)) LIMIT 1) AS request_id"
            " FROM dose_entry d JOIN app_user u ON u.id = d.dispenser_id"
            " WHERE d.id > :dose_id ORDER BY d.id"
        ),
        {"seq": baseline["audit_seq"], "dose_id": baseline["dose_id"]},
    ).all()
    examples: dict[str, list] = defaultdict(list)
    problems: Counter[str] = Counter()

    def found(problem: str, example: dict) -> None:
        problems[problem] += 1
        if len(examples[problem]) < 20:
            examples[problem].append(example)

    rows_by_token: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        post = post_by_rid.get(row.request_id)
        if post is None:
            found("unexpected", {"dose_id": row.id, "why": "no post of the load created it"})
            continue
        why = []
        if post.get("outcome") != "acknowledged":
            why.append(f"its post was {post.get('outcome')}")
        if row.kind != "observed" or row.patient_id != post.get("patient_id"):
            why.append("another kind or patient than posted")
        if row.username != post["nurse"]:
            why.append("another dispenser than the nurse")
        if why:
            found("unexpected", {"dose_id": row.id, "why": "; ".join(why)})
        rows_by_token[post["token"]].append(row.id)
    acknowledged = {e["token"] for e in posts if e.get("outcome") == "acknowledged"}
    for token in acknowledged:
        made = rows_by_token.get(token, [])
        if not made:
            found("lost", {"token": token[:8], "why": "acknowledged, not in the ledger"})
    for token, made in rows_by_token.items():
        if len(made) > 1:
            found("doubled", {"token": token[:8], "dose_ids": made, "why": "one form, two rows"})
    days = _doses_per_day(conn, sorted({row.patient_id for row in rows}), rows)
    for (patient_id, day), (schedule, count, total, ordered) in days.items():
        allowed = 2 if schedule == "split" else 1
        if count > allowed or (ordered is not None and total > ordered):
            found(
                "doubled",
                {"patient_id": patient_id, "day": str(day), "given": count, "schedule": schedule},
            )
    return {
        "rows_written": len(rows),
        "acknowledged_posts": sum(1 for e in posts if e.get("outcome") == "acknowledged"),
        "acknowledged_forms": len(acknowledged),
        "lost": problems["lost"],
        "doubled": problems["doubled"],
        "unexpected": problems["unexpected"],
        "patients_dosed": len({row.patient_id for row in rows}),
        "split_second_portions": sum(1 for c in days.values() if c[0] == "split" and c[1] == 2),
        "examples": {k: v for k, v in examples.items() if v},
    }


def _doses_per_day(conn: sa.Connection, patient_ids: list[int], rows) -> dict:
    """(patient, day) -> (schedule, doses given and not reversed, their total mg, the
    order's dose mg) on the days the run wrote to, all rows of those days counted."""
    if not patient_ids:
        return {}
    days = sorted({row.dispensed_on for row in rows})
    given = conn.execute(
        sa.text(
            "SELECT d.patient_id, d.dispensed_on, o.schedule, COUNT(*), SUM(d.amount_mg),"
            " MAX(o.dose_mg) FROM dose_entry d JOIN medication_order o ON o.id = d.order_id"
            " WHERE d.patient_id IN :patients AND d.dispensed_on IN :days"
            " AND d.kind IN ('observed', 'injection')"
            " AND NOT EXISTS (SELECT 1 FROM dose_entry r WHERE r.reverses_id = d.id)"
            " GROUP BY d.patient_id, d.dispensed_on, o.schedule"
        ).bindparams(
            sa.bindparam("patients", expanding=True), sa.bindparam("days", expanding=True)
        ),
        {"patients": patient_ids, "days": days},
    ).all()
    return {
        (p, day): (schedule, count, Decimal(total or 0), Decimal(dose) if dose else None)
        for p, day, schedule, count, total, dose in given
    }


def check_audit_chain(conn: sa.Connection, since_seq: int) -> dict:
    """The events appended during the run form one line: consecutive ``seq`` from
    ``since_seq + 1``, each linking to the hash of the one before, the chain head on the
    last. (The hashes themselves are ``flask audit verify``'s business.)"""
    rows = conn.execute(
        sa.text("SELECT seq, prev_hash, hash FROM audit_event WHERE seq >= :s ORDER BY seq"),
        {"s": since_seq},
    ).all()
    head = conn.execute(sa.text("SELECT last_seq, last_hash FROM audit_chain_head")).one()
    broken = [
        b.seq for a, b in itertools.pairwise(rows) if b.seq != a.seq + 1 or b.prev_hash != a.hash
    ]
    last = rows[-1] if rows else None
    head_ok = last is None or (head.last_seq == last.seq and head.last_hash == last.hash)
    return {
        "events": max(len(rows) - 1, 0),
        "linear": not broken and head_ok,
        "broken_at": broken[:10],
    }
