"""URL converters: ids are bounded where they are parsed.

Every ``<int:...>`` in a URL rule names a database id (an ``INTEGER`` column: at most
2,147,483,647 on PostgreSQL, 2**63 - 1 on SQLite). Werkzeug's own ``int`` converter
passes any number of digits to the view, and the database then refuses the value with an
error (a 500): ``/patients/2147483648`` on PostgreSQL, ``/patients/99999999999999999999``
on SQLite. ``BoundedIntConverter`` replaces ``int`` for the whole app (``create_app``
registers it before any blueprint), so every existing and future rule is covered.
"""

from __future__ import annotations

from werkzeug.routing import IntegerConverter

# PostgreSQL's INTEGER, the narrowest id column of both engines.
DATABASE_INT_MAX = 2**31 - 1
# Ids start at 1 on both engines (identity / autoincrement): 0 names no row.
NO_SUCH_ID = 0


class BoundedIntConverter(IntegerConverter):
    """``<int:...>`` for database ids: ASCII digits only, and a number beyond the database
    integer range becomes ``NO_SUCH_ID`` (0).

    Why 0 rather than refusing the match: a refused match is a 404 from the router, before
    the view, so nothing would be audited. With 0 the view runs its ordinary not-found path
    (load then authorise), which records ``access_denied`` and answers 404 — the same
    answer, and the same audit event, as for any other id that does not exist. The event
    names id 0, never the digits that were typed.

    Rules that give ``min``/``max``/``fixed_digits`` keep Werkzeug's meaning (the router
    answers 404 for values outside them).
    """

    # Werkzeug's "\d+" also matches other scripts' digits ("١٢"), which int() accepts.
    regex = r"[0-9]+"
    signed_regex = r"-?[0-9]+"

    def to_python(self, value: str) -> int:
        number = super().to_python(value)
        if not -DATABASE_INT_MAX - 1 <= number <= DATABASE_INT_MAX:
            return NO_SUCH_ID
        return number
