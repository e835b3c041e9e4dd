"""The text rule every form shares (clinic.forms): what a text input may and may not carry."""

from __future__ import annotations

import pytest

from clinic.forms import has_control_characters

REFUSED_EVERYWHERE = {
    "NUL": "adm\x00in",
    "ESC": "a\x1bb",
    "DEL": "a\x7fb",
    "C1 (NEL)": "a\x85b",
    "right-to-left override": "a\u202eb",
    "first-strong isolate": "a\u2068b",
    "left-to-right mark": "a\u200eb",
    "arabic letter mark": "a\u061cb",
    "zero-width space": "Proga\u200bb",
    "word joiner": "a\u2060b",
    "byte-order mark": "a\ufeffb",
    "line separator": "Zeda\u2028b",
    "paragraph separator": "a\u2029b",
}


@pytest.mark.parametrize("text", REFUSED_EVERYWHERE.values(), ids=REFUSED_EVERYWHERE.keys())
def test_invisible_and_control_characters_are_refused_in_every_kind_of_input(text):
    assert has_control_characters(text)
    assert has_control_characters(text, multi_line=True)


@pytest.mark.parametrize("text", ["a\tb", "a\nb", "a\r\nb"], ids=["tab", "LF", "CRLF"])
def test_tabs_and_line_breaks_only_in_a_textarea(text):
    assert has_control_characters(text)
    assert not has_control_characters(text, multi_line=True)


@pytest.mark.parametrize(
    "name",
    [
        "میر\u200cعلی",  # Persian: a zero-width non-joiner belongs in the spelling
        "क्\u200dष",  # Devanagari: a zero-width joiner selects the conjunct form
        "Иван Петров",
        "Ανδρέας",
        "王小明",
        "O'Brien-Núñez",
    ],
)
def test_names_in_any_script_pass(name):
    assert not has_control_characters(name)
