"""Attacks on the aftercare directory's CSV (task X12): malformed files, bad and odd cells,
formula injection on export; nothing half-imported, never a crash."""

from __future__ import annotations

import datetime as dt

import pytest

from clinic.accounts.models import User
from clinic.aftercare.models import AftercareResource
from clinic.extensions import db
from tests.test_aftercare_referrals import _count
from tests.test_aftercare_referrals import aftercare as aftercare_fixture  # noqa: F401


@pytest.fixture
def ids(aftercare_fixture):  # noqa: F811
    """``test_aftercare_referrals.aftercare``: a patient, two residences, a support person,
    staff (ids)."""
    return aftercare_fixture


def _read(app, raw: bytes):
    from clinic.aftercare import directory_csv

    with app.app_context():
        return directory_csv.read_directory(raw, today=dt.date(2026, 11, 29))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"name;kind\nHarbor;recovery_residence\n", "does not have"),
        (bytes(range(1, 256)) * 40, "not UTF-8"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "NUL"),
        (b'name,kind\n"Harbor ""House,recovery_residence\n', "not valid CSV"),
        (b"name,kind\nX," + b"a" * 200_000 + b"\n", "not valid CSV"),
        (b"name,kind\n" + b"x,a\n" * 100_000, "more than 2000 rows"),
        (b"\xef\xbb\xbf\xef\xbb\xbfname,kind\nX,peer_support\n", "does not have"),
        (b"name,kind,\nX,peer_support,\n", "does not have"),
    ],
    ids=[
        "semicolons",
        "binary",
        "png",
        "stray quote",
        "a 200 KB cell",
        "100k rows",
        "two BOMs",
        "a nameless column",
    ],
)
def test_a_malformed_directory_file_is_refused_whole_with_a_reason(app, raw, expected):
    rows, report = _read(app, raw)
    assert rows == []
    assert report.file_problem is not None
    assert expected in report.file_problem


@pytest.mark.parametrize(
    ("row", "column"),
    [
        ("Harbor,recovery_residence,,99999999999999999999,2,2026-11-10", "beds_total"),
        ("Harbor,recovery_residence,,4,5,2026-11-10", "beds_available"),
        ("Harbor,recovery_residence,,4,-1,2026-11-10", "beds_available"),
        ("Harbor,recovery_residence,,4,1,", "beds_confirmed_on"),
        ("Harbor,recovery_residence,,4,1,2026-02-30", "beds_confirmed_on"),
        ("Group,peer_support,III,,,", "narr_level"),
        ("Group,peer_support,,4,1,2026-11-10", "beds_total"),
        ("Harbor\u202egnp.exe,recovery_residence,,,,", "name"),
        ("Harbor\x07,recovery_residence,,,,", "name"),
    ],
)
def test_a_bad_directory_row_is_named_and_nothing_is_imported(app, ids, row, column):
    from clinic.aftercare import directory_csv

    raw = (
        "name,kind,narr_level,beds_total,beds_available,beds_confirmed_on\n"
        "Good Home,recovery_residence,II,4,1,2026-11-10\n" + row + "\n"
    ).encode()
    before = _count(app, AftercareResource)
    with app.test_request_context():
        with pytest.raises(directory_csv.ImportRefused) as refused:
            directory_csv.import_directory(
                raw, actor=db.session.get(User, ids["staff"]), today=dt.date(2026, 11, 29)
            )
        db.session.rollback()
    problems = refused.value.report.problems
    assert [(p.row, p.column) for p in problems] == [(3, column)], problems
    assert _count(app, AftercareResource) == before


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\t", "\r"])
def test_every_exported_text_cell_is_escaped_and_reads_back_as_stored(app, ids, prefix):
    from clinic.aftercare import directory_csv

    payload = f'{prefix}HYPERLINK("http://evil")'
    with app.app_context():
        resource = db.session.get(AftercareResource, ids["home"])
        resource.contact_name = payload.strip()
        resource.notes = payload.strip()
        db.session.commit()
        text = "".join(directory_csv.export_lines([directory_csv.export_row(resource)]))
    import csv
    import io

    rows = list(csv.reader(io.StringIO(text, newline="")))
    for cell in rows[1]:
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    checked, report = _read(app, text.encode())
    assert report.ok, report
    assert checked[0][0].contact_name == payload.strip()


ODD_CELLS = [
    ("state", "I L"),
    ("state", "Íl"),
    ("state", "ILL"),
    ("zip", "6060"),
    ("zip", "60601-123"),
    ("zip", "606011234"),
    ("zip", "\uff16\uff10\uff16\uff10\uff11"),  # full-width digits
    ("phone", "+1 217 555 0101 ext 5"),
    ("phone", "1" * 40),
    ("phone", "\uff12\uff11\uff17\uff15\uff15\uff15\uff10\uff11\uff10\uff11"),
    ("email", "a@b"),
    ("email", "x" * 300 + "@b.org"),
    ("contact_person", "x" * 500),
    ("street", "x" * 500),
    ("city", "x" * 500),
    ("name", "x" * 500),
    ("meeting_times", "Tuesdays"),
    ("beds_total", "0"),
    ("beds_available", "0"),
    ("beds_confirmed_on", "2999-01-01"),
    ("beds_confirmed_on", "0001-01-01"),
    ("gender_served", "WOMEN"),
    ("site_area", "main"),
    ("narr_level", "iv"),
    ("notes", "line one\nline two"),
    ("notes", "x" * 3000),
    ("accepts_moud", "maybe"),
]


@pytest.mark.parametrize(("column", "value"), ODD_CELLS)
def test_an_odd_directory_cell_is_imported_or_refused_never_a_crash(app, ids, column, value):
    """Whatever a cell holds, the import stores a row the database accepts or refuses the
    file with the row named: never an IntegrityError (a 500) half-way."""
    import csv
    import io

    from clinic.aftercare import directory_csv

    row = {
        "name": "Odd House",
        "kind": "recovery_residence",
        "beds_total": "4",
        "beds_available": "1",
        "beds_confirmed_on": "2026-11-20",
        column: value,
    }
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(list(row))
    writer.writerow(list(row.values()))
    before = _count(app, AftercareResource)
    with app.test_request_context():
        try:
            report = directory_csv.import_directory(
                buffer.getvalue().encode(),
                actor=db.session.get(User, ids["staff"]),
                today=dt.date(2026, 11, 29),
            )
            db.session.commit()
            assert report.imported == 1
            imported = True
        except directory_csv.ImportRefused as refused:
            db.session.rollback()
            assert refused.report.problems or refused.report.file_problem
            imported = False
    assert _count(app, AftercareResource) == before + (1 if imported else 0)
