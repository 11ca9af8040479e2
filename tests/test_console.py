"""The progress bar: shown on a terminal only, and a bar inside a bar shows nothing."""

import io
import sys

from tcodec.console import progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_inside_a_bar_is_silent(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress_bar(2, "files") as advance:
        with progress_bar(3, "steps") as step:  # Rich allows one live display: this one must not start
            step()
        advance()
        advance()
    with progress_bar(1, "again") as advance:  # the first bar's end lets the next one show
        advance()
    assert "files" in terminal.getvalue() and "again" in terminal.getvalue()
    assert "steps" not in terminal.getvalue()


def test_no_bar_off_a_terminal(monkeypatch):
    quiet = io.StringIO()
    monkeypatch.setattr(sys, "stderr", quiet)
    with progress_bar(2, "files") as advance:
        advance()
    assert quiet.getvalue() == ""
