"""CSV files that a spreadsheet opens as data, never as formulas ("CSV injection").

Excel, LibreOffice and Google Sheets evaluate a cell that starts with ``=``, ``+``, ``-``
or ``@`` as a formula, and tab or carriage return before one of them too, so a value an
outsider controls (a forwarded IP header, a name, a free-text reason) could run
``=HYPERLINK(...)`` or DDE (``=cmd|' /C calc'!A0``) on the reader's computer. Every text
cell that starts with one of those characters is prefixed with a single quote, as OWASP
recommends (https://owasp.org/www-community/attacks/CSV_Injection); the ``csv`` module
then quotes the cell where its content needs it. Numbers, dates and None are written as
they are: a spreadsheet reads them as values.

Every CSV export of the app writes its rows through ``safe_row()`` (or ``csv_lines()``):
the leading quote in an exported cell means "escaped", not part of the stored value.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value: Any) -> Any:
    """``value`` made safe for a spreadsheet: a string starting with ``=``, ``+``, ``-``,
    ``@``, tab or CR gets a leading ``'``; any other value is returned unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def safe_row(values: Iterable[Any]) -> list[Any]:
    """One row with every cell passed through ``escape_cell()``; dates and datetimes as
    ISO 8601."""
    return [
        escape_cell(v.isoformat() if isinstance(v, dt.date | dt.datetime) else v) for v in values
    ]


def csv_lines(
    header: Iterable[str], rows: Iterable[Iterable[Any]], *, chunk_size: int = 64_000
) -> Iterator[str]:
    """The CSV text of ``header`` and ``rows``, escaped, in chunks of about ``chunk_size``
    characters (for a streamed response)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(safe_row(header))
    for row in rows:
        writer.writerow(safe_row(row))
        if buffer.tell() > chunk_size:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
