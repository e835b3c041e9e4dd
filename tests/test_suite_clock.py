"""The suite's own clock hygiene: no test module reads the clock while it is collected.

A date taken at collection (a parametrize argument such as ``days_ago(10)`` in an expected
message) is compared with dates the app takes when the test runs, up to twenty minutes
later: when a site's midnight falls between the two, the test fails (it did, at 05:57 UTC,
23:57 in Chicago). xdist also requires every worker to collect the same test ids, which a
date in an id breaks across midnight. Read the clock inside the test, or in a ``lambda``.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent
CLOCK_READERS = {
    "today",
    "utcnow",
    "days_ago",
    "hours_ago",
    "earlier_today",
    "site_today",
    "user_today",
    "now",
}


def clock_reads_at_collection(tree: ast.AST) -> list[tuple[int, str]]:
    """Calls of ``CLOCK_READERS`` run when the module is imported: at module or class level,
    in decorators and in default arguments; never inside a function body or a lambda."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Lambda):
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for child in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
                if child is not None:
                    visit(child)
            return
        if isinstance(node, ast.Call):
            func = node.func
            name = getattr(func, "id", None) or getattr(func, "attr", None)
            if name in CLOCK_READERS:
                found.append((node.lineno, ast.unparse(node)))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_no_test_module_reads_the_clock_while_it_is_collected():
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{line}: {call}"
        for path in sorted(TESTS.rglob("*.py"))
        for line, call in clock_reads_at_collection(ast.parse(path.read_text()))
    ]
    assert offenders == []


def test_the_check_finds_a_date_in_a_parametrize_argument():
    source = (
        "import pytest\n"
        "@pytest.mark.parametrize('m', [f'on {days_ago(10)}', lambda: today()])\n"
        "def test_x(m, when=utcnow()):\n"
        "    assert today()\n"
        "LIMIT = dt.date.today()\n"
    )
    found = [call for _, call in clock_reads_at_collection(ast.parse(source))]
    assert found == ["days_ago(10)", "utcnow()", "dt.date.today()"]
