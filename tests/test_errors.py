import pytest

from tcodec.errors import BrokenPipe, OutputError, OutputExistsError, one_line, printable


@pytest.mark.parametrize("raw, shown", [
    ("a red door", "a red door"),
    ("café 東京", "café 東京"),
    ("title\x1b]0;pwned\x07", "title\\x1b]0;pwned\\x07"),
    ("line\r\nmodel_hash  0000", "line\\r\\nmodel_hash  0000"),
    ("right\u202eto left", "right\\u202eto left"),
    ("c1\x9bcontrol, del\x7f", "c1\\x9bcontrol, del\\x7f"),
    ("tab\tand nbsp\u00a0", "tab\\tand nbsp\\xa0"),
])
def test_printable_escapes_what_a_terminal_would_act_on(raw, shown):
    assert printable(raw) == shown
    assert printable(shown) == shown  # escaped text stays as it is


def test_one_line_squeezes_escapes_and_drops_reprs():
    message = "cannot identify image file <_io.BytesIO object at 0x7f3a2c>\n  from\x1b[2J here"
    assert one_line(message) == "cannot identify image file the input from\\x1b[2J here"
    assert one_line("x" * 400, limit=20) == "x" * 17 + "..."


def test_error_classes():
    assert issubclass(OutputExistsError, OutputError) and OutputExistsError.exit_code == 7
    assert issubclass(BrokenPipe, OutputError) and BrokenPipe.exit_code == 141
