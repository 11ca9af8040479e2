"""The ``tcodec`` command: parse arguments, call the library, map errors to exit codes.

Exit codes (README, "Exit codes"): 0 ok, 1 bug, 2 bad input or usage, 3 bad .tcz file,
4 model weights, 5 backend unavailable, 6 some files of a folder failed, 7 output
cannot be written, 130 interrupted (Ctrl-C), 141 stdout's reader went away, 143
terminated (SIGTERM).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from tcodec import api
from tcodec.cli import batch
from tcodec.bench.command import bench
from tcodec.caption_files import CaptionSource, read_jsonl
from tcodec.captioner import AUTO as AUTO_CAPTION, get_captioner
from tcodec.console import EXIT_INTERRUPTED, EXIT_SOME_FAILED, EXIT_TERMINATED, parse_options, say
from tcodec.errors import BrokenPipe, InputError, OutputError, OutputExistsError, TcodecError, printable
from tcodec.fileio import (read_input, read_stdin, remove_stale_temps, stdout_is_terminal, write_atomic,
                           write_stdout)
from tcodec.images import IMAGE_SUFFIXES, load_image
from tcodec.limits import DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_PIXELS, Limits
from tcodec.memory import keep_freed_memory
from tcodec.rate_search import byte_budget

app = typer.Typer(
    help="Image compression with text information: .tcz files with jpeg, taco and perco backends.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
_debug = os.environ.get("TCODEC_DEBUG", "") not in ("", "0")


def run() -> None:
    """The console script (and ``python -m tcodec``): :func:`main`, then leave without the
    interpreter's final teardown, which with torch's native libraries loaded costs a
    one-image ``tcodec`` process a few tenths of a second (bench_cli.py prints both). The
    exit functions still run (Ray's shutdown, logging's flush); with threads still alive, or
    on a Python without ``atexit._run_exitfuncs``, the exit is the interpreter's own."""
    try:
        main()
        status = 0
    except SystemExit as stop:
        status = stop.code
    run_exit_functions = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_functions is None or threading.active_count() > 1 or not isinstance(status, int):
        sys.exit(status)
    run_exit_functions()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # main() has reported stdout's failures already
            pass
    os._exit(status)


def main() -> None:
    """Parse the arguments and run the command; exits through SystemExit with the code."""
    keep_freed_memory()  # before anything big is allocated; see tcodec.memory
    _lift_pillow_bomb_limit()
    terminated = []

    def on_sigterm(signum, frame):  # like Ctrl-C: outputs are finished or removed, never partial
        terminated.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    # Typer itself turns usage errors into exit code 2 and Ctrl-C into 130.
    try:
        try:
            app()
        finally:
            _flush_stdout()  # what print() buffered: a full disk must not pass unnoticed
    except BrokenPipe:
        _silence_stdout()
        sys.exit(BrokenPipe.exit_code)
    except TcodecError as error:
        if _debug:
            traceback.print_exc()
        say("error", str(error))
        sys.exit(error.exit_code)
    except SystemExit as stop:
        sys.exit(EXIT_TERMINATED if terminated and stop.code == EXIT_INTERRUPTED else stop.code)


def _lift_pillow_bomb_limit() -> None:
    """tcodec checks every image's size against its own limit (``--max-pixels``) before
    decoding it; Pillow's would print a raw warning or refuse what the user allowed."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None


def _flush_stdout() -> None:
    if sys.stdout is None:
        return
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise BrokenPipe("stdout: the reader has gone") from None
    except (OSError, ValueError) as error:
        raise OutputError(f"stdout: cannot write ({getattr(error, 'strerror', None) or error})") from None


def _silence_stdout() -> None:
    """After a broken pipe, Python's own flush at exit must not print a second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, AttributeError, ValueError):
        pass


def _version(value: bool) -> None:
    if value:
        from tcodec import __version__

        print(f"tcodec {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    global _debug
    _debug = _debug or debug


BackendOpt = Annotated[str, typer.Option("--backend", "-m", help="jpeg, taco or perco (see `tcodec backends`).")]
OutputOpt = Annotated[Optional[str], typer.Option("--output", "-o", help="Output file, folder, or - for stdout.")]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite outputs that exist.")]
JobsOpt = Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, show_default=False,
                                                help="Files converted in parallel (folders); default 1, with "
                                                     "--engine ray one per CPU (GPU) of the cluster.")]
EngineOpt = Annotated[str, typer.Option("--engine", help="Where a folder is converted: local (this machine) or ray "
                                        "(a Ray cluster; also s3://, gs://, hdfs://, file:// URIs).")]
RayAddressOpt = Annotated[Optional[str], typer.Option("--ray-address", metavar="ADDR",
                                                      help="Ray cluster to join (auto, or host:port); default: "
                                                           "start one on this machine for the run.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda (learned backends).")]
MaxPixelsOpt = Annotated[int, typer.Option(min=1, envvar="TCODEC_MAX_PIXELS", metavar="N",
                                           help="Refuse images of more pixels, checked before decoding them.")]
MaxInputBytesOpt = Annotated[int, typer.Option(min=1, envvar="TCODEC_MAX_INPUT_BYTES", metavar="N",
                                               help="Refuse input files (or stdin) longer than this.")]


@app.command()
def encode(
    input: Annotated[str, typer.Argument(help="Image file, folder (converted recursively), or - for stdin.")],
    output: OutputOpt = None,
    backend: BackendOpt = api.DEFAULT_BACKEND,
    quality: Annotated[Optional[float], typer.Option("--quality", "-q", help="Backend quality; default: the backend's.")] = None,
    max_bytes: Annotated[Optional[int], typer.Option(help="Highest quality whose file is at most N bytes "
                                                     "(searched per image).", metavar="N")] = None,
    target_bpp: Annotated[Optional[float], typer.Option(help="Highest quality whose file is at most X bits "
                                                        "per pixel (searched per image).", metavar="X")] = None,
    caption: Annotated[Optional[str], typer.Option(help="Caption text for every image, or auto: one made from "
                                                   "each image (BLIP-2) where --captions and sidecars give none. "
                                                   "The word \"auto\" as a caption: put it in --captions or a "
                                                   "sidecar.")] = None,
    captions: Annotated[Optional[Path], typer.Option(help="JSON Lines file of captions: {\"file\": ..., \"caption\": ...}.")] = None,
    sidecar_captions: Annotated[bool, typer.Option(help="Use <image>.txt beside each image as its caption.")] = False,
    store_caption: Annotated[Optional[bool], typer.Option("--store-caption/--no-store-caption",
                                                          help="Keep the caption in the file (default: per backend).")] = None,
    option: Annotated[Optional[list[str]], typer.Option("--option", "-O", metavar="KEY=VALUE",
                                                        help="Backend option, e.g. -O subsampling=4:4:4.")] = None,
    device: DeviceOpt = "auto",
    jobs: JobsOpt = None,
    force: ForceOpt = False,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    max_input_bytes: MaxInputBytesOpt = DEFAULT_MAX_INPUT_BYTES,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
) -> None:
    """Encode an image (or a folder of images) to .tcz."""
    options = parse_options(option or [])
    api.check_quality(backend, quality)  # fail before touching any file
    byte_budget(max_bytes, target_bpp, 1, 1, quality)  # the same checks, before any file is read
    api.check_device(device)
    generate = caption == AUTO_CAPTION
    caption_source = CaptionSource(None if generate else caption, read_jsonl(captions) if captions else {},
                                   sidecar_captions, generate)
    if generate:
        get_captioner().check()  # its weights are there before any image is read
    limits = Limits(max_pixels, max_input_bytes)

    def encode_one(data: bytes, name: str, caption_of: Callable[[], str | None]) -> tuple[bytes, batch.FileResult]:
        loaded = load_image(data, name=name, limits=limits)
        text, made = caption_of(), None
        if text is None and caption_source.generate:
            text = made = get_captioner().caption(loaded.image, device)  # from the pixels that are coded
        encoded = api.encode(loaded, backend, quality, caption=text, store_caption=store_caption,
                             device=device, options=options, max_bytes=max_bytes, target_bpp=target_bpp,
                             limits=limits)
        pixels = loaded.image.width * loaded.image.height
        return encoded, batch.FileResult(len(data), len(encoded), pixels, tuple(loaded.notes), made)

    conversion = batch.Conversion(encode_one, ".tcz", IMAGE_SUFFIXES, "encoded", "output", limits, caption_source)
    _convert(conversion, input, output, jobs, force, Engine(engine, ray_address, device))


@app.command()
def decode(
    input: Annotated[str, typer.Argument(help=".tcz file, folder (converted recursively), or - for stdin.")],
    output: OutputOpt = None,
    format: Annotated[Optional[str], typer.Option("--format", help="png (default), jpg, webp, bmp, tiff, ppm; "
                                                  "a jpeg .tcz written as jpg gives its original JPEG bytes.")] = None,
    option: Annotated[Optional[list[str]], typer.Option("--option", "-O", metavar="KEY=VALUE",
                                                        help="Backend option, e.g. -O model=FOLDER (taco).")] = None,
    device: DeviceOpt = "auto",
    jobs: JobsOpt = None,
    force: ForceOpt = False,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    max_input_bytes: MaxInputBytesOpt = DEFAULT_MAX_INPUT_BYTES,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
) -> None:
    """Decode a .tcz file (or a folder of them) to an image."""
    from tcodec.cli.output_formats import image_bytes, resolve_format

    options = parse_options(option or [])
    api.check_device(device)
    into_folder = output is not None and (Path(output).is_dir() or (input != "-" and Path(input).is_dir())
                                          or _is_uri(input) or _is_uri(output))
    fmt = resolve_format(format, output, output_is_folder=into_folder)
    limits = Limits(max_pixels, max_input_bytes)

    def decode_one(data: bytes, name: str, caption_of: Callable[[], str | None]) -> tuple[bytes, batch.FileResult]:
        container = api.read_info(data)
        written = image_bytes(container, fmt, device, options, limits)
        pixels = container.width * container.height
        return written, batch.FileResult(len(data), len(written), pixels)

    conversion = batch.Conversion(decode_one, fmt.suffix, frozenset({".tcz"}), "decoded", "input", limits)
    _convert(conversion, input, output, jobs, force, Engine(engine, ray_address, device))


@dataclass(frozen=True)
class Engine:
    """Where a folder is converted: ``local`` (threads here) or ``ray`` (tcodec.cli.ray_batch)."""

    name: str = "local"
    ray_address: str | None = None
    device: str = "auto"


def _is_uri(location: str | None) -> bool:
    return location is not None and "://" in location


def _convert(conversion: batch.Conversion, input: str, output: str | None, jobs: int | None, force: bool,
             engine: Engine = Engine()) -> None:
    """Shared by encode and decode: stdin/stdout, a single file, or a folder."""
    if engine.name not in ("local", "ray"):
        raise InputError(f"--engine must be local or ray, not {engine.name!r}")
    if engine.name == "ray" and (_is_uri(input) or _is_uri(output) or (input != "-" and Path(input).is_dir())):
        from tcodec.cli import ray_batch

        started = time.perf_counter()
        summary = ray_batch.convert_folder(conversion, input, output, engine.ray_address, device=engine.device,
                                           jobs=jobs, force=force, report=say, label=labelled)
        _finish(conversion, summary, started)
        return
    if _is_uri(input) or _is_uri(output):
        raise InputError(f"{input if _is_uri(input) else output}: URIs are read and written with --engine ray")
    if input != "-" and Path(input).is_dir():
        _convert_folder(conversion, Path(input), output, jobs or 1, force)
        return
    source = None if input == "-" else Path(input)
    suffix = conversion.new_suffix
    if output is None:
        output = "-" if source is None else str(source.with_suffix(suffix))
    elif output != "-" and Path(output).is_dir():
        output = str(Path(output) / (source.with_suffix(suffix).name if source else "stdin" + suffix))
    if output == "-" and stdout_is_terminal():
        raise OutputError("refusing to write binary data to a terminal; give -o FILE or redirect stdout")
    if output != "-" and not force and not _same_file(source, output) and Path(output).is_file():
        # checked before the work; an output equal to the input is refused when written
        raise OutputExistsError(f"{output}: already exists (use --force to overwrite)")
    try:
        data, result = conversion.convert_file(source)
    except TcodecError as error:
        raise labelled(error, "<stdin>" if source is None else input) from None
    result.report(input, say)
    if output == "-":
        write_stdout(data)
    else:
        remove_stale_temps(Path(output).parent)
        write_atomic(output, data, overwrite=force, named_by_user=True)


def _read(source: Path | None, limits: Limits) -> bytes:
    return read_stdin(limits.max_input_bytes) if source is None else read_input(source, limits.max_input_bytes)


def _same_file(source: Path | None, output: str) -> bool:
    try:
        return source is not None and os.path.samefile(source, output)
    except OSError:  # either is missing (or a loop of links): not the same existing file
        return False


def _convert_folder(conversion: batch.Conversion, folder: Path, output: str | None, jobs: int, force: bool) -> None:
    if output == "-":
        raise InputError("a folder cannot be written to stdout; give -o FOLDER")
    target_dir = Path(output) if output else folder
    if target_dir.exists() and not target_dir.is_dir():
        raise OutputError(f"{target_dir}: is a file; a folder input needs an output folder")
    planned, conflicts = batch.plan(folder, target_dir, conversion.suffixes, conversion.new_suffix)
    if not planned and not conflicts:
        wanted = ", ".join(sorted(conversion.suffixes))
        raise InputError(f"{folder}: no files to convert (looked for {wanted})")
    for message in conflicts:
        say("error", message)
    for parent in {job.target.parent for job in planned}:
        remove_stale_temps(parent)

    def process(job: batch.Job) -> batch.FileResult:
        data, result = conversion.convert_file(job.source, folder)
        # a file another run wrote meanwhile is kept without --force (counted as skipped)
        write_atomic(job.target, data, overwrite=force)
        return result

    started = time.perf_counter()
    summary = batch.run(planned, process, n_jobs=jobs, force=force, report=say, label=labelled)
    summary.failed += len(conflicts)
    _finish(conversion, summary, started)


def _finish(conversion: batch.Conversion, summary: batch.Summary, started: float) -> None:
    """The summary line of a folder run, and exit code 6 if any file failed."""
    say("info", f"{summary.describe(conversion.verb, conversion.bpp_of)} in {time.perf_counter() - started:.1f} s")
    if summary.failed:
        raise typer.Exit(EXIT_SOME_FAILED)


@app.command()
def info(
    files: Annotated[list[str], typer.Argument(help=".tcz files (- for stdin).")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per file, one per line.")] = False,
    max_input_bytes: MaxInputBytesOpt = DEFAULT_MAX_INPUT_BYTES,
) -> None:
    """Show a .tcz file's header, caption and sizes without decoding it."""
    for name in files:
        try:
            data = _read(None if name == "-" else Path(name), Limits(max_input_bytes=max_input_bytes))
            container = api.read_info(data)
        except TcodecError as error:
            raise labelled(error, name) from None
        fields = {
            "file": name,
            "format_version": data[3] >> 4,
            "backend": container.backend,
            "quality": container.quality,
            "width": container.width,
            "height": container.height,
            "mode": container.mode,
            "size_bytes": len(data),
            "bpp": round(8 * len(data) / (container.width * container.height), 5),
            "model_hash": container.model_hash.hex() if container.model_hash else None,
            "entropy_coder": container.entropy_coder,
            "caption": container.caption,
            "caption_bytes": container.layout["caption"],
            "header_bytes": container.layout["header"],
            "stream_bytes": [len(s) for s in container.streams],
            "framing_bytes": container.layout["framing"],
            **_payload_info(container),
        }
        if as_json:
            text = json.dumps(fields) + "\n"  # ASCII: every control or format character escaped
        else:  # the caption and the file name come from outside: shown with controls escaped
            width = max(map(len, fields))
            text = "".join(f"{key:<{width}}  {_shown(value)}\n" for key, value in fields.items())
        write_stdout(text.encode("utf-8", "backslashreplace"))


def _payload_info(container) -> dict[str, object]:
    """The backend's account of its payload (perco: grid, sampling settings), where the
    backend is installed; its modules import no torch."""
    from tcodec.backends import get_backend, is_installed

    if not is_installed(container.backend):
        return {}
    return get_backend(container.backend).payload_info(container)


def _shown(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else printable(str(value))


@app.command()
def backends() -> None:
    """List the backends, their quality range, options and whether they are installed."""
    from tcodec.backends import REGISTRY, get_backend, is_installed

    for name, entry in REGISTRY.items():
        if not is_installed(name):
            print(f"{name}: not installed (pip install 'tcodec[{entry.extra}]')")
            continue
        codec = get_backend(name)
        low, high = codec.quality_range
        print(f"{name}: quality {low:g}-{high:g} (default {codec.default_quality:g}), caption: {codec.caption_use}")
        for key, help_text in codec.options.items():
            print(f"    -O {key}=...  {help_text}")


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the demo's files.")] = Path("tcodec-demo"),
    backend: Annotated[Optional[str], typer.Option("--backend", "-m", help="Default: taco when installed, "
                                                    "else jpeg.")] = None,
    quality: Annotated[Optional[float], typer.Option("--quality", "-q")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace files in the folder that a demo with "
                                        "these settings would not write.")] = False,
) -> None:
    """Encode and decode the shipped photo (CC0), compare with JPEG and WebP at the same size, and print what it measured."""
    from tcodec.cli.demo import run_demo

    for line in run_demo(output, backend, quality, force):
        print(line)


def labelled(error: TcodecError, label: str) -> TcodecError:
    """The same error, its message starting with the file it is about."""
    text = str(error)
    return error if text.startswith(label) else type(error)(f"{label}: {text}")


app.command()(bench)

models_app = typer.Typer(help="The model weights in models.lock: list, fetch, verify, import.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list() -> None:
    """Every model tcodec knows, whether it is installed, and its model-version hash."""
    from tcodec.weights import read_lock, status

    for name, entry in read_lock().items():
        state = status(name)
        where = f"installed in {state['folder']}" if state["installed"] else "not installed"
        model_hash = f"  hash {state['hash'][:16]}" if state["hash"] else ""
        if "problem" in state:
            model_hash = f"  damaged: {state['problem']}"
        print(f"{name:<24} {entry.backend:<5} {where}{model_hash}")
        print(f"{'':<24} {entry.notes}; source {entry.source}; licence {entry.license}")


@models_app.command("fetch")
def models_fetch(name: Annotated[str, typer.Argument(help="Model name from `tcodec models list`.")]) -> None:
    """Download a model into the cache and check its sha256."""
    from tcodec.weights import fetch

    print(f"{name}: {fetch(name)}")


@models_app.command("import")
def models_import(
    name: Annotated[str, typer.Argument(help="Model name, e.g. taco-official-1.")],
    file: Annotated[Path, typer.Argument(help="What you downloaded: a checkpoint file (e.g. lambda_0.0004.pth.tar) "
                                              "or a folder holding the model's files.")],
) -> None:
    """Check, convert (a checkpoint) and pin a model you downloaded yourself."""
    from tcodec.weights import import_file, status

    folder = import_file(name, file)
    state = status(name)  # a model whose base is not installed yet has no hash
    hashed = f"model hash {state['hash'][:16]}" if state["hash"] else state.get("problem", "no model hash yet")
    print(f"{name}: installed in {folder}, {hashed}")


@models_app.command("verify")
def models_verify(name: Annotated[Optional[str], typer.Argument(help="One model; default: all installed.")] = None) -> None:
    """Check installed models' files against the sha256 in models.lock (or pinned on import)."""
    from tcodec.weights import read_lock, status, verify

    names = [name] if name else [n for n in read_lock() if status(n)["installed"]]
    failed = False
    for model in names:
        problems = verify(model)
        failed |= bool(problems)
        print(f"{model}: {'ok' if not problems else '; '.join(problems)}")
    if failed:
        raise typer.Exit(4)

