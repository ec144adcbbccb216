"""Number normalisation (SPEC §6.3): Indian national forms and E.164, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exoplane.exotel.numbers import InvalidPhoneNumber, normalise_phone_number


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("9876543210", "+919876543210"),
        ("6123456789", "+916123456789"),
        ("919876543210", "+919876543210"),
        ("00919876543210", "+919876543210"),
        ("09876543210", "+919876543210"),
        ("+919876543210", "+919876543210"),
        ("+91 98765 43210", "+919876543210"),
        ("098765-43210", "+919876543210"),
        ("08047491899", "+918047491899"),
        ("+14155552671", "+14155552671"),
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
def test_accepted_forms_become_e164(raw: str, expected: str) -> None:
    assert normalise_phone_number(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "12345",
        "5876543210",
        "98765432101",
        "+9198765432101",
        "+1 555",
        "not a number",
        "sip:agent@example.com",
        "+91abcdefghij",
    ],
)
def test_anything_else_is_refused_with_a_usable_message(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as error:
        normalise_phone_number(raw)
    assert "+91" in str(error.value) or "not a valid phone number" in str(error.value)


@pytest.mark.parametrize(
    "raw",
    [
        "+919876543210ext5",
        "+919876543210 ext. 5",
        "+919876543210x5",
        "+919876543210#",
        "9876543210a",
    ],
)
def test_an_extension_or_trailing_characters_are_refused_not_dropped(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as error:
        normalise_phone_number(raw)
    assert "extension" in str(error.value)


@given(st.text(alphabet="0123456789+ -()", max_size=20))
def test_normalising_twice_equals_normalising_once(raw: str) -> None:
    try:
        once = normalise_phone_number(raw)
    except InvalidPhoneNumber:
        return
    assert normalise_phone_number(once) == once


@given(st.from_regex(r"[6-9][0-9]{9}", fullmatch=True))
def test_every_indian_mobile_form_gives_the_same_number(digits: str) -> None:
    forms = [digits, "91" + digits, "0091" + digits, "0" + digits, "+91" + digits]
    results = set()
    for form in forms:
        try:
            results.add(normalise_phone_number(form))
        except InvalidPhoneNumber:
            results.add("invalid")
    assert len(results) == 1
