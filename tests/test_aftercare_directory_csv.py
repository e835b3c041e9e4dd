"""The aftercare directory as a CSV file (issue 12): an import is all or nothing, with a
report naming each refused row and why; a malformed file (not UTF-8, NUL bytes, bad
quoting, unknown or missing columns, too large, too many rows) is refused whole; the
export is filtered, escaped against formula injection, audited, and imports again."""

from __future__ import annotations

import csv
import io
import re

import pytest
import sqlalchemy as sa

from clinic.aftercare import directory_csv
from clinic.aftercare.models import AftercareResource
from clinic.extensions import db
from tests import test_aftercare_directory as directory_tests
from tests.test_aftercare_directory import TODAY, _count, _events, _token, group, residence

# The directory tests' fixtures, shared.
actor = directory_tests.actor
make_resource = directory_tests.make_resource

HEADER = "name,kind,narr_level,support_group_type,city,state,zip,accepts_moud,accepts_methadone,beds_total,beds_available,beds_confirmed_on,meeting_times,active\n"  # noqa: E501


def _csv(*rows: str) -> bytes:
    return (HEADER + "".join(r + "\n" for r in rows)).encode()


GOOD_ROWS = (
    "Harbor House,recovery_residence,II,,Chicago,IL,60601,yes,yes,8,2,2026-11-10,,yes",
    "Tuesday NA,support_group,,na,Chicago,IL,,unknown,unknown,,,,Tuesdays 7 pm,yes",
    "Old Outpatient,Continuing outpatient care,,,Joliet,il,,no,no,,,,,no",
)


def upload(client, raw: bytes, *, check_only: bool = False, filename: str = "dir.csv"):
    page = client.get("/aftercare/resources/import").get_data(as_text=True)
    data = {"submission_token": _token(page), "file": (io.BytesIO(raw), filename)}
    if check_only:
        data["check_only"] = "y"
    return client.submit(
        "/aftercare/resources/import",
        data,
        form_url="/aftercare/resources/import",
        content_type="multipart/form-data",
    )


def test_a_good_file_is_imported_whole(app, client_as):
    staff = client_as("staff")
    response = upload(staff, _csv(*GOOD_ROWS))
    assert response.status_code == 302
    assert _count(app) == 3
    with app.app_context():
        rows = {r.name: r for r in db.session.scalars(sa.select(AftercareResource))}
        assert rows["Old Outpatient"].active is False
        assert rows["Old Outpatient"].state == "IL"
        assert rows["Tuesday NA"].meeting_times == "Tuesdays 7 pm"
    assert len(_events(app, "create")) == 3


def test_check_only_imports_nothing(app, client_as):
    staff = client_as("staff")
    response = upload(staff, _csv(*GOOD_ROWS), check_only=True)
    assert response.status_code == 200
    assert "all 3 rows can be imported" in response.get_data(as_text=True)
    assert _count(app) == 0


def test_one_bad_row_imports_nothing_and_the_report_names_it(app, client_as):
    staff = client_as("staff")
    rows = [*GOOD_ROWS, "Bad House,recovery_residence,II,,Chicago,IL,,yes,yes,3,5,2026-11-10,,yes"]
    response = upload(staff, _csv(*rows))
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert _count(app) == 0
    refused = re.findall(r'data-testid="refused-row"><td>(\d+)</td><td>([^<]*)</td>', body)
    assert refused == [("5", "beds_available")]
    assert "cannot be more than the total" in body
    assert _events(app, "create") == []


def test_the_report_lists_every_refused_row(app):
    raw = _csv(
        "A,castle,,,,,,,,,,,,",
        "B,support_group,II,na,,,,,,,,,,",
        "C,recovery_residence,,,,,,no,yes,,,,,",
        "D,halfway_house,,,,,,,,abc,,,,",
        "E,halfway_house,,,,,,,,9999999999999,,,,",
        "F,halfway_house,,,,,,,,4,1,31/02/2026,,",
        "G,halfway_house,,,,,,,,,,,,maybe",
        "H,halfway_house,,,,,,,,,,,,,extra,cells",
    )
    with app.app_context():
        _rows, report = directory_csv.read_directory(raw, today=TODAY)
    assert [(p.row, p.column) for p in report.problems] == [
        (2, "kind"),
        (3, "narr_level"),
        (4, "accepts_methadone"),
        (5, "beds_total"),
        (6, "beds_total"),
        (7, "beds_confirmed_on"),
        (8, "active"),
        (9, None),
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty"),
        (HEADER.encode(), "no resources"),
        (_csv(GOOD_ROWS[0]).replace(b"Harbor", b"Har\x00bor"), "NUL bytes"),
        ("name,kind\nCafé Élan,peer_support\n".encode("latin-1"), "not UTF-8"),
        (b'name,kind\n"Harbor House,recovery_residence\n', "not valid CSV"),
        (b"title,kind\nX,peer_support\n", "does not have"),
        (b"name,name,kind\nX,Y,peer_support\n", "twice"),
        (b"city\nChicago\n", "no name"),
        (b"name,kind\n" + b"X,peer_support\n" * 2001, "more than 2000 rows"),
    ],
)
def test_a_malformed_file_is_refused_whole(app, client_as, raw, message):
    staff = client_as("staff")
    response = upload(staff, raw)
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in body
    assert _count(app) == 0


def test_a_file_over_the_size_limit_is_refused_unread(app, client_as, monkeypatch):
    # A small limit: a test upload over 500 KB would be spooled to a file the test client
    # never closes.
    monkeypatch.setattr(directory_csv, "MAX_BYTES", 2_000)
    staff = client_as("staff")
    response = upload(staff, b"name,kind\n" + b"X,peer_support\n" * 200)
    assert response.status_code == 400
    assert "larger than 2 KB" in response.get_data(as_text=True)
    monkeypatch.setattr(directory_csv, "MAX_BYTES", 100)
    monkeypatch.setattr("clinic.aftercare.directory_views._REQUEST_SLACK", 0)
    response = upload(staff, b"name,kind\n" + b"X,peer_support\n" * 200)
    assert response.status_code == 400
    assert "larger than 0 KB" in response.get_data(as_text=True)
    assert _count(app) == 0


def test_no_file_chosen(app, client_as):
    staff = client_as("staff")
    page = staff.get("/aftercare/resources/import").get_data(as_text=True)
    response = staff.submit("/aftercare/resources/import", {"submission_token": _token(page)})
    assert response.status_code == 400
    assert "Choose the CSV file" in response.get_data(as_text=True)


def test_a_double_submitted_import_imports_once(app, client_as):
    staff = client_as("staff")
    page = staff.get("/aftercare/resources/import").get_data(as_text=True)
    token = _token(page)
    for _ in range(2):
        response = staff.submit(
            "/aftercare/resources/import",
            {"submission_token": token, "file": (io.BytesIO(_csv(*GOOD_ROWS)), "d.csv")},
            form_url="/aftercare/resources/import",
            content_type="multipart/form-data",
        )
        assert response.status_code == 302
    assert _count(app) == 3


def test_export_escapes_formulas_and_is_audited(app, client_as, make_resource):
    make_resource(residence(name='=HYPERLINK("http://x")', notes="@SUM(A1)"))
    make_resource(group(name="-2+3 group", contact_name="+Ann"))
    staff = client_as("staff")
    response = staff.get("/aftercare/resources/export.csv?kind=support_group")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == list(directory_csv.COLUMNS)
    assert len(rows) == 2  # the filter applies
    assert rows[1][0] == "'-2+3 group"
    assert rows[1][directory_csv.COLUMNS.index("contact_person")] == "'+Ann"
    everything = staff.get("/aftercare/resources/export.csv").get_data(as_text=True)
    assert "'=HYPERLINK" in everything and "'@SUM(A1)" in everything
    [first, _second] = _events(app, "export")
    assert '"rows":1' in first.details.replace(" ", "")


def test_an_export_imports_again(app, client_as, make_resource):
    make_resource()
    make_resource(group(name="=odd name"))
    staff = client_as("staff")
    exported = staff.get("/aftercare/resources/export.csv").get_data()
    with app.app_context():
        rows, report = directory_csv.read_directory(exported, today=TODAY)
    assert report.ok, report
    assert sorted(r.name for r, _active in rows) == ["=odd name", "Harbor House"]


def test_the_real_size_limit_is_checked_before_reading(app):
    raw = b"name,kind\n" + b"x" * directory_csv.MAX_BYTES
    with app.app_context():
        rows, report = directory_csv.read_directory(raw)
    assert rows == [] and "larger than 1,000 KB" in report.file_problem


def test_a_bom_and_crlf_line_ends_are_read(app):
    raw = '\ufeffname,kind,notes\r\nHarbor,peer_support,"two\r\nlines"\r\n'.encode()
    with app.app_context():
        rows, report = directory_csv.read_directory(raw)
    assert report.ok
    assert rows[0][0].notes == "two\nlines"
