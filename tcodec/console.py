"""What the commands print on stderr, and the exit codes that are not an error class's.

Shared by ``tcodec.cli`` and ``tcodec bench`` (which the CLI imports), so neither
reaches back into the other. Exit codes of errors live with their classes in
:mod:`tcodec.errors`; the README's "Exit codes" table lists them all.
"""

from __future__ import annotations

import signal
import sys

from tcodec.errors import one_line

EXIT_SOME_FAILED = 6  # some files of a folder (or measurements of a bench) failed; each was reported
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_TERMINATED = 128 + signal.SIGTERM


def say(kind: str, text: str) -> None:
    """One line on stderr, ``tcodec: error: ...``, with control characters escaped."""
    if sys.stderr is not None:
        print(f"tcodec: {kind}: {one_line(text, 1000)}", file=sys.stderr)
