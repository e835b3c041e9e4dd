"""stored phone numbers and ZIP codes in their canonical form

Revision ID: b5c6d7e8f9a0
Revises: b4c5d6e7f8a9
Create Date: 2026-11-29 10:30:00

Phone numbers and ZIP codes stored before they were validated are rewritten as the app
now stores them: phones in E.164 ("(312) 555-0147" -> "+13125550147"), ZIP codes as five
digits or ZIP+4 ("606011234" -> "60601-1234"), by the same functions the app uses
(``clinic.patients.contact``: pure, no app needed). A value that does not parse stays as
it was typed (the pages show it so). Data only; no schema change.

- Batched by primary key (``BATCH`` rows read, only the changed rows written), so a large
  table is never held in memory and each statement stays small; the same SQL on SQLite
  and PostgreSQL.
- Records entered in error are left alone: they are frozen history, and the patient
  table's update trigger (d4e5f6a7b8c9, ``patient_entered_in_error``) refuses any UPDATE
  of them. The trigger's other rule fires on ``intake_date`` only, untouched here.
- ``version`` (the optimistic lock) is not bumped: the stored value means the same
  number, and a form opened before the upgrade sends it back in a form that normalises
  to the same value.
- Downgrade: nothing to undo (the typed form is not kept, and the canonical one is valid
  input for the earlier code too).
"""

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

import clinic.db  # noqa: F401  (custom column types)
from clinic.patients.contact import InvalidContact, normalise_phone, normalise_zip

# revision identifiers, used by Alembic.
revision = "b5c6d7e8f9a0"
down_revision = "b4c5d6e7f8a9"
branch_labels = None
depends_on = None

BATCH = 500
# Every stored phone number and ZIP code column, with the function that canonicalises it.
COLUMNS: dict[str, Callable[[str | None], str | None]] = {
    "phone": normalise_phone,
    "emergency_contact_phone": normalise_phone,
    "postal_code": normalise_zip,
}

patient = sa.table(
    "patient",
    sa.column("id", sa.Integer),
    sa.column("entered_in_error_at", sa.DateTime),
    *(sa.column(name, sa.String) for name in COLUMNS),
)


def canonical(value: str | None, normalise: Callable[[str | None], str | None]) -> str | None:
    """``value`` in canonical form, or unchanged when it does not parse (or is blank)."""
    if value is None:
        return None
    try:
        result = normalise(value)
    except InvalidContact:
        return value
    return value if result is None else result


def upgrade() -> None:
    conn = op.get_bind()
    last_id = 0
    while True:
        rows = conn.execute(
            sa.select(patient.c.id, *(patient.c[name] for name in COLUMNS))
            .where(patient.c.id > last_id, patient.c.entered_in_error_at.is_(None))
            .order_by(patient.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        last_id = rows[-1].id
        for row in rows:
            changes = {
                name: new
                for name, normalise in COLUMNS.items()
                if (new := canonical(getattr(row, name), normalise)) != getattr(row, name)
            }
            if changes:
                conn.execute(patient.update().where(patient.c.id == row.id).values(**changes))


def downgrade() -> None:
    pass
