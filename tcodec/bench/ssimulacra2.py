"""SSIMULACRA 2 (Jon Sneyers, Cloudinary; version 2.1, April 2023), written for tcodec
from the algorithm of the reference implementation, libjxl's ``tools/ssimulacra2.cc``.

The PyPI package ``ssimulacra2`` 0.3.0 disagrees with that reference by tens of points
(a horizontal gradient against flat gray: 29.2 where the reference gives -64.6), so it is
not used. This one gives the reference's scores to 0.002 on its test images whose score is
not decided by float32 rounding (``tests/bench/test_bench_ssimulacra2.py``).

The algorithm: 8-bit sRGB to linear RGB; six scales, each half the previous one by 2x2
box averages in linear RGB (a scale is computed while the image before it has both sides
of at least 8 pixels); at each scale the image goes to XYB (the JPEG XL opsin space),
rescaled to about 0..1 (X·14 + 0.42, Y + 0.01, B − Y + 0.55); a Gaussian blur of σ = 1.5,
the recursive filter of Charalampidis (2016) with zero outside the image, gives local
means and (co)variances; per channel, an SSIM error map without the luminance term's
denominator, and a map of edges the distorted image adds ("ringing") and loses
("blurring"); the mean and the 4-norm of each of the 3 maps × 3 channels × 6 scales make
108 numbers, weighted, then mapped to the score (100: identical; 90: visually lossless;
30: low quality; it can go below 0).

The recursive Gaussian's response is finite (2·radius + 1 taps), so it runs here as that
convolution, in torch: :func:`ssimulacra2` scores two 8-bit images in float32, as the
reference computes (float64 costs ten times the time on a CPU, for differences of about
1e-4 points), and :func:`scores` the images of a batch in their own dtype, differentiably,
as a training loss (tcodec-taco-p2's and -p3's).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# JPEG XL's opsin absorbance matrix and bias (lib/jxl/opsin_params.h)
_OPSIN = np.array([[0.30, 0.622, 0.078],
                   [0.23, 0.692, 0.078],
                   [0.24342268924547819, 0.20476744424496821, 0.5518098665095536]])
_BIAS = 0.0037930732552754493
_C2 = 0.0009
_SCALES = 6
_SIGMA = 1.5
# the reference's 108 weights, in its order: channel (X, Y, B), scale, norm (1, 4), then
# SSIM, ringing, blurring
_WEIGHTS = np.array([
    0.0, 0.0007376606707406586, 0.0, 0.0, 0.0007793481682867309, 0.0, 0.0, 0.0004371155730107379, 0.0,
    1.1041726426657346, 0.00066284834129271, 0.00015231632783718752, 0.0, 0.0016406437456599754, 0.0,
    1.8422455520539298, 11.441172603757666, 0.0, 0.0007989109436015163, 0.000176816438078653, 0.0,
    1.8787594979546387, 10.94906990605142, 0.0, 0.0007289346991508072, 0.9677937080626833, 0.0,
    0.00014003424285435884, 0.9981766977854967, 0.00031949755934435053, 0.0004550992113792063, 0.0, 0.0,
    0.0013648766163243398, 0.0, 0.0, 0.0, 0.0, 0.0, 7.466890328078848, 0.0, 17.445833984131262,
    0.0006235601634041466, 0.0, 0.0, 6.683678146179332, 0.00037724407979611296, 1.027889937768264,
    225.20515300849274, 0.0, 0.0, 19.213238186143016, 0.0011401524586618361, 0.001237755635509985,
    176.39317598450694, 0.0, 0.0, 24.43300999870476, 0.28520802612117757, 0.0004485436923833408, 0.0, 0.0, 0.0,
    34.77906344483772, 44.835625328877896, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0008680556573291698,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0005313191874358747, 0.0, 0.00016533814161379112, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0004179171803251336, 0.0017290828234722833, 0.0, 0.0020827005846636437, 0.0, 0.0, 8.826982764996862,
    23.19243343998926, 0.0, 95.1080498811086, 0.9863978034400682, 0.9834382792465353,
    0.0012286405048278493, 171.2667255897307, 0.9807858872435379, 0.0, 0.0, 0.0, 0.0005130064588990679,
    0.0, 0.00010854057858411537,
])



def ssimulacra2(reference: np.ndarray, distorted: np.ndarray) -> float:
    """The score of ``distorted`` against ``reference``, both uint8 HxWx3 sRGB arrays."""
    if reference.shape != distorted.shape or reference.ndim != 3 or reference.shape[2] != 3:
        raise ValueError(f"need two HxWx3 images of one size, not {reference.shape} and {distorted.shape}")

    def tensor(pixels: np.ndarray) -> torch.Tensor:
        return torch.tensor(pixels, dtype=torch.float32).permute(2, 0, 1)[None] / 255.0

    with torch.no_grad():
        return float(scores(tensor(reference), tensor(distorted))[0])


def scores(reference: torch.Tensor, distorted: torch.Tensor) -> torch.Tensor:
    """The score of each image of ``distorted`` (N, 3, H, W sRGB in [0, 1]) against the same
    one of ``reference``: shape (N,), differentiable in both, computed in their dtype."""
    linear1, linear2 = _linear(reference), _linear(distorted)
    per_scale = []  # (N, channel, norm, map) with maps SSIM, ringing, blurring
    for scale in range(_SCALES):
        if min(linear1.shape[-2:]) < 8:
            break
        if scale:
            linear1, linear2 = _half(linear1), _half(linear2)
        image1, image2 = _xyb(linear1), _xyb(linear2)
        mu1, mu2 = _blur(image1), _blur(image2)
        variance1 = _blur(image1 * image1) - mu1 * mu1
        variance2 = _blur(image2 * image2) - mu2 * mu2
        covariance = _blur(image1 * image2) - mu1 * mu2
        ssim_error = (1.0 - (1.0 - (mu1 - mu2) ** 2) * (2 * covariance + _C2) / (variance1 + variance2 + _C2)).clamp_min(0)
        edges = (1.0 + (image2 - mu2).abs()) / (1.0 + (image1 - mu1).abs()) - 1.0
        maps = torch.stack([ssim_error, edges.clamp_min(0), (-edges).clamp_min(0)], dim=-1)  # N, C, H, W, map
        per_scale.append(torch.stack([maps.mean(dim=(2, 3)), _root(maps.pow(4).mean(dim=(2, 3)), 0.25)], dim=2))
    # the weights are taken in order for the scales computed (a small image has fewer)
    terms = torch.stack(per_scale, dim=2).flatten(1)  # channel, scale, norm, map
    weights = torch.as_tensor(_WEIGHTS[: terms.shape[1]], dtype=terms.dtype, device=terms.device)
    total = (terms @ weights) * 0.9562382616834844
    total = 2.326765642916932 * total - 0.020884521182843837 * total**2 + 6.248496625763138e-05 * total**3
    return 100.0 - 10.0 * _root(total, 0.6276336467831387)


def _root(value: torch.Tensor, exponent: float) -> torch.Tensor:
    """value ** exponent where value > 0, else 0, with finite gradients at 0."""
    positive = value > 0
    return torch.where(positive, torch.where(positive, value, torch.ones_like(value)) ** exponent,
                       torch.zeros_like(value))


def _linear(srgb: torch.Tensor) -> torch.Tensor:
    return torch.where(srgb <= 0.04045, srgb / 12.92, ((srgb.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4)


def _half(image: torch.Tensor) -> torch.Tensor:
    """2x2 box averages; an odd last row or column is averaged with a copy of itself."""
    height, width = image.shape[-2:]
    if height % 2 or width % 2:
        image = F.pad(image, (0, width % 2, 0, height % 2), mode="replicate")
    return F.avg_pool2d(image, 2)


def _xyb(linear: torch.Tensor) -> torch.Tensor:
    opsin = torch.as_tensor(_OPSIN, dtype=linear.dtype, device=linear.device)
    mixed = torch.einsum("ij,njhw->nihw", opsin, linear) + _BIAS
    mixed = mixed.clamp_min(0) ** (1 / 3) - _BIAS ** (1 / 3)
    x = 0.5 * (mixed[:, 0] - mixed[:, 1])
    y = 0.5 * (mixed[:, 0] + mixed[:, 1])
    return torch.stack([x * 14.0 + 0.42, y + 0.01, mixed[:, 2] - y + 0.55], dim=1)


def _recursive_gaussian(sigma: float) -> tuple[int, np.ndarray, np.ndarray]:
    """Radius and the three second-order sections of Charalampidis's recursive Gaussian
    ("Recursive implementation of the Gaussian filter using truncated cosine functions",
    IEEE TSP 2016; equation numbers as in the paper)."""
    radius = round(3.2795 * sigma + 0.2546)  # (57)
    omega = math.pi / (2 * radius) * np.array([1.0, 3.0, 5.0])
    p = np.array([1, -1, 1]) / np.tan(0.5 * omega)  # (37)
    r = np.array([1, -1, 1]) * p * p / np.sin(omega)  # (44)
    rho = np.exp(-0.5 * sigma * sigma * omega**2) / radius  # (50)
    d13, d35, d51 = p[0] * r[1] - r[0] * p[1], p[1] * r[2] - r[1] * p[2], p[2] * r[0] - r[2] * p[0]
    zeta15, zeta35 = d35 / d13, d51 / d13  # (52)
    beta = np.linalg.solve(np.array([p, r, [zeta15, zeta35, 1.0]]),  # (53)-(56)
                           np.array([1.0, radius * radius - sigma * sigma, zeta15 * rho[0] + zeta35 * rho[1] + rho[2]]))
    return radius, -beta * np.cos(omega * (radius + 1)), -2 * np.cos(omega)  # (33)


_RADIUS, _N2, _D1 = _recursive_gaussian(_SIGMA)


def _recursive_taps() -> np.ndarray:
    """The recursive filter's response to an impulse, run as the reference runs it (zero
    outside the signal; output n takes in[n - radius - 1] + in[n + radius - 1], the
    resonators warming up from n = -radius + 1): its 2·radius + 1 taps around the impulse
    (the response is zero beyond them: tested)."""
    from scipy.signal import lfilter

    radius, size = _RADIUS, 4 * _RADIUS + 3
    centre = size // 2
    impulse = np.zeros(size)
    impulse[centre] = 1.0
    padded = np.concatenate([np.zeros(2 * radius), impulse, np.zeros(radius)])
    n = np.arange(-radius + 1, size)
    summed = padded[n + radius - 1] + padded[n + 3 * radius - 1]
    response = sum(lfilter([_N2[k]], [1.0, _D1[k], 1.0], summed) for k in range(3))[radius - 1:]
    return response[centre - radius: centre + radius + 1]


_TAPS = _recursive_taps()


def _blur(image: torch.Tensor) -> torch.Tensor:
    """The recursive Gaussian along x, then along y; zero outside the image."""
    channels = image.shape[1]
    taps = torch.as_tensor(_TAPS, dtype=image.dtype, device=image.device)
    along_x = taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    along_y = taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    image = F.conv2d(image, along_x, padding=(0, _RADIUS), groups=channels)
    return F.conv2d(image, along_y, padding=(_RADIUS, 0), groups=channels)
