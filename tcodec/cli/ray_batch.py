"""``tcodec encode|decode SRC -o DST --engine ray``: a folder or bucket converted on a Ray cluster.

The same plan as the local mode (:mod:`tcodec.cli.batch`): the input tree mirrored under
the output, hidden names skipped, two inputs with one output both reported, outputs that
exist skipped unless ``--force``. The files left to do become a Ray Dataset of names;
``map_batches`` runs them on a pool of actors (sized by :func:`tcodec.ray_data.actor_plan`
so the job cannot starve itself), each loading the model once. An actor reads its input,
runs the very :class:`~tcodec.cli.batch.Conversion` the local mode runs, and writes the
output atomically; the driver gets one small row per file, from which it reports
failures and keeps the summary, as the local mode does.

``SRC`` and ``DST`` are local folders (every node must see them, as on a shared
filesystem) or URIs that pyarrow's filesystems open: ``s3://``, ``gs://``, ``hdfs://``,
``file://``. A local folder is read and written exactly as the local mode does; on a
pyarrow filesystem an output is written to a hidden temporary name and then renamed,
except on object stores (S3, GCS, Azure), where an object appears only once its upload
is complete, so it is written under its name directly.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from tcodec.caption_files import MAX_SIDECAR_BYTES
from tcodec.cli.batch import Conversion, FileResult, Summary, _walk
from tcodec.console import progress_bar
from tcodec.errors import InputError, OutputError, OutputExistsError, TcodecError
from tcodec.fileio import remove_stale_temps, write_atomic
from tcodec.ray_data import (connected, cluster_plan, limit_threads, read_bounded, require_ray,
                             tcodec_environment)

OBJECT_STORES = ("S3FileSystem", "GcsFileSystem", "AzureFileSystem")
ROWS_PER_BLOCK = 16  # at most: a block is what one actor call takes; small blocks balance the tail
RESULT_FIELDS = ("source", "status", "message", "bytes_in", "bytes_out", "pixels", "notes", "made_caption")


@dataclass(frozen=True)
class Tree:
    """A folder to read or write: a local path (``filesystem`` None) or a path on a pyarrow
    filesystem. Files in it are named by their relative POSIX path."""

    location: str  # as given, for messages
    root: str  # the folder's path (on ``filesystem``)
    filesystem: object | None = None

    @classmethod
    def open(cls, location: str) -> Tree:
        """Raises InputError when pyarrow cannot open the URI (unknown scheme, credentials)."""
        if "://" not in location:
            return cls(str(Path(location)), str(Path(location)))
        from pyarrow import fs

        try:
            filesystem, root = fs.FileSystem.from_uri(location)
        except Exception as error:  # ArrowInvalid, OSError, ...: pyarrow's reasons, in one line
            raise InputError(f"{location}: cannot open ({str(error).splitlines()[0]})") from None
        shown = location.split("?", 1)[0].rstrip("/")  # without options such as ?endpoint_override=
        return cls(shown, root.rstrip("/"), filesystem)

    @property
    def is_local(self) -> bool:
        return self.filesystem is None

    def shown(self, relative: str) -> str:
        """How messages name a file: a local one as the local mode does."""
        return str(Path(self.root) / relative) if self.is_local else f"{self.location}/{relative}"

    def path(self, relative: str) -> str:
        return str(Path(self.root) / relative) if self.is_local else f"{self.root}/{relative}"

    def files(self, *, missing_ok: bool = False) -> dict[str, int]:
        """Relative path -> size of every file below, hidden names and folders left out."""
        if self.is_local:
            if missing_ok and not Path(self.root).is_dir():
                return {}
            return {p.relative_to(self.root).as_posix(): -1 for p in _walk(Path(self.root))}
        from pyarrow import fs

        try:
            infos = self.filesystem.get_file_info(fs.FileSelector(self.root, recursive=True))
        except FileNotFoundError:
            if missing_ok:
                return {}
            raise InputError(f"{self.location}: no such folder") from None
        except Exception as error:
            raise InputError(f"{self.location}: cannot list folder ({str(error).splitlines()[0]})") from None
        found = {}
        for info in infos:
            relative = info.path[len(self.root) + 1:]
            if info.type == fs.FileType.File and not any(part.startswith(".") for part in relative.split("/")):
                found[relative] = info.size
        return found

    def is_file(self, relative: str) -> bool:
        if self.is_local:
            return Path(self.path(relative)).is_file()
        from pyarrow import fs

        return self.filesystem.get_file_info(self.path(relative)).type == fs.FileType.File

    def read(self, relative: str, max_bytes: int, raised_by: str | None = "--max-input-bytes") -> bytes:
        return read_bounded(self.filesystem, self.path(relative), self.shown(relative), max_bytes, raised_by)

    def write(self, relative: str, data: bytes, *, overwrite: bool) -> None:
        """Atomically: the whole file under its name, or nothing there.

        Raises:
            OutputExistsError: it exists and ``overwrite`` is False.
            OutputError: it cannot be written.
        """
        if self.is_local:
            write_atomic(self.path(relative), data, overwrite=overwrite)
            return
        path, shown = self.path(relative), self.shown(relative)
        if not overwrite and self.is_file(relative):
            raise OutputExistsError(f"{shown}: already exists (use --force to overwrite)")
        parent, _, name = path.rpartition("/")
        direct = type(self.filesystem).__name__ in OBJECT_STORES
        temp = path if direct else f"{parent}/.{name[:80]}.tcodec-{uuid.uuid4().hex[:12]}.tmp"
        try:
            self.filesystem.create_dir(parent, recursive=True)
            with self.filesystem.open_output_stream(temp) as stream:
                stream.write(data)
            if not direct:
                self.filesystem.move(temp, path)
        except BaseException as error:  # Ctrl-C too: never leave the temporary name behind
            if not direct:
                try:
                    self.filesystem.delete_file(temp)
                except Exception:
                    pass
            if isinstance(error, Exception):
                raise OutputError(f"{shown}: cannot write ({str(error).splitlines()[0]})") from None
            raise


def plan(source: Tree, target: Tree, suffixes: frozenset[str], new_suffix: str) -> tuple[list[dict], list[str]]:
    """The local mode's plan (:func:`tcodec.cli.batch.plan`) on any tree: rows
    ``{"source", "target"}`` of relative paths, in the same order, and the same messages
    for inputs whose output another input claims."""
    rows, conflicts, claimed = [], [], {}
    for relative in sorted(source.files(), key=PurePosixPath):
        if PurePosixPath(relative).suffix.lower() not in suffixes:
            continue
        output = PurePosixPath(relative).with_suffix(new_suffix).as_posix()
        if output in claimed:
            conflicts.append(f"{source.shown(relative)}: not converted, {source.shown(claimed[output])} "
                             f"has the same output {target.shown(output)}")
            continue
        claimed[output] = relative
        rows.append({"source": relative, "target": output})
    return rows, conflicts


def convert_folder(conversion: Conversion, input: str, output: str | None, address: str | None, *,
                   device: str, jobs: int | None, force: bool, report: Callable[[str, str], None],
                   label: Callable[[TcodecError, str], TcodecError]) -> Summary:
    """Convert the folder (or URI) ``input`` into ``output`` (default: beside the inputs)
    on the Ray cluster at ``address`` (None: a local instance for the run); ``jobs``
    actors (default one per CPU, or GPU with ``--device cuda``). Failures and notes go
    to ``report`` as in the local mode; returns the summary, conflicts counted as failed.

    Raises:
        BackendError: Ray is not installed. InputError, OutputError: as the local mode.
    """
    if output == "-":
        raise InputError("a folder cannot be written to stdout; give -o FOLDER")
    require_ray()
    source = Tree.open(input)
    target = Tree.open(output) if output else source
    if source.is_local and not Path(source.root).is_dir():
        raise InputError(f"{input}: --engine ray converts folders; give a folder (or leave out --engine)")
    if target.is_local and Path(target.root).exists() and not Path(target.root).is_dir():
        raise OutputError(f"{target.root}: is a file; a folder input needs an output folder")
    rows, conflicts = plan(source, target, conversion.suffixes, conversion.new_suffix)
    if not rows and not conflicts:
        wanted = ", ".join(sorted(conversion.suffixes))
        raise InputError(f"{source.location}: no files to convert (looked for {wanted})")
    for message in conflicts:
        report("error", message)
    if target.is_local:
        for parent in {Path(target.path(row["target"])).parent for row in rows}:
            remove_stale_temps(parent)  # what a killed run's actors left on this host
    todo = rows if force else _missing(rows, target)
    summary = Summary(skipped=len(rows) - len(todo), failed=len(conflicts))
    if todo:
        with connected(address, env=tcodec_environment()):
            _run(todo, _Files(conversion, source, target, force, label, os.getcwd()), summary, report, jobs, device)
    return summary


def _missing(rows: list[dict], target: Tree) -> list[dict]:
    """The rows whose output is not there yet: a local tree asked file by file, as the
    local mode does; a pyarrow one listed once (an object store answers a listing of a
    thousand names in one request)."""
    if target.is_local:
        return [row for row in rows if not Path(target.path(row["target"])).exists()]
    existing = target.files(missing_ok=True)
    return [row for row in rows if row["target"] not in existing]


def _run(todo: list[dict], files: _Files, summary: Summary, report, jobs: int | None, device: str) -> None:
    ray = require_ray()
    actors = cluster_plan(jobs, device)
    per_block = max(1, min(ROWS_PER_BLOCK, len(todo) // (16 * actors.size)))
    dataset = ray.data.from_items(todo, override_num_blocks=-(-len(todo) // per_block))
    results = dataset.map_batches(
        _FileActor, fn_constructor_kwargs={"files": files, "threads": actors.threads}, batch_size=1,
        batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors.size, max_tasks_in_flight_per_actor=2),
        num_cpus=actors.num_cpus, num_gpus=actors.num_gpus or None)
    with progress_bar(len(todo), "tcodec") as advance:
        for row in results.iter_rows():
            if row["status"] == "done":
                result = FileResult(int(row["bytes_in"]), int(row["bytes_out"]), int(row["pixels"]),
                                    tuple(filter(None, row["notes"].split("\n"))), json.loads(row["made_caption"]))
                summary.add(result)
                result.report(row["source"], report)
            elif row["status"] == "skipped":  # another run wrote it after the plan was made
                summary.skipped += 1
            else:
                summary.failed += 1
                report("error", row["message"])
            advance()


@dataclass(frozen=True)
class _Files:
    """One file's work on an actor: read, convert, write; pickled to every actor."""

    conversion: Conversion
    source: Tree
    target: Tree
    force: bool
    label: Callable[[TcodecError, str], TcodecError]
    cwd: str  # the driver's: local folders given relative to it name the same files on the actors

    def convert(self, relative: str, target: str) -> dict:
        shown = self.source.shown(relative)
        row = dict.fromkeys(RESULT_FIELDS, "")
        row.update(source=shown, bytes_in=0, bytes_out=0, pixels=0)
        try:
            data, result = self._converted(relative)
            self.target.write(target, data, overwrite=self.force)
        except OutputExistsError:  # another run wrote it meanwhile: kept, counted as skipped
            row["status"] = "skipped"
        except TcodecError as error:
            row.update(status="failed", message=str(self.label(error, shown)))
        else:
            row.update(status="done", bytes_in=result.bytes_in, bytes_out=result.bytes_out,
                       pixels=result.pixels, notes="\n".join(result.notes),
                       made_caption=json.dumps(result.made_caption))  # null where none was made, "" kept
        return row

    def _converted(self, relative: str) -> tuple[bytes, FileResult]:
        conversion, source = self.conversion, self.source
        if source.is_local:  # exactly the local mode's reads, captions included
            return conversion.convert_file(Path(source.path(relative)), Path(source.root))
        data = source.read(relative, conversion.limits.max_input_bytes)
        return conversion.convert(data, source.shown(relative), lambda: self._caption(relative))

    def _caption(self, relative: str) -> str | None:
        """:meth:`CaptionSource.for_image`'s order on a pyarrow tree: ``--caption``, then
        ``--captions`` by relative path or name, then the sidecar ``.txt``."""
        captions = self.conversion.captions
        if captions is None:
            return None
        found = replace(captions, sidecars=False).for_image(PurePosixPath("/", relative), PurePosixPath("/"))
        sidecar = PurePosixPath(relative).with_suffix(".txt").as_posix()
        if found is not None or not captions.sidecars or not self.source.is_file(sidecar):
            return found
        data = self.source.read(sidecar, MAX_SIDECAR_BYTES, raised_by=None)
        try:
            return data.decode("utf-8").strip()
        except UnicodeDecodeError as error:
            raise InputError(f"{self.source.shown(sidecar)}: cannot read captions ({error})") from None


class _FileActor:
    """A Ray Data actor: the model its conversion loads stays loaded for every later file."""

    def __init__(self, files: _Files, threads: int):
        limit_threads(threads)
        self.files = files
        if os.path.isdir(files.cwd):  # relative local paths as the driver means them
            os.chdir(files.cwd)

    def __call__(self, batch):
        rows = [self.files.convert(str(s), str(t)) for s, t in zip(batch["source"], batch["target"])]
        return {field: [row[field] for row in rows] for field in RESULT_FIELDS}

