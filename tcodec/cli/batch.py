"""Converting whole folders: plan the jobs, run them in parallel, report as they finish.

A folder run mirrors the input tree under the output folder, skips outputs that exist
(unless forced), reports a bad file and carries on with the rest. Each output is
written atomically, so an interrupted run can simply be run again. :class:`Conversion`
is the per-file work that both engines run, this module's threads and
:mod:`tcodec.cli.ray_batch`'s Ray actors.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tcodec.caption_files import CaptionSource
from tcodec.console import progress_bar
from tcodec.errors import InputError, OutputExistsError, TcodecError
from tcodec.fileio import read_input, read_stdin
from tcodec.limits import Limits


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


@dataclass(frozen=True)
class FileResult:
    bytes_in: int
    bytes_out: int
    pixels: int
    notes: tuple[str, ...] = ()
    made_caption: str | None = None  # --caption auto: the caption made from its pixels, shown to the user

    def report(self, source: str, report: Callable[[str, str], None]) -> None:
        """What the user is told of a converted file: the caption made for it, its notes."""
        if self.made_caption is not None:
            report("info", f'{source}: caption "{self.made_caption}"')
        for note in self.notes:
            report("warning", f"{source}: {note}")


@dataclass(frozen=True)
class Conversion:
    """What encode and decode tell the shared file/stdin/folder logic, and the one
    per-file conversion every engine runs (``--engine local`` here, ``ray`` on workers,
    which get this object pickled): the same bytes in give the same bytes out."""

    # (input bytes, the input's name for messages, a function giving its caption on demand)
    convert: Callable[[bytes, str, Callable[[], str | None]], tuple[bytes, FileResult]]
    new_suffix: str  # of the outputs
    suffixes: frozenset[str]  # inputs taken from a folder
    verb: str  # for the summary: "encoded", "decoded"
    bpp_of: str  # the side whose size gives the bpp: "output" (encode), "input" (decode)
    limits: Limits
    captions: CaptionSource | None = None  # encode's; decode takes none

    def convert_file(self, source: Path | None, root: Path | None = None) -> tuple[bytes, FileResult]:
        """Read ``source`` (None: stdin) and convert it; ``root``: the folder being converted,
        against which ``--captions`` names are taken."""
        if source is None:
            data = read_stdin(self.limits.max_input_bytes)
        else:
            data = read_input(source, self.limits.max_input_bytes)
        return self.convert(data, str(source) if source else "<stdin>", lambda: self.caption(source, root))

    def caption(self, source: Path | None, root: Path | None = None) -> str | None:
        if self.captions is None:
            return None
        return self.captions.for_image(source, root) if source else self.captions.text


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    pixels: int = 0

    def add(self, result: FileResult) -> None:
        self.done += 1
        self.bytes_in += result.bytes_in
        self.bytes_out += result.bytes_out
        self.pixels += result.pixels

    def describe(self, verb: str, bpp_of: str) -> str:
        line = f"{verb} {self.done} file{'s' * (self.done != 1)}"
        if self.skipped:
            line += f", skipped {self.skipped} (output exists; --force overwrites)"
        if self.failed:
            line += f", {self.failed} failed"
        if self.done:
            line += f"; {_size(self.bytes_in)} -> {_size(self.bytes_out)}"
            bits = 8 * (self.bytes_out if bpp_of == "output" else self.bytes_in)
            line += f", {bits / max(self.pixels, 1):.3f} bpp"
        return line


def plan(source_dir: Path, target_dir: Path, suffixes: frozenset[str], new_suffix: str) -> tuple[list[Job], list[str]]:
    """Jobs for every matching file under ``source_dir``, in sorted order.

    Returns the jobs and one message per file that cannot be done because another
    input maps to the same output (``a.png`` and ``a.jpg`` both give ``a.tcz``).
    """
    jobs: list[Job] = []
    conflicts: list[str] = []
    claimed: dict[Path, Path] = {}
    for source in sorted(_walk(source_dir)):
        if source.suffix.lower() not in suffixes:
            continue
        target = target_dir / source.relative_to(source_dir).with_suffix(new_suffix)
        if target in claimed:
            conflicts.append(f"{source}: not converted, {claimed[target]} has the same output {target}")
            continue
        claimed[target] = source
        jobs.append(Job(source, target))
    return jobs, conflicts


def _walk(folder: Path) -> Iterator[Path]:
    """Files under ``folder``, skipping hidden names (and so our temporary files)."""
    def fail(error: OSError) -> None:
        raise InputError(f"{error.filename}: cannot list folder ({error.strerror})")

    for root, dirs, files in os.walk(folder, onerror=fail):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith("."):
                yield Path(root) / name


def run(
    jobs: list[Job],
    process: Callable[[Job], FileResult],
    *,
    n_jobs: int,
    force: bool,
    report: Callable[[str, str], None],
    label: Callable[[TcodecError, str], TcodecError],
) -> Summary:
    """Run ``process`` on every job; failures and notes go to ``report(kind, text)``,
    an error's text through ``label(error, source)`` so that it names its file."""
    summary = Summary()
    todo = []
    for job in jobs:
        if job.target.exists() and not force:
            summary.skipped += 1
        else:
            todo.append(job)
    with progress_bar(len(todo), "tcodec") as advance:
        with ThreadPoolExecutor(max_workers=max(1, n_jobs)) as pool:
            futures = {pool.submit(process, job): job for job in todo}
            try:
                for future in as_completed(futures):
                    job = futures[future]
                    try:
                        result = future.result()
                    except OutputExistsError:  # another run wrote it after the check above
                        summary.skipped += 1
                    except TcodecError as error:
                        summary.failed += 1
                        report("error", str(label(error, str(job.source))))
                    else:
                        summary.add(result)
                        result.report(str(job.source), report)
                    advance()
            except BaseException:  # Ctrl-C, or a bug: stop now, not after every queued file
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return summary


def _size(n: float) -> str:
    if n < 1000:
        return f"{n} B"
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}"
