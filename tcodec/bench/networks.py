"""The networks behind the bench metrics that need model weights, and how their weights
are read.

Every weight file is listed in ``models.lock`` and fetched on a machine with a network
(``tcodec models fetch NAME``). A single weight file (kind ``file``: torchvision's AlexNet,
pytorch-fid's Inception-v3) is read with ``torch.load(weights_only=True)``: tensors only, no
code runs; a Hugging Face folder (CLIP) from its safetensors only. The networks are built
from the libraries that define them (``lpips``, ``pytorch-fid`` on torchvision,
``transformers``), never with their own download code. Each is built once per process by
:func:`lpips_network`, :func:`inception_network`, :func:`clip_model` and
:func:`clip_vision`; tests replace those with networks of the same structure and random
weights, so that everything after the loading runs as in a real bench.
"""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path


class NetworkUnavailable(Exception):
    """A network's weights are missing, damaged or do not fit; the message says what to do."""


# sha256 prefixes the files' own names carry (torchvision names its files so): checked on
# loading, since models.lock cannot give their whole sha256 (pinned on the first fetch)
SHA256_PREFIXES = {"lpips-alex": "7be5be79"}
# lpips cuts AlexNet's 12 feature layers into 5 slices after each ReLU: slice -> layer indices
ALEXNET_SLICES = {1: range(0, 2), 2: range(2, 5), 3: range(5, 8), 4: range(8, 10), 5: range(10, 12)}
# pytorch-fid's FID Inception: torchvision's Inception-v3 (1008 classes, no auxiliary head)
# with the nine blocks whose pooling TensorFlow's 2015 graph does differently
FID_BLOCKS = {
    "Mixed_5b": ("FIDInceptionA", 192, {"pool_features": 32}),
    "Mixed_5c": ("FIDInceptionA", 256, {"pool_features": 64}),
    "Mixed_5d": ("FIDInceptionA", 288, {"pool_features": 64}),
    "Mixed_6b": ("FIDInceptionC", 768, {"channels_7x7": 128}),
    "Mixed_6c": ("FIDInceptionC", 768, {"channels_7x7": 160}),
    "Mixed_6d": ("FIDInceptionC", 768, {"channels_7x7": 160}),
    "Mixed_6e": ("FIDInceptionC", 768, {"channels_7x7": 192}),
    "Mixed_7b": ("FIDInceptionE_1", 1280, {}),
    "Mixed_7c": ("FIDInceptionE_2", 2048, {}),
}
# the layers that lead to the 2048-d pool features FID uses, in order
INCEPTION_POOL3 = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                   "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                   "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool")
INCEPTION_SIZE = 299
# OpenAI CLIP's input normalisation (its preprocess and transformers' CLIPImageProcessor)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_MAX_TOKENS = 77


def weight_file(name: str) -> Path:
    """The single file of the models.lock entry ``name``, checked: installed, its sha256 the
    one models.lock gives or that was pinned when it was fetched, and the prefix its name
    carries (:data:`SHA256_PREFIXES`).

    Raises:
        NetworkUnavailable: missing or not the file it should be.
    """
    from tcodec import weights
    from tcodec.errors import ModelError

    try:
        entry = weights.lock_entry(name)
        path = weights.model_folder(name) / entry.files[0].path
    except ModelError as error:
        raise NetworkUnavailable(str(error)) from None
    if not path.is_file():
        raise NetworkUnavailable(f"model weights {name} are not on this machine ({path}): tcodec models fetch {name}")
    prefix = SHA256_PREFIXES.get(name)
    if prefix:
        digest = weights.sha256_file(path)
        if not digest.startswith(prefix):
            raise NetworkUnavailable(f"{path} has sha256 {digest[:16]}..., its name says it starts with {prefix}; "
                                    f"remove it and run: tcodec models fetch {name}")
    problems = weights.verify(name)
    if problems:
        raise NetworkUnavailable(f"model weights {name}: {problems[0]}")
    return path


def read_state_dict(path: Path) -> dict:
    """A file of named tensors, read with ``torch.load(weights_only=True)``.

    Raises:
        NetworkUnavailable: not such a file.
    """
    import torch

    from tcodec.errors import one_line

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises pickle, zip and runtime errors alike here
        raise NetworkUnavailable(f"{path} is not a file of tensors ({one_line(error, 160)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NetworkUnavailable(f"{path} is not a state dict (named tensors)")
    return state


# --- LPIPS ---------------------------------------------------------------------------


@cache
def lpips_network():
    """LPIPS v0.1 (alex): torchvision's ImageNet AlexNet (``lpips-alex``) and the linear
    layers the ``lpips`` wheel ships (``lpips-alex-linear``)."""
    return build_lpips(read_state_dict(weight_file("lpips-alex")), read_state_dict(lpips_linear_file()))


def lpips_linear_file() -> Path:
    from tcodec import weights
    from tcodec.errors import ModelError

    try:
        folder = weights.model_folder("lpips-alex-linear")
        problems = weights.verify("lpips-alex-linear")
    except ModelError as error:
        raise NetworkUnavailable(str(error)) from None
    if problems:
        raise NetworkUnavailable(f"lpips' linear layers: {problems[0]}")
    return folder / weights.lock_entry("lpips-alex-linear").files[0].path


def build_lpips(backbone: dict, linear: dict):
    """``lpips.LPIPS`` (alex, v0.1) with these weights: ``backbone`` as torchvision's AlexNet
    file names them (``features.N.*``; its ``classifier.*`` is not used), ``linear`` as the
    lpips wheel's ``alex.pth`` (``linK.model.1.weight``).

    Raises:
        NetworkUnavailable: the tensors do not fit.
    """
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision on lpips' pretrained=False: no download
        network = lpips.LPIPS(pretrained=False, net="alex", version="0.1", pnet_rand=True, verbose=False)
    slice_of = {index: number for number, indices in ALEXNET_SLICES.items() for index in indices}
    trunk = {}
    try:
        for key, tensor in backbone.items():
            part, _, rest = key.partition(".")
            if part == "classifier":
                continue
            index, _, parameter = rest.partition(".")
            if part != "features" or not index.isdigit() or int(index) not in slice_of:
                raise ValueError(f"unexpected tensor {key}")
            trunk[f"slice{slice_of[int(index)]}.{index}.{parameter}"] = tensor
        network.net.load_state_dict(trunk)  # strict: every layer, every shape
        expected = {f"lin{k}.model.1.weight" for k in range(network.L)}
        if set(linear) != expected:
            raise ValueError(f"linear layers {sorted(linear)}, expected {sorted(expected)}")
        for k in range(network.L):
            getattr(network, f"lin{k}").load_state_dict({"model.1.weight": linear[f"lin{k}.model.1.weight"]})
    except (ValueError, RuntimeError) as error:
        raise NetworkUnavailable(f"the weights do not fit LPIPS (alex): {str(error).splitlines()[0]}") from None
    return network.eval().requires_grad_(False)


# --- Inception-v3 for FID and KID ---------------------------------------------------------


@cache
def inception_network():
    """pytorch-fid's FID Inception-v3 with the weights ``inception-v3-fid``
    (``pt_inception-2015-12-05-6726825d.pth``, TensorFlow's 2015 graph ported)."""
    return build_inception(read_state_dict(weight_file("inception-v3-fid")))


def build_inception(state: dict | None = None):
    """The FID Inception-v3 (as pytorch-fid's ``fid_inception_v3`` builds it) with ``state``
    loaded strictly; None: no weights loaded (tests set random ones).

    Raises:
        NetworkUnavailable: the tensors do not fit.
    """
    import torchvision
    from pytorch_fid import inception as fid

    network = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008,
                                              init_weights=False)  # torchvision's init: slow, and replaced
    for name, (block, channels, options) in FID_BLOCKS.items():
        setattr(network, name, getattr(fid, block)(channels, **options))
    if state is not None:
        try:
            network.load_state_dict(state)
        except RuntimeError as error:
            first = str(error).splitlines()[0]
            raise NetworkUnavailable(f"the weights do not fit the FID Inception-v3: {first}") from None
    return network.eval().requires_grad_(False)


def inception_features(network, images):
    """2048-d pool features (float64) of uint8 NxHxWx3 ``images``, computed as pytorch-fid
    does: scaled to [0, 1], resized to 299x299 (bilinear, ``align_corners=False``),
    scaled to [-1, 1]."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images.copy()).permute(0, 3, 1, 2).float().div_(255)
    x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
    x = 2 * x - 1
    with torch.no_grad():
        for name in INCEPTION_POOL3:
            x = getattr(network, name)(x)
    return x.flatten(1).double().numpy()


# --- CLIP ----------------------------------------------------------------------------


def _clip_folder(name: str) -> Path:
    """The installed folder ``name``, its files checked against models.lock or their pins."""
    from tcodec import weights
    from tcodec.errors import ModelError

    try:
        folder = weights.model_folder(name)
        problems = weights.verify(name)
    except ModelError as error:
        raise NetworkUnavailable(str(error)) from None
    if problems:
        raise NetworkUnavailable(f"model weights {name}: {problems[0]}; tcodec models fetch {name}")
    return folder


def _quiet_transformers():
    import transformers
    from transformers.utils import logging

    logging.set_verbosity_error()  # no load reports or progress bars on the bench's output
    logging.disable_progress_bar()
    return transformers


@cache
def clip_model(name: str = "clip-vit-base-patch32"):
    """(CLIPModel, tokenizer) from the installed Hugging Face folder ``name``.

    Raises:
        NetworkUnavailable: it cannot be loaded.
    """
    transformers = _quiet_transformers()
    folder = _clip_folder(name)
    try:
        model = transformers.CLIPModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as error:
        raise NetworkUnavailable(f"{name} could not be loaded from {folder} ({str(error).splitlines()[0]}); "
                                f"tcodec models fetch {name}") from None
    return model.eval().requires_grad_(False), tokenizer


@cache
def clip_vision(name: str = "clip-vit-large-patch14-336"):
    """CLIP's image tower with its projection, from the installed Hugging Face folder of the
    whole CLIP model ``name`` (its text tower is not loaded).

    Raises:
        NetworkUnavailable: it cannot be loaded.
    """
    transformers = _quiet_transformers()
    folder = _clip_folder(name)
    try:
        config = transformers.CLIPConfig.from_pretrained(folder, local_files_only=True)
        vision = config.vision_config
        vision.projection_dim = config.projection_dim  # kept at the top of a whole CLIP's config
        model = transformers.CLIPVisionModelWithProjection.from_pretrained(
            folder, config=vision, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError) as error:
        raise NetworkUnavailable(f"{name} could not be loaded from {folder} ({str(error).splitlines()[0]}); "
                                f"tcodec models fetch {name}") from None
    return model.eval().requires_grad_(False)


def clip_pixels(images: list, size: int, square_crop: bool):
    """CLIP's input from uint8 HxWx3 arrays: ``square_crop`` False: the shorter side resized
    to ``size`` (PIL bicubic, antialiased) and the centre ``size`` x ``size`` cut out, as
    OpenAI's CLIP preprocesses; True: the centred largest square cut out first, then resized
    to ``size`` x ``size`` (what CMMD's reference code does). Then scaled to [0, 1] and
    normalised with CLIP's mean and deviation. Returns a float32 Nx3xSxS tensor."""
    import numpy as np
    import torch
    from PIL import Image

    batch = []
    for pixels in images:
        image = Image.fromarray(pixels)
        width, height = image.size
        if square_crop:
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
        else:
            scale = size / min(width, height)
            new = (max(size, round(width * scale)), max(size, round(height * scale)))
            image = image.resize(new, Image.BICUBIC)
            left, top = round((new[0] - size) / 2), round((new[1] - size) / 2)
            image = image.crop((left, top, left + size, top + size))
        batch.append(np.asarray(image, np.float32) / 255)
    x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def clip_image_embeddings(model, pixel_values):
    """Projected CLIP image embeddings, L2-normalised (float64 numpy); ``model`` is a
    CLIPModel or a CLIPVisionModelWithProjection (both have these two parts)."""
    import torch

    with torch.no_grad():
        pooled = model.vision_model(pixel_values=pixel_values).pooler_output
        embedding = model.visual_projection(pooled)
    return torch.nn.functional.normalize(embedding, dim=-1).double().numpy()


def clip_text_embeddings(model, tokenizer, texts: list[str]):
    """Projected CLIP text embeddings, L2-normalised (float64 numpy); texts longer than
    CLIP's 77 tokens are cut there."""
    import torch

    tokens = tokenizer(texts, padding=True, truncation=True, max_length=CLIP_MAX_TOKENS, return_tensors="pt")
    with torch.no_grad():
        pooled = model.text_model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).pooler_output
        embedding = model.text_projection(pooled)
    return torch.nn.functional.normalize(embedding, dim=-1).double().numpy()
