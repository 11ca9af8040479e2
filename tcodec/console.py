"""What the commands share: one-line messages and a progress bar on stderr, ``KEY=VALUE``
options, and the exit codes that are not an error class's.

Shared by ``tcodec.cli`` and ``tcodec bench`` (which the CLI imports), so neither
reaches back into the other. Exit codes of errors live with their classes in
:mod:`tcodec.errors`; the README's "Exit codes" table lists them all.
"""

from __future__ import annotations

import signal
import sys

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tcodec.errors import InputError, one_line

EXIT_SOME_FAILED = 6  # some files of a folder (or measurements of a bench) failed; each was reported
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_TERMINATED = 128 + signal.SIGTERM


def say(kind: str, text: str) -> None:
    """One line on stderr, ``tcodec: error: ...``, with control characters escaped."""
    if sys.stderr is not None:
        print(f"tcodec: {kind}: {one_line(text, 1000)}", file=sys.stderr)


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[], None]]:
    """A Rich progress bar on stderr while it is a terminal (else nothing); yields the
    function that advances it by one. Lines :func:`say` prints meanwhile go above it.
    While one bar shows, others (a slow file's steps inside a folder's files) show nothing."""
    global _bar_showing
    if sys.stderr is None or not sys.stderr.isatty() or _bar_showing:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    _bar_showing = True
    try:
        with Progress(label, BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(label, total=total)
            yield lambda: bar.advance(task)
    finally:
        _bar_showing = False


_bar_showing = False


def parse_options(items: list[str], form: str = "KEY=VALUE") -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``; InputError names ``form`` for a bad item."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"option {item!r} is not {form}")
        options[key] = value
    return options
