"""Amounts in mg, as typed: the package's one parser, shared by medication orders
(``orders``), their forms and the dose ledger (``ledger``) — ASCII digits and one decimal
point only, above 0, at most ``DOSE_CEILING_MG``, to 0.01 mg (``MG_QUANTUM``).

Why so strict: a dose is a controlled-substance record (21 CFR 1304.24(a): the amount
dispensed) and an order's dose feeds the 42 CFR 8.12(h)(3)(ii) first-day limit, so an
amount that ``Decimal()`` would read differently from what the person meant ("1e2",
"1_0", "1,5", non-ASCII digits) is refused, never guessed.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from clinic.errors import DomainError
from clinic.medications.models import DOSE_CEILING_MG, MG_QUANTUM, format_mg

# An amount as typed: ASCII digits with at most one decimal point. No thousands separator
# ("1,5" is not 15 mg), no exponent ("1e2" is not 100 mg), no digit grouping ("1_0").
_MG_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def parse_mg(value: Decimal | str | int | None, *, field: str, label: str = "dose") -> Decimal:
    """An amount in mg as an exact decimal: above 0, at most the ceiling, to 0.01 mg."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DomainError(f"Enter the {label} in mg.", field=field)
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        amount = Decimal(value)
    else:
        text = str(value).strip()
        if not _MG_TEXT.fullmatch(text):
            if "," in text:
                raise DomainError(
                    f"Write the {label} with a point for decimals and no commas, e.g. 62.5.",
                    field=field,
                )
            raise DomainError(f"Enter the {label} as a number of mg, e.g. 62.5.", field=field)
        try:
            amount = Decimal(text)
        except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
            raise DomainError(
                f"Enter the {label} as a number of mg, e.g. 62.5.", field=field
            ) from None
    if not amount.is_finite():
        raise DomainError(f"Enter the {label} as a number of mg, e.g. 62.5.", field=field)
    if amount <= 0:
        raise DomainError(f"The {label} must be more than 0 mg.", field=field)
    if amount > DOSE_CEILING_MG:
        raise DomainError(
            f"{'An' if label[:1] in 'aeiou' else 'A'} {label} above "
            f"{format_mg(DOSE_CEILING_MG)} mg is not possible: check the amount.",
            field=field,
        )
    if amount != amount.quantize(MG_QUANTUM):
        raise DomainError(f"Give the {label} to at most two decimals (0.01 mg).", field=field)
    return amount.quantize(MG_QUANTUM)
