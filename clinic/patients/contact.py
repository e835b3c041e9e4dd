"""Phone numbers and US ZIP codes of patients and their emergency contacts.

Phone numbers are parsed and validated with ``phonenumbers`` (Google's libphonenumber
metadata, updated with each numbering-plan change): a number without a country code is
read as a US number; it is stored in E.164 ("+13125550147") and shown formatted
("(312) 555-0147"; numbers of other countries in international format).

ZIP codes follow the USPS format: five digits, or ZIP+4 ("12345-6789"; nine digits typed
without the hyphen get one). No library is used for them: the format is all there is to
check offline (the packages that know which ZIP codes exist ship census snapshots that
age, and a patient's new ZIP code must not be refused for being newer than the data).

States are the USPS two-letter codes (Publication 28, appendix B): the 50 states, DC, the
territories, the freely associated states and the military "states" AA, AE and AP. The
list is a constant: the maintained ``us`` package knows the states and territories but
not the military codes, and would bring a compiled dependency (jellyfish) for 62 codes
that have not changed in decades.
"""

from __future__ import annotations

import re

import phonenumbers

DEFAULT_REGION = "US"
PHONE_MESSAGE = "Enter a phone number with its area code, for example (312) 555-0147."
ZIP_MESSAGE = "Enter a 5-digit ZIP code, or ZIP+4 such as 60601-1234."
STATE_MESSAGE = (
    "Enter the two-letter USPS code of a US state or territory, for example IL "
    "(military mail: AA, AE or AP)."
)
_ZIP = re.compile(r"(\d{5})(?:-?(\d{4}))?")

# fmt: off
USPS_STATES = frozenset({
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN",
    "IA", "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV",
    "NH", "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN",
    "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY",
})
# fmt: on
USPS_DISTRICT_AND_TERRITORIES = frozenset({"DC", "PR", "GU", "VI", "AS", "MP"})
USPS_FREELY_ASSOCIATED = frozenset({"FM", "MH", "PW"})  # Micronesia, Marshall Is., Palau
USPS_MILITARY = frozenset({"AA", "AE", "AP"})  # Armed Forces Americas, Europe, Pacific
USPS_STATE_CODES = (
    USPS_STATES | USPS_DISTRICT_AND_TERRITORIES | USPS_FREELY_ASSOCIATED | USPS_MILITARY
)


class InvalidContact(ValueError):
    """A phone number or ZIP code that is not one; ``message`` says what to enter."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def normalise_phone(text: str | None) -> str | None:
    """ "(312) 555-0147" -> "+13125550147"; None or blank -> None. Raises InvalidContact
    for anything libphonenumber does not hold to be a valid number ("call me maybe",
    "555-0100" without its area code, too many digits)."""
    if text is None or not text.strip():
        return None
    try:
        number = phonenumbers.parse(text, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        raise InvalidContact(PHONE_MESSAGE) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidContact(PHONE_MESSAGE)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def format_phone(stored: str | None) -> str:
    """A stored number as people read it: "+13125550147" -> "(312) 555-0147", a number of
    another country in international format; a value stored before numbers were checked
    is shown as it was typed."""
    if not stored:
        return ""
    try:
        number = phonenumbers.parse(stored, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return stored
    if not phonenumbers.is_valid_number(number):
        return stored
    if phonenumbers.region_code_for_number(number) == DEFAULT_REGION:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def normalise_zip(text: str | None) -> str | None:
    """ "60601" -> "60601"; "60601-1234" and "606011234" -> "60601-1234"; blank -> None.
    Raises InvalidContact otherwise ("ABCDE", "6060", "60601-12")."""
    if text is None or not text.strip():
        return None
    match = _ZIP.fullmatch(text.strip())
    if match is None:
        raise InvalidContact(ZIP_MESSAGE)
    five, four = match.groups()
    return f"{five}-{four}" if four else five


def normalise_state(text: str | None) -> str | None:
    """ "il" and " IL " -> "IL"; blank -> None. Raises InvalidContact for anything that is
    not a USPS state or territory code ("ZZ", "Illinois")."""
    if text is None or not text.strip():
        return None
    code = text.strip().upper()
    if code not in USPS_STATE_CODES:
        raise InvalidContact(STATE_MESSAGE)
    return code
