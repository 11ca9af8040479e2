"""TACO's model folder: ``config.json`` + ``model.safetensors``, built, loaded and saved;
and the official checkpoints converted into one.

:mod:`tcodec.weights` finds this module through its architecture registry (``"taco"``)
and its importer registry (``"taco-official"``); nothing here knows about models.lock
beyond the entry it is handed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tcodec.errors import ModelError, one_line
from tcodec.models.taco import TacoConfig, TacoModel
from tcodec.weights import CONFIG_FILE, model_hash, read_model_file, write_model_files

ARCHITECTURE = "taco"
WEIGHTS_FILE = "model.safetensors"


def build(config: dict, *, trainable: bool = True) -> TacoModel:
    """The TacoModel a config.json describes, randomly initialised."""
    return TacoModel(TacoConfig.from_dict(config[ARCHITECTURE]), trainable=trainable)


def load(folder: Path, config: dict) -> TacoModel:
    """Build from ``config``, load the weights strictly, prepare for coding (the
    entropy-parameter networks in float64 or as exact integers).

    Raises:
        ModelError: the weights are damaged or do not fit the config.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        state = load(read_model_file(folder, WEIGHTS_FILE))
        model = build(config, trainable=False)  # coding only: no CompressAI to import
        model.load_state_dict(state, strict=True)
        model.prepare_for_coding()
    except (SafetensorError, RuntimeError, ValueError, KeyError, TypeError, OSError) as error:
        raise ModelError(f"model in {folder} is damaged or does not fit its config ({one_line(error)})") from None
    model.eval().requires_grad_(False)
    # the transforms run faster on channels-last tensors (oneDNN's layout; the model card
    # has the numbers); coding does not depend on it: the entropy parameters come from the
    # networks prepared above
    for transform in (model.g_a, model.g_s):
        transform.to(memory_format=torch.channels_last)
    return model


def save_model(model: TacoModel, folder: Path, text_encoder: str, *, fit_quantiles: bool = False,
               half: bool = False, **extra) -> str:
    """Write config.json + model.safetensors (CDF tables frozen first); return the hash.

    ``fit_quantiles`` first sets the factorized prior's tail quantiles from its learned
    density (CompressAI's bisection), so the z tables cover z whether or not the
    auxiliary loss had converged. ``half`` stores the parameters as float16 (they are
    rounded before the tables are frozen, so the tables fit the stored model); buffers
    such as the scale table stay float32 and the CDFs integer. The float weights of
    integer layers are left out: loading derives them from the frozen integers.
    """
    from safetensors.torch import save

    if fit_quantiles:
        model.update(force=True, update_quantiles=True)
    if half:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.copy_(parameter.half())
    model.update(force=True)  # the tables of the model as stored
    config = {"architecture": ARCHITECTURE, ARCHITECTURE: model.config.to_dict(), "text_encoder": text_encoder,
              **extra}
    parameters = {name for name, _ in model.named_parameters()}
    store = torch.float16 if half else torch.float32
    derived = model.derived_state_keys()  # the integer layers' float weights: not needed to code
    state = {k: v.detach().to(store if k in parameters else torch.float32).contiguous()
             if v.is_floating_point() else v.contiguous()
             for k, v in model.state_dict().items() if k not in derived}
    write_model_files(folder, {
        WEIGHTS_FILE: save(state),
        CONFIG_FILE: (json.dumps(config, indent=2, sort_keys=True) + "\n").encode(),
    })
    return model_hash(folder)


def convert_official(path: Path, config: dict) -> TacoModel:
    """An official TACO checkpoint (effl-lab/TACO, ``lambda_*.pth.tar``) as a TacoModel:
    ``state_dict`` inside a dict beside optimiser state, keys maybe prefixed ``module.``,
    old or new entropy-bottleneck names (CompressAI's loader maps ``_matrix{i}`` to
    ``matrices.{i}``). Read with ``torch.load(weights_only=True)``: no code runs."""
    import pickle

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise ModelError(f"{path} is not a loadable checkpoint ({one_line(error)})") from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ModelError(f"{path} holds no state_dict")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    model = build({ARCHITECTURE: config})
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ModelError(f"{path} does not fit the official TACO architecture ({one_line(error)})") from None
    return model


def import_official(path: Path, entry, folder: Path, sha256: str) -> None:
    """The importer of ``kind = "taco-official"`` entries: convert ``path`` into a model
    folder at ``folder``. Its config records the checkpoint's sha256 (not its file name,
    which a user may change: the model's hash must not)."""
    save_model(convert_official(path, entry.config), folder, entry.text_encoder or "clip-vit-base-patch32",
               source_sha256=sha256)
