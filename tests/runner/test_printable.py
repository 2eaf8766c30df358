"""Text made safe to show (runner.printable): hidden and reordering characters written out
as escapes, newlines and tabs kept, in nested data too."""

from __future__ import annotations

from runner.printable import printable, printable_data


def test_controls_and_bidi_overrides_are_written_as_escapes() -> None:
    assert printable("abc\u202edef") == "abc\\u202edef"
    assert printable("ring\x07") == "ring\\x07"
    assert printable("zero\u200bwidth\ufeff") == "zero\\u200bwidth\\ufeff"


def test_newlines_tabs_and_ordinary_unicode_stay() -> None:
    assert printable("a\tb\nc é 漢") == "a\tb\nc é 漢"


def test_nested_data_has_every_string_made_printable() -> None:
    value = {"k\u202e": ["x\x00", ("y", 1)], "n": None}

    assert printable_data(value) == {"k\\u202e": ["x\\x00", ["y", 1]], "n": None}
