"""The page benchmark's results: the comparison of the sizes (statements, growth exponent
k), the targets of issue 15, and the files ``bench/results/pages-<engine>.md|json`` and
``plans-<engine>.md``."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from bench.pages_catalog import HOT, NETWORK_REPORT, SITE_REPORT

RESULTS = Path(__file__).resolve().parent / "results"
HOT_MEDIAN_MS, HOT_P95_MS = 20.0, 60.0
SITE_REPORT_MS, NETWORK_REPORT_MS = 1000.0, 5000.0
PER_PATIENT_K = 0.1
# "Deep pages as fast as page 1": within half again of page 1, or 2 ms (timer noise).
DEEP_FACTOR, DEEP_SLACK_MS = 1.5, 2.0


def _by_key(pages: list[dict]) -> dict[str, dict]:
    return {p["key"]: p for p in pages}


def compare_sizes(sizes: dict[str, dict]) -> dict[str, dict]:
    """Per page: the statements at each size, whether they are the same, and
    k = log10(median at the largest size / median at the smallest)."""
    names = list(sizes)
    small, large = names[0], names[-1]
    compared: dict[str, dict] = {}
    for key, first in _by_key(sizes[small]["pages"]).items():
        entry = {
            "statements": {
                n: _by_key(sizes[n]["pages"]).get(key, {}).get("statements") for n in names
            }
        }
        counts = list(entry["statements"].values())
        entry["statements_same"] = None if None in counts else len(set(counts)) == 1
        last = _by_key(sizes[large]["pages"]).get(key, {})
        if small != large and first.get("median_ms") and last.get("median_ms"):
            entry["k"] = round(math.log10(last["median_ms"] / first["median_ms"]), 2)
            # The same from the ratios to the trivial endpoint: robust to a machine whose
            # load changed between the sizes (the medians are not).
            entry["k_ratio"] = round(math.log10(last["ratio"] / first["ratio"]), 2)
        compared[key] = entry
    return compared


def targets(pages: list[dict], meta: dict[str, dict], compared: dict[str, dict]) -> dict:
    """Per page with a target: what it is and whether it is met (None: not measured)."""
    by_key = _by_key(pages)
    checks: dict[str, dict] = {}
    for key, page in by_key.items():
        spec, median, p95 = meta[key], page.get("median_ms"), page.get("p95_ms")
        found = []
        if spec["target"] == HOT:
            found.append(
                (
                    f"median < {HOT_MEDIAN_MS:g} ms, p95 < {HOT_P95_MS:g} ms",
                    None if median is None else median < HOT_MEDIAN_MS and p95 < HOT_P95_MS,
                )
            )
        elif spec["target"] == SITE_REPORT:
            found.append(
                (
                    f"< {SITE_REPORT_MS / 1000:g} s",
                    None if median is None else median < SITE_REPORT_MS,
                )
            )
        elif spec["target"] == NETWORK_REPORT:
            found.append(
                (
                    f"< {NETWORK_REPORT_MS / 1000:g} s",
                    None if median is None else median < NETWORK_REPORT_MS,
                )
            )
        if spec["deep_of"]:
            first = by_key.get(spec["deep_of"], {}).get("median_ms")
            ok = None
            if median is not None and first is not None:
                ok = median <= max(first * DEEP_FACTOR, first + DEEP_SLACK_MS)
            found.append((f"≈ {spec['deep_of']} (≤ 1.5 x or +2 ms)", ok))
        if spec["per_patient"]:
            k = compared.get(key, {}).get("k")
            k_ratio = compared.get(key, {}).get("k_ratio")
            found.append(
                (
                    f"k ≤ {PER_PATIENT_K} (from the medians and from the ratios)",
                    None if k is None else k <= PER_PATIENT_K and k_ratio <= PER_PATIENT_K,
                )
            )
        if found:
            checks[key] = {
                "target": "; ".join(t for t, _ in found),
                # Missed when any part is missed; unknown when a part was not measured.
                "met": False
                if any(ok is False for _, ok in found)
                else (None if any(ok is None for _, ok in found) else True),
            }
    return checks


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(run: dict) -> list[str]:
    """The Markdown table of one engine's run: a column group per size."""
    sizes = run["sizes"]
    names = list(sizes)
    compared, checks = run["compared"], run["targets"]
    head = ["Page"]
    for n in names:
        head += [f"{n} median ms", f"{n} p95 ms", f"{n} x trivial", f"{n} SQL ms"]
    head += ["statements", "k", "k (ratios)", "target", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, first in _by_key(sizes[names[0]]["pages"]).items():
        # The largest size's title: a deep page's number may differ (the last page at S).
        row = [_by_key(sizes[names[-1]]["pages"]).get(key, first)["title"]]
        for n in names:
            page = _by_key(sizes[n]["pages"]).get(key, {})
            if page.get("errors") and "median_ms" not in page:
                row += ["failed", "", "", ""]
                continue
            row += [_fmt(page.get(k)) for k in ("median_ms", "p95_ms", "ratio", "sql_median_ms")]
        entry = compared.get(key, {})
        counts = entry.get("statements", {})
        shown = "/".join(_fmt(counts.get(n)) for n in names)
        if any(len(_by_key(sizes[n]["pages"]).get(key, {}).get("statements_seen", [])) > 1
               for n in names):  # fmt: skip
            shown += " (varies with the patient)"
        if entry.get("statements_same") is False:
            shown += " **differ**"
        check = checks.get(key, {})
        met = {True: "yes", False: "**no**", None: "—"}[check.get("met")] if check else ""
        row += [shown, _fmt(entry.get("k"), 2), _fmt(entry.get("k_ratio"), 2)]
        row += [check.get("target", ""), met]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def rewrite(engine: str) -> Path:
    """Write ``pages-<engine>.md`` again from its ``.json`` (and the full scans listed in
    ``plans-<engine>.md``), e.g. after a change of this module's layout."""
    base = RESULTS / f"pages-{engine}"
    run = json.loads(base.with_suffix(".json").read_text())
    run["compared"] = compare_sizes(run["sizes"])
    largest = list(run["sizes"].values())[-1]["pages"]
    run["targets"] = targets(largest, {p["key"]: p["meta"] for p in largest}, run["compared"])
    scans = re.findall(
        r"^### (.+) — full scan of (.+)$",
        (RESULTS / f"plans-{engine}.md").read_text(),
        re.MULTILINE,
    )
    plans = {"all": [{"pages": p.split(", "), "full_scans": t.split(", ")} for p, t in scans]}
    return write_results(run, plans, write_plan_file=False)


def write_results(run: dict, plans: dict[str, list[dict]], write_plan_file: bool = True) -> Path:
    """Write ``pages-<engine>.md`` and ``.json`` and ``plans-<engine>.md``; return the base."""
    RESULTS.mkdir(exist_ok=True)
    engine = run.get("name", run["engine"])
    base = RESULTS / f"pages-{engine}"
    clean = json.loads(json.dumps(run, default=str))
    for size in clean["sizes"].values():
        for page in size["pages"]:
            page.pop("_statements", None)
    base.with_suffix(".json").write_text(json.dumps(clean, indent=1, ensure_ascii=False) + "\n")
    facts = run["facts"]
    lines = [
        f"# Page benchmark — {engine}",
        "",
        f"{run['date']}; {facts['engine_version']}; {facts['cpus']} CPUs ({facts['platform']});"
        f" Python {facts['python']}. `{run['command']}`",
        "",
        "Median and 95th percentile of each page over the runs (in-process, the Flask test"
        " client, signed in through /login), and its median over the median of the trivial"
        " endpoint (`GET /healthz`) timed interleaved with it. Statements: per request,"
        " compared between the sizes. k = log10(median at the larger size / median at the"
        " smaller); k (ratios) the same from the ratios to the trivial endpoint (robust to a"
        " change of the machine's load between the sizes). Targets (issue 15) are for"
        " PostgreSQL at size M; shown here for the largest size of this run.",
        "",
    ]
    for name, size in run["sizes"].items():
        data = size["dataset"]
        lines.append(
            f"- **{name}**: {_fmt(data.get('patients'))} patients,"
            f" {_fmt(data.get('sites'))} site(s);"
            f" {', '.join(f'{t} {n:,}' for t, n in data.get('rows', {}).items())};"
            f" load {_fmt(data.get('load_s'))} s; load average {size['load_average_before']}"
            f" before the timings, {size['load_average_after']} after; {size['runs']} runs"
            f" a page ({size['report_runs']} a report); today {data.get('today')}"
        )
    lines += ["", *table(run), ""]
    missed = [k for k, c in run["targets"].items() if c["met"] is False]
    lines.append(f"Targets missed: {', '.join(missed) if missed else 'none'}.")
    differ = [k for k, c in run["compared"].items() if c.get("statements_same") is False]
    lines.append(f"Statement counts that differ between sizes: {', '.join(differ) or 'none'}.")
    scans = sorted(
        {
            f"{page}: {t}"
            for size in plans.values()
            for p in size
            for page in p["pages"]
            for t in p["full_scans"]
        }
    )
    lines.append(
        f"Full scans of watched tables in the hot pages' plans: {'; '.join(scans) or 'none'}"
        f" (`plans-{engine}.md`)."
    )
    errors = [
        (n, p["key"], p["errors"][0])
        for n, s in run["sizes"].items()
        for p in s["pages"]
        if p.get("errors")
    ]
    for name, key, error in errors:
        lines.append(f"- error at {name}, {key}: {error}")
    if run.get("load_test"):
        lines += ["", *load_test_lines(run["load_test"])]
    base.with_suffix(".md").write_text("\n".join(lines) + "\n")
    if write_plan_file:
        write_plans(engine, plans)
    return base


def load_test_lines(result: dict) -> list[str]:
    """The HTTP load test's headline figures (``bench.load.run_load``'s dict)."""
    lines = ["## HTTP load test (`bench/load.py`, at the largest size)", ""]
    if "error" in result and len(result) == 1:
        return [*lines, f"Failed: {result['error']}"]
    for key in (
        "ok",
        "site",
        "today",
        "gunicorn_workers",
        "throughput_rps",
        "doses_recorded",
        "lost",
        "doubled",
        "unexpected",
        "audit_chain",
    ):
        if key in result:
            lines.append(f"- {key}: {result[key]}")
    for kind, figures in (result.get("by_kind") or {}).items():
        lines.append(f"- {kind}: {json.dumps(figures, default=str)}")
    if result.get("errors"):
        lines.append(f"- errors: {json.dumps(result['errors'], default=str)[:1500]}")
    return lines


def write_plans(engine: str, plans: dict[str, list[dict]]) -> None:
    label = (
        "EXPLAIN (ANALYZE, BUFFERS)" if engine.startswith("postgresql") else "EXPLAIN QUERY PLAN"
    )
    lines = [f"# Query plans of the hot pages — {engine} ({label})", ""]
    for size, explained in plans.items():
        lines += [f"## Size {size}", ""]
        flagged = [p for p in explained if p["full_scans"]]
        lines.append(
            "Full scans of watched tables: "
            + (
                "; ".join(
                    f"{', '.join(p['pages'])} ({', '.join(p['full_scans'])})" for p in flagged
                )
                or "none"
            )
        )
        lines.append("")
        for item in explained:
            title = ", ".join(item["pages"])
            scans = f" — full scan of {', '.join(item['full_scans'])}" if item["full_scans"] else ""
            lines += [
                f"### {title}{scans}",
                "",
                "```sql",
                item["statement"].strip(),
                "```",
                "",
                "```",
                item["plan"],
                "```",
                "",
            ]
    (RESULTS / f"plans-{engine}.md").write_text("\n".join(lines) + "\n")
