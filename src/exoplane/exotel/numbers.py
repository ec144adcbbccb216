"""Phone number normalisation to E.164, with the Indian forms Exotel users type (seed 04)."""

from __future__ import annotations

import re

import phonenumbers

_SEPARATORS = re.compile(r"[\s\-().]")
# Once separators are gone, a number is digits alone: no extension, no trailing characters.
_DIGITS = re.compile(r"^\+?[0-9]+$")
# The national forms accepted without a leading '+', each a 10-digit Indian number with a
# prefix: none (mobiles only, 6-9), the country code, the international prefix, or the trunk 0.
_INDIAN_FORMS = re.compile(r"^(?:[6-9]\d{9}|91\d{10}|0091\d{10}|0\d{10})$")


class InvalidPhoneNumber(ValueError):
    pass


def normalise_phone_number(raw: str) -> str:
    """Return ``raw`` as E.164 (``+919876543210``), or raise ``InvalidPhoneNumber``.

    Accepted: ``+<country><number>`` for any valid number, and for India a bare 10-digit
    mobile (6-9), ``91…``, ``0091…`` and ``0…`` forms. Idempotent on its own output.
    """
    compact = _SEPARATORS.sub("", raw.strip())
    if not _DIGITS.match(compact):
        # phonenumbers would read an extension or trailing letters, and drop them.
        raise InvalidPhoneNumber(
            f"{raw!r} is not a phone number we can read: use digits only, with no extension, "
            "as E.164 such as +919876543210 or an Indian national form"
        )
    if compact.startswith("+"):
        candidate, region = compact, None
    elif _INDIAN_FORMS.match(compact):
        candidate, region = compact, "IN"
    else:
        raise InvalidPhoneNumber(
            f"{raw!r} is not a phone number we can read: use E.164 such as +919876543210, "
            "or an Indian number as 10 digits, 0XXXXXXXXXX, 91XXXXXXXXXX or 0091XXXXXXXXXX"
        )
    try:
        parsed = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"{raw!r} is not a valid phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber(f"{raw!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
