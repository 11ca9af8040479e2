"""Distances between two sets of samples, the features of the reference images and of
the decoded ones: FID, KID and CMMD, the bench's dataset-scope metrics (numpy, float64).

FID and KID are computed on patches, as HiFiC (Mentzer et al., NeurIPS 2020: "FID/256")
and PerCo (Careil et al., ICLR 2024) do on sets with few large images: :func:`patches`
cuts the same crops out of every reference image and its decoded version, and each crop
is one sample.
"""

from __future__ import annotations

import numpy as np

PATCH = 256  # HiFiC's FID/256
MIN_SAMPLES = 2  # a covariance, an unbiased MMD: each needs two samples per set
KID_SUBSETS = 100  # as Binkowski et al. and torch-fidelity
KID_SUBSET_SIZE = 1000
KID_SEED = 0
CMMD_SIGMA = 10  # Jayasumana et al. 2024: the RBF kernel's bandwidth
CMMD_SCALE = 1000  # and their scale, for readable numbers


class TooFewSamples(ValueError):
    """Fewer samples than a distance needs; the message says how many there are."""


def patches(pixels: np.ndarray, size: int | None = None) -> np.ndarray:
    """HiFiC's FID/256 crops of one uint8 HxWx3 image, as an Nxsizexsizex3 array: the grid
    of non-overlapping ``size`` x ``size`` squares from the top-left corner (floor(H/size)
    x floor(W/size) of them, row by row; the right and bottom remainders are left out),
    then the same grid shifted by size/2 down and right (floor((H - size/2)/size) x
    floor((W - size/2)/size)), which crosses the first grid's seams. A 768x512 Kodak image
    gives 6 + 2 = 8 patches; an image with a side under ``size`` gives none."""
    size = size or PATCH
    crops = []
    for offset in (0, size // 2):
        height, width = pixels.shape[0] - offset, pixels.shape[1] - offset
        for top in range(offset, offset + height // size * size, size):
            for left in range(offset, offset + width // size * size, size):
                crops.append(pixels[top:top + size, left:left + size])
    return np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)


def _check(x: np.ndarray, y: np.ndarray, what: str) -> None:
    if min(len(x), len(y)) < MIN_SAMPLES:
        raise TooFewSamples(f"{min(len(x), len(y))} {what} (needs at least {MIN_SAMPLES} in each set)")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"features of {x.shape[1]} and {y.shape[1]} dimensions")


def frechet_distance(x: np.ndarray, y: np.ndarray, what: str = "samples") -> float:
    """The Frechet distance between Gaussians fitted to the rows of ``x`` and ``y``:
    ||mu_x - mu_y||^2 + tr(S_x) + tr(S_y) - 2 tr((S_x S_y)^(1/2)), S the unbiased
    covariance (as pytorch-fid's ``np.cov``).

    The last trace is the sum of the singular values of A B^T, where A and B are the centred
    samples divided by sqrt(n - 1) (S_x = A^T A): exact, and with fewer samples than
    dimensions (192 patches of 2048-d features) it needs no square root of a singular
    2048x2048 matrix. With more samples it comes from the eigenvalues of
    S_x^(1/2) S_y S_x^(1/2) (both give the eigenvalues of S_x S_y).

    Raises:
        TooFewSamples: under MIN_SAMPLES rows in a set.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    _check(x, y, what)
    a = (x - x.mean(0)) / np.sqrt(len(x) - 1)
    b = (y - y.mean(0)) / np.sqrt(len(y) - 1)
    if min(len(x), len(y)) <= x.shape[1]:
        cross = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    else:
        values, vectors = np.linalg.eigh(a.T @ a)
        root = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
        middle = root @ (b.T @ b) @ root
        cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    mean_term = np.sum((x.mean(0) - y.mean(0)) ** 2)
    return float(mean_term + np.sum(a * a) + np.sum(b * b) - 2 * cross)


def kernel_distance(x: np.ndarray, y: np.ndarray, what: str = "samples", subsets: int = KID_SUBSETS,
                    subset_size: int = KID_SUBSET_SIZE, seed: int = KID_SEED) -> tuple[float, float | None, int, int]:
    """KID (Binkowski et al., ICLR 2018): the unbiased estimate of MMD^2 with the kernel
    k(a, b) = (a.b / d + 1)^3, on ``subsets`` pairs of random subsets of m = min(subset_size,
    n_x, n_y) rows each (drawn without replacement, numpy's default_rng(seed)); one estimate
    on the whole sets where m is the size of both. Returns the mean and standard deviation
    over the subsets (None for one), m and the number of subsets. Near 0 for samples of one
    distribution; it can be slightly negative (identical sets give -2 (mean k(a, a) - mean
    k(a, b), a != b) / m).

    Raises:
        TooFewSamples: under MIN_SAMPLES rows in a set.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    _check(x, y, what)
    m = min(subset_size, len(x), len(y))
    if m == len(x) == len(y):  # every "subset" would be the whole of both sets: one estimate
        subsets = 1
    dims = x.shape[1]
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        k_aa, k_bb, k_ab = ((a @ a.T / dims + 1) ** 3, (b @ b.T / dims + 1) ** 3, (a @ b.T / dims + 1) ** 3)
        within = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
        estimates.append(within - 2 * k_ab.mean())
    return float(np.mean(estimates)), float(np.std(estimates)) if subsets > 1 else None, m, subsets


def clip_mmd(x: np.ndarray, y: np.ndarray, what: str = "samples", sigma: float = CMMD_SIGMA,
             scale: float = CMMD_SCALE) -> float:
    """CMMD (Jayasumana et al., CVPR 2024): ``scale`` x MMD^2 with the Gaussian RBF kernel
    exp(-||a - b||^2 / (2 sigma^2)), the minimum-variance (biased, diagonals included)
    estimate their code computes, on L2-normalised CLIP embeddings; 0 for identical sets.

    Raises:
        TooFewSamples: under MIN_SAMPLES rows in a set.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    _check(x, y, what)
    gamma = 1 / (2 * sigma**2)

    def kernel_mean(p: np.ndarray, q: np.ndarray) -> float:
        squared = (p * p).sum(1)[:, None] + (q * q).sum(1)[None, :] - 2 * p @ q.T
        return float(np.exp(-gamma * squared).mean())

    return scale * (kernel_mean(x, x) + kernel_mean(y, y) - 2 * kernel_mean(x, y))
