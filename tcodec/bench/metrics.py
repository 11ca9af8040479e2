"""The metric registry: what a bench can measure, and why it cannot when it cannot.

A metric declares the Python modules and the model weights (by their ``models.lock``
name) that it needs. One that lacks either is reported as unavailable with the reason,
never skipped in silence or replaced by a stand-in. Enabling one later means listing
its weights in ``models.lock`` and giving it a ``compute`` function.

PSNR and MS-SSIM follow CompressAI's evaluation, so numbers compare with published
ones: RGB, 8 bits, data range 255; MS-SSIM by ``pytorch_msssim.ms_ssim`` on float
tensors in 0..255 (5 scales, 11-pixel Gaussian window). ST-LPIPS (alex) is the
shift-tolerant LPIPS of Ghildyal and Liu (ECCV 2022) with the AlexNet weights its wheel
``stlpips-pytorch`` ships: not the original LPIPS, whose numbers differ (the original
needs torchvision's ImageNet AlexNet, listed as ``lpips``). SSIMULACRA 2 is tcodec's own
implementation of version 2.1 (:mod:`tcodec.bench.ssimulacra2`). Grayscale images are
compared as RGB. Each is computed per image; a bench averages over images.

VMAF is libvmaf's ``vmaf_v0.6.1`` through imageio-ffmpeg's static ffmpeg
(:mod:`tcodec.bench.vmaf`). The metrics with weights from ``models.lock`` build their
networks in :mod:`tcodec.bench.networks`: LPIPS (alex, v0.1), CLIP score (the caption
against the decoded image), and the dataset-scope FID, KID and CMMD. A dataset-scope
metric is not a mean over images: each image (reference and decoded) gives rows of
features (its :class:`Embedding`), stored as it is measured, and the metric compares the
two sets of rows of all images at one codec and quality (:mod:`tcodec.bench.distances`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

MS_SSIM_MIN_SIDE = 161  # 5 scales of an 11-pixel window: each side must exceed (11 - 1) * 2**4


class MetricUnavailable(Exception):
    """A metric cannot be computed for one image; the message says why."""


@dataclass(frozen=True)
class Embedding:
    """The features a dataset-scope metric compares: rows of one image's features."""

    name: str  # names the stored features, with the hash of its weights
    weights: str  # its network's weights, by models.lock name
    compute: Callable  # uint8 HxWx3 array -> float array, one row per sample (maybe none)


@dataclass(frozen=True)
class DatasetScore:
    """A dataset-scope metric at one codec and quality."""

    value: float
    samples: int  # rows in each of the two sets
    images: int
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    key: str  # column and JSON key, CompressAI's name where it has one
    title: str
    higher_is_better: bool
    scope: Literal["image", "dataset"] = "image"
    modules: tuple[str, ...] = ()  # Python modules it imports
    install: str = ""  # how to get those modules
    weights: tuple[str, ...] = ()  # model weights it needs, by models.lock name
    programs: tuple[str, ...] = ()  # executables it runs, found on PATH
    # "image": (reference, decoded) uint8 HxWx3 arrays -> float (with caption= if uses_caption);
    # "dataset": (reference rows, decoded rows) of its embedding, all images -> (value, details)
    compute: Callable | None = None
    uses_caption: bool = False
    embedding: Embedding | None = None
    versions: Callable | None = None  # () -> {component: version} beyond its modules' distributions


def psnr_rgb(reference, decoded) -> float:
    """PSNR over the three channels together, in dB; infinite for identical images."""
    import numpy as np

    mse = np.mean((reference.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ms_ssim_rgb(reference, decoded) -> float:
    height, width = reference.shape[:2]
    if min(height, width) < MS_SSIM_MIN_SIDE:
        raise MetricUnavailable(f"image is {width}x{height}; MS-SSIM with 5 scales needs both sides "
                                f"of at least {MS_SSIM_MIN_SIDE} px")
    import torch
    from pytorch_msssim import ms_ssim

    def tensor(pixels):
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1).unsqueeze(0).float()

    # one thread: for these small convolutions more threads cost more than they gain on a
    # busy 2-core machine, and a job keeps to one core
    with _torch_threads():
        return float(ms_ssim(tensor(reference), tensor(decoded), data_range=255, size_average=True))


def st_lpips_alex(reference, decoded) -> float:
    """ST-LPIPS with the AlexNet trunk, images scaled to [-1, 1]; lower is better, 0 for
    identical images."""
    network = _st_lpips_network()
    with _torch_threads():
        reference_features = _st_lpips_reference_features(network, reference)
        return float(st_lpips_from_features(network, reference_features, st_lpips_features(network, decoded)))


# The bench measures an image's versions one after another (runner.execute), so the last
# reference's trunk features are kept: half of ST-LPIPS's work, done once per image.
_last_reference: dict[tuple, list] = {}


def _st_lpips_reference_features(network, pixels) -> list:
    key = (pixels.shape, hashlib.blake2b(pixels.tobytes(), digest_size=16).digest())
    if key not in _last_reference:
        _last_reference.clear()
        _last_reference[key] = st_lpips_features(network, pixels)
    return _last_reference[key]


def st_lpips_features(network, pixels) -> list:
    """An image's unit-normalised trunk features, the first half of ST-LPIPS's forward
    (``LPIPS.forward`` with ``normalize=True``), split off so that they can be kept."""
    outputs = network.net.forward(network.scaling_layer(2 * _unit_tensor(pixels) - 1))
    return [feature / (feature.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10) for feature in outputs]


def st_lpips_from_features(network, first: list, second: list):
    """The second half: each layer's linear head over the squared feature differences,
    averaged over space and summed over layers, in the library's order."""
    value = network.lins[0]((first[0] - second[0]) ** 2).mean([2, 3], keepdim=True)
    for layer in range(1, network.L):
        value += network.lins[layer]((first[layer] - second[layer]) ** 2).mean([2, 3], keepdim=True)
    return value.mean()


def _unit_tensor(pixels):
    import torch

    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255)


@cache
def _st_lpips_network():
    """The network once per process (the bench's, on the CPU)."""
    return new_st_lpips_network()


def new_st_lpips_network():
    """ST-LPIPS (alex) in eval mode, its weights from the installed wheel (a trusted file of
    a pinned package, read by torch.load with weights_only=True); training moves its own."""
    from stlpips_pytorch import stlpips

    return stlpips.LPIPS(net="alex", variant="shift_tolerant", verbose=False).eval()


def ssimulacra2(reference, decoded) -> float:
    """SSIMULACRA 2.1 (:mod:`tcodec.bench.ssimulacra2`, checked against the C++ reference)."""
    from tcodec.bench.ssimulacra2 import ssimulacra2 as score

    with _torch_threads():  # a second thread beside the other jobs' made it several times slower
        return score(reference, decoded)


def flip_ldr(reference, decoded) -> float:
    """Mean FLIP error (NVIDIA's ꟻLIP, ``flip-evaluator``), LDR, sRGB inputs, default viewing
    conditions (67 pixels per degree); 0 for identical images, lower is better."""
    import flip_evaluator

    def unit(pixels):
        return pixels.astype("float32") / 255

    return float(flip_evaluator.evaluate(unit(reference), unit(decoded), "LDR", applyMagma=False)[1])


def cvvdp_jod(reference, decoded) -> float:
    """ColorVideoVDP (Mantiuk et al., SIGGRAPH 2024; ``cvvdp``) in JOD for an image on its
    ``standard_4k`` display, the package's default: 10 for identical images, higher is better.
    Its parameters ship in the wheel; the hub is kept offline so nothing is downloaded."""
    import torch

    network = _cvvdp()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            jod, _ = network.predict(decoded, reference, dim_order="HWC")
        return float(jod)
    finally:
        torch.set_num_threads(threads)


@cache
def _cvvdp():
    import logging
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never a download (its _ml variants would try)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime" on CPUs
    import pycvvdp

    return pycvvdp.cvvdp(display_name="standard_4k")


def butteraugli_3norm(reference, decoded) -> float:
    """Butteraugli's 3-norm from libjxl's ``butteraugli_main`` (Debian ``libjxl-devtools``),
    on PNG copies of both images, read as sRGB; 0 for identical images, lower is better."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as folder:
        paths = [f"{folder}/reference.png", f"{folder}/decoded.png"]
        for pixels, path in zip((reference, decoded), paths):
            Image.fromarray(pixels).save(path)
        result = subprocess.run(["butteraugli_main", *paths], capture_output=True, text=True, timeout=600)
    for line in result.stdout.splitlines():
        if line.startswith("3-norm:"):
            return float(line.split(":", 1)[1])
    raise MetricUnavailable(f"butteraugli_main printed no 3-norm (exit {result.returncode})")


@contextmanager
def _torch_threads(count: int = 1):
    """torch on ``count`` threads inside, without gradients (a job keeps to one core, as
    for MS-SSIM)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        with torch.no_grad():
            yield
    finally:
        torch.set_num_threads(threads)


def vmaf_v061(reference, decoded) -> float:
    """VMAF with libvmaf's model vmaf_v0.6.1 (:mod:`tcodec.bench.vmaf`): 0-100, higher is
    better; identical still images score 97.43 (no motion)."""
    from tcodec.bench.vmaf import VmafError, vmaf

    try:
        return vmaf(reference, decoded)
    except VmafError as error:
        raise MetricUnavailable(str(error)) from None


def _vmaf_versions() -> dict[str, str]:
    from tcodec.bench.vmaf import VmafError, versions

    try:
        return versions()
    except VmafError as error:
        return {"ffmpeg": f"unknown ({error})"}


def _network(getter: str, *arguments):
    """A network from :mod:`tcodec.bench.networks` (by the name of its loader, looked up
    now, so a test may replace it); one that cannot be loaded makes the metric unavailable."""
    from tcodec.bench import networks

    try:
        return getattr(networks, getter)(*arguments)
    except networks.NetworkUnavailable as error:
        raise MetricUnavailable(str(error)) from None


LPIPS_MIN_SIDE = 31  # the smallest image AlexNet's strides and pools leave something of


def lpips_alex(reference, decoded) -> float:
    """LPIPS v0.1 with the AlexNet trunk (Zhang et al., CVPR 2018; torchvision's ImageNet
    weights and the lpips wheel's linear layers), images scaled to [-1, 1], averaged over
    the image; 0 for identical images, lower is better."""
    height, width = reference.shape[:2]
    if min(height, width) < LPIPS_MIN_SIDE:
        raise MetricUnavailable(f"image is {width}x{height}; LPIPS needs both sides of at least {LPIPS_MIN_SIDE} px")
    network = _network("lpips_network")
    with _torch_threads():
        return float(network(_unit_tensor(reference), _unit_tensor(decoded), normalize=True).mean())


def clip_score(reference, decoded, caption: str | None = None) -> float:
    """CLIP score (Hessel et al., EMNLP 2021) of the decoded image and its caption, scaled as
    torchmetrics' CLIPScore: 100 x max(cos(image, text), 0), with CLIP ViT-B/32's projected
    embeddings (the image preprocessed as OpenAI's CLIP does: shorter side to 224, bicubic,
    centre crop; the caption cut at 77 tokens). Higher is better; the reference is not
    used, so the score of the reference itself is the ceiling of a codec.

    Raises:
        MetricUnavailable: the image has no caption.
    """
    if not caption:
        raise MetricUnavailable("no caption for this image (CLIP score compares it with its caption: --captions)")
    from tcodec.bench import networks

    model, tokenizer = _network("clip_model")
    size = model.config.vision_config.image_size
    with _torch_threads():
        image = networks.clip_image_embeddings(model, networks.clip_pixels([decoded], size, square_crop=False))
        text = networks.clip_text_embeddings(model, tokenizer, [caption])
    return float(100 * max(float((image * text).sum()), 0.0))


INCEPTION_BATCH = 8  # patches per forward pass: bounded memory on large images


def inception_patch_features(pixels):
    """The FID Inception's 2048-d pool features of each of the image's patches
    (:func:`tcodec.bench.distances.patches`), one row per patch; none for a small image."""
    import numpy as np

    from tcodec.bench import distances, networks

    crops = distances.patches(pixels)
    if not len(crops):
        return np.zeros((0, 2048))
    network = _network("inception_network")
    with _torch_threads():
        return np.concatenate([networks.inception_features(network, crops[i:i + INCEPTION_BATCH])
                               for i in range(0, len(crops), INCEPTION_BATCH)])


def clip_large_embedding(pixels):
    """CLIP ViT-L/14-336's normalised image embedding of the whole image, one row, taken as
    CMMD's reference code does: the centred largest square, resized to 336x336 (PIL
    bicubic), CLIP's normalisation."""
    from tcodec.bench import networks

    model = _network("clip_vision")
    with _torch_threads():
        return networks.clip_image_embeddings(model, networks.clip_pixels([pixels], model.config.image_size,
                                                                          square_crop=True))


def _distance(function, reference_rows, decoded_rows, what: str):
    from tcodec.bench.distances import TooFewSamples

    try:
        return function(reference_rows, decoded_rows, what)
    except TooFewSamples as error:
        raise MetricUnavailable(f"only {error}") from None


def fid_patches(reference_rows, decoded_rows) -> tuple[float, dict]:
    """FID between the patches of the reference and of the decoded images."""
    from tcodec.bench.distances import PATCH, frechet_distance

    return _distance(frechet_distance, reference_rows, decoded_rows, f"{PATCH}x{PATCH} patches"), {}


def kid_patches(reference_rows, decoded_rows) -> tuple[float, dict]:
    """KID's mean over subsets, between the patches of the reference and decoded images."""
    from tcodec.bench.distances import PATCH, kernel_distance

    mean, std, size, subsets = _distance(kernel_distance, reference_rows, decoded_rows, f"{PATCH}x{PATCH} patches")
    return mean, {"std": std, "subsets": subsets, "subset_size": size}


def cmmd_images(reference_rows, decoded_rows) -> tuple[float, dict]:
    """CMMD between the reference and the decoded images' CLIP embeddings."""
    from tcodec.bench.distances import clip_mmd

    return _distance(clip_mmd, reference_rows, decoded_rows, "images"), {}


def _inception_embedding() -> Embedding:
    from tcodec.bench.distances import PATCH

    return Embedding(f"inception-v3-fid-pool3-patches{PATCH}", "inception-v3-fid", inception_patch_features)


INCEPTION_PATCHES = _inception_embedding()
CLIP_LARGE_IMAGES = Embedding("clip-vit-large-patch14-336-image", "clip-vit-large-patch14-336", clip_large_embedding)


def metric_versions(metrics: list[Metric]) -> dict[str, dict[str, str]]:
    """For each metric, the installed version of every distribution it imports."""
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    owners = packages_distributions()
    found = {}
    for metric in metrics:
        versions = {}
        for module in metric.modules:
            for distribution in owners.get(module, [module]):
                try:
                    versions[distribution] = version(distribution)
                except PackageNotFoundError:
                    continue
        for program in metric.programs:
            versions[program] = _program_version(program)
        if metric.versions is not None:
            versions.update(metric.versions())
        for name in metric.weights:
            versions[name] = _weights_version(name)
        found[metric.key] = versions
    return found


def _weights_version(name: str) -> str:
    """The model-version hash of the installed weights ``name`` (over their files)."""
    from tcodec import weights
    from tcodec.errors import ModelError

    try:
        state = weights.status(name)
    except ModelError:
        return "not listed in models.lock"
    return f"model hash {state['hash'][:16]}" if state.get("hash") else "not installed"


def _program_version(program: str) -> str:
    """The version of the Debian package that installed ``program``, else "unknown"."""
    path = shutil.which(program)
    if path is None:
        return "not installed"
    try:
        owner = subprocess.run(["dpkg-query", "-S", path], capture_output=True, text=True, timeout=30)
        package = owner.stdout.split(":", 1)[0].strip()
        version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True,
                                 timeout=30)
        return f"{package} {version.stdout.strip()}" if package and version.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


METRICS: dict[str, Metric] = {
    metric.key: metric
    for metric in (
        Metric("psnr-rgb", "PSNR-RGB (dB)", True, modules=("numpy",), compute=psnr_rgb),
        Metric("ms-ssim-rgb", "MS-SSIM-RGB", True, modules=("torch", "pytorch_msssim"),
               install="pip install 'tcodec[bench]'", compute=ms_ssim_rgb),
        Metric("st-lpips-alex", "ST-LPIPS (alex)", False, modules=("torch", "stlpips_pytorch", "IPython", "torchsummary"),
               install="pip install 'tcodec[bench]'", compute=st_lpips_alex),
        Metric("ssimulacra2", "SSIMULACRA 2", True, modules=("numpy", "scipy", "torch"), install="pip install scipy torch",
               compute=ssimulacra2),
        Metric("cvvdp", "ColorVideoVDP (JOD)", True, modules=("torch", "pycvvdp"), install="pip install 'tcodec[bench]'",
               compute=cvvdp_jod),
        Metric("vmaf", "VMAF (v0.6.1)", True, modules=("imageio_ffmpeg",), install="pip install 'tcodec[bench]'",
               compute=vmaf_v061, versions=_vmaf_versions),
        Metric("flip", "FLIP (LDR)", False, modules=("flip_evaluator",), install="pip install 'tcodec[bench]'",
               compute=flip_ldr),
        Metric("butteraugli", "Butteraugli (3-norm)", False, programs=("butteraugli_main",),
               install="apt install libjxl-devtools", compute=butteraugli_3norm),
        Metric("lpips", "LPIPS (alex)", False, modules=("torch", "torchvision", "lpips"),
               install="pip install 'tcodec[bench]'", weights=("lpips-alex",), compute=lpips_alex),
        Metric("fid", "FID (Inception-v3)", False, scope="dataset", modules=("torch", "torchvision", "pytorch_fid"),
               install="pip install 'tcodec[bench]'", weights=("inception-v3-fid",), compute=fid_patches,
               embedding=INCEPTION_PATCHES),
        Metric("kid", "KID (Inception-v3)", False, scope="dataset", modules=("torch", "torchvision", "pytorch_fid"),
               install="pip install 'tcodec[bench]'", weights=("inception-v3-fid",), compute=kid_patches,
               embedding=INCEPTION_PATCHES),
        Metric("clip-score", "CLIP score (ViT-B/32)", True, modules=("torch", "transformers"),
               install="pip install 'tcodec[bench]'", weights=("clip-vit-base-patch32",), compute=clip_score,
               uses_caption=True),
        Metric("cmmd", "CMMD (CLIP ViT-L/14-336)", False, scope="dataset", modules=("torch", "transformers"),
               install="pip install 'tcodec[bench]'", weights=("clip-vit-large-patch14-336",), compute=cmmd_images,
               embedding=CLIP_LARGE_IMAGES),
    )
}


def unavailable_reason(metric: Metric) -> str | None:
    """Why ``metric`` cannot run on this machine at all, or None if it can."""
    missing_weights = [reason for reason in map(_weights_problem, metric.weights) if reason]
    if missing_weights:
        return "needs model weights " + "; ".join(missing_weights)
    if metric.compute is None:
        return "not implemented in this version of tcodec"
    missing_modules = [name for name in metric.modules if importlib.util.find_spec(name) is None]
    if missing_modules:
        return f"needs {', '.join(missing_modules)}: {metric.install or 'pip install ' + missing_modules[0]}"
    missing_programs = [name for name in metric.programs if shutil.which(name) is None]
    if missing_programs:
        return f"needs the program {', '.join(missing_programs)}: {metric.install}"
    return None


def _weights_problem(name: str) -> str | None:
    """What is missing for the weights ``models.lock`` calls ``name`` (None: installed)."""
    from tcodec import weights

    if name not in weights.read_lock():
        return f"{name} (models.lock does not list them yet)"
    if not weights.status(name)["installed"]:
        return f"{name} (not on this machine: tcodec models fetch {name})"
    return None


def split_metrics(keys: list[str] | None = None) -> tuple[list[Metric], dict[str, str]]:
    """The metrics to compute now, and the reason for each one that cannot be.

    Raises:
        KeyError: a key that is not a known metric (the command checks first).
    """
    chosen = [METRICS[key] for key in keys] if keys else list(METRICS.values())
    usable, reasons = [], {}
    for metric in chosen:
        reason = unavailable_reason(metric)
        if reason:
            reasons[metric.key] = reason
        else:
            usable.append(metric)
    return usable, reasons


def measure_image(metrics: list[Metric], reference, decoded, seconds: dict[str, float] | None = None,
                  caption: str | None = None) -> tuple[dict[str, float], dict[str, str]]:
    """Per-image values of the image-scope ``metrics`` (dataset-scope ones are left out:
    see :func:`embed_image`), and the reason for each metric this image does not allow;
    each metric's wall-clock time goes into ``seconds`` when given."""
    import time

    values, reasons = {}, {}
    for metric in metrics:
        if metric.scope != "image":
            continue
        started = time.perf_counter()
        try:
            if metric.uses_caption:
                values[metric.key] = metric.compute(reference, decoded, caption=caption)
            else:
                values[metric.key] = metric.compute(reference, decoded)
        except MetricUnavailable as reason:
            reasons[metric.key] = str(reason)
        if seconds is not None:
            seconds[metric.key] = time.perf_counter() - started
    return values, reasons


def embeddings(metrics: list[Metric]) -> dict[str, tuple[Embedding, tuple[str, ...]]]:
    """The embeddings the dataset-scope ``metrics`` need, by name, each with the keys of
    the metrics that share it (FID and KID share the Inception patches)."""
    found: dict[str, tuple[Embedding, tuple[str, ...]]] = {}
    for metric in metrics:
        if metric.scope == "dataset" and metric.embedding is not None:
            embedding, keys = found.get(metric.embedding.name, (metric.embedding, ()))
            found[embedding.name] = (embedding, (*keys, metric.key))
    return found


def embed_image(embedding: Embedding, pixels):
    """One image's rows of ``embedding`` (float32: what is stored), or MetricUnavailable."""
    import numpy as np

    return np.asarray(embedding.compute(pixels), np.float32)
