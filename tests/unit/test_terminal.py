"""The one escaping function of semctl's views: what it escapes, and what it leaves alone."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from semantica.control.terminal import cell, printable

BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cs") or char in BIDI or char in "\u2028\u2029"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[2J", "\\x1b[2J"),
        ("bell\x07", "bell\\x07"),
        ("back\bspace", "back\\x08space"),
        ("a\rb\nc\td", "a\\rb\\nc\\td"),
        ("\x7f\x85\x9b", "\\x7f\\x85\\x9b"),
        ("\u202egnp.exe", "\\u202egnp.exe"),
        ("\u2066x\u2069", "\\u2066x\\u2069"),
        ("line\u2028sep", "line\\u2028sep"),
        ("lone \udcff", "lone \\udcff"),
        ("\x00", "\\x00"),
    ],
)
def test_controls_become_visible_escapes(text: str, shown: str) -> None:
    assert printable(text) == shown


@pytest.mark.parametrize(
    "text",
    ["plain", "[red]x[/]", "C:\\path\\x1b", "naïve ✓ 日本語", "👩‍👩‍👧 (a joiner inside)", ""],
)
def test_other_text_is_left_as_it_is(text: str) -> None:
    """Brackets, backslashes, accents, CJK and emoji joiners are not controls."""
    assert printable(text) == text


@given(st.text())
def test_nothing_unsafe_survives(text: str) -> None:
    assert not any(_unsafe(c) for c in printable(text))


def test_a_cell_is_text_not_markup() -> None:
    """rich would read `[/x]` as a closing tag (and raise); a cell holds it as text."""
    assert cell("[/x] [red]x").plain == "[/x] [red]x"
    assert cell(None).plain == "-"


def test_every_character_escaped_is_one_python_calls_unprintable() -> None:
    """printable returns text that str.isprintable accepts as it is, without its pattern:
    that holds only while every character the pattern escapes is one it refuses."""
    import re
    import sys

    from semantica.control import terminal

    unsafe = re.compile(terminal._UNSAFE)
    everything = "".join(map(chr, range(sys.maxunicode + 1)))
    escaped = {match.group() for match in unsafe.finditer(everything)}
    assert len(escaped) > 1000  # C0, C1, surrogates, tags, ...
    assert not [char for char in escaped if char.isprintable()]


def test_semctl_compiles_no_escaping_pattern_at_import() -> None:
    # ~1 ms of every semctl start, for text that mostly needs no escape.
    import re

    from semantica.control import terminal

    assert not [value for value in vars(terminal).values() if isinstance(value, re.Pattern)]
