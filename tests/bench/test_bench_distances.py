"""FID, KID and CMMD between sets of features, and the patches FID/KID are taken on."""

import numpy as np
import pytest

from tcodec.bench import distances
from tcodec.bench.distances import TooFewSamples, clip_mmd, frechet_distance, kernel_distance, patches


def test_patches_are_hifics_grid_then_the_grid_shifted_by_half_a_patch():
    image = np.random.default_rng(0).integers(0, 256, (512, 768, 3), dtype=np.uint8)
    crops = patches(image)
    assert crops.shape == (8, 256, 256, 3)  # 3x2 + 2x1, as on Kodak
    corners = [(0, 0), (0, 256), (0, 512), (256, 0), (256, 256), (256, 512), (128, 128), (128, 384)]
    for crop, (top, left) in zip(crops, corners):
        assert np.array_equal(crop, image[top:top + 256, left:left + 256])


def test_small_images_give_no_patches_and_the_size_can_be_set():
    image = np.zeros((64, 64, 3), np.uint8)
    assert patches(image).shape == (0, 256, 256, 3)
    assert len(patches(image, 32)) == 4 + 1
    assert len(patches(np.zeros((300, 300, 3), np.uint8))) == 1  # the shifted grid needs 384 px
    assert len(patches(np.zeros((200, 300, 3), np.uint8))) == 0


def test_frechet_distance_is_pytorch_fids_with_more_or_fewer_samples_than_dimensions():
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    rng = np.random.default_rng(1)
    for n_x, n_y, dims in ((60, 50, 8), (5, 7, 8), (30, 40, 64)):
        x, y = rng.normal(size=(n_x, dims)), rng.normal(0.3, 1.2, size=(n_y, dims))
        expected = fid_score.calculate_frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0),
                                                        np.cov(y, rowvar=False))
        assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_of_identical_and_shifted_sets():
    x = np.random.default_rng(2).normal(size=(20, 64))
    assert frechet_distance(x, x) == pytest.approx(0, abs=1e-9)
    shift = np.full(64, 0.5)
    assert frechet_distance(x, x + shift) == pytest.approx(np.sum(shift**2), rel=1e-9)  # the means alone


def _naive_kid(x, y):
    """Binkowski et al.'s unbiased MMD^2 with the cubic kernel, written out pair by pair."""
    def k(a, b):
        return (a @ b / len(a) + 1) ** 3

    m = len(x)
    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    return within - 2 * sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2


def test_kid_is_the_unbiased_mmd_with_the_cubic_kernel():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 6)), rng.normal(0.5, 1, size=(12, 6))
    mean, std, size, subsets = kernel_distance(x, y, subset_size=12, subsets=3)  # whole sets: one estimate
    assert (size, std, subsets) == (12, None, 1)
    assert mean == pytest.approx(_naive_kid(x, y), rel=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_another():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 16))
    same, *_ = kernel_distance(x, rng.normal(size=(200, 16)), subset_size=100)
    other, *_ = kernel_distance(x, rng.normal(0.5, 1, size=(200, 16)), subset_size=100)
    assert abs(same) < 0.1 * other and other > 0
    identical, *_ = kernel_distance(x, x, subset_size=200, subsets=1)
    k = (x @ x.T / 16 + 1) ** 3
    off_diagonal = (k.sum() - np.trace(k)) / (200 * 199)
    assert identical == pytest.approx(-2 * (np.trace(k) / 200 - off_diagonal) / 200, rel=1e-9)


def test_cmmd_is_the_scaled_rbf_mmd_of_their_code():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(6, 4)), rng.normal(1, 1, size=(5, 4))

    def k(a, b):
        return np.exp(-np.sum((a - b) ** 2) / (2 * 10**2))

    def mean_k(p, q):
        return np.mean([[k(a, b) for b in q] for a in p])

    expected = 1000 * (mean_k(x, x) + mean_k(y, y) - 2 * mean_k(x, y))
    assert clip_mmd(x, y) == pytest.approx(expected, rel=1e-9)
    assert clip_mmd(x, x) == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("function", [frechet_distance, kernel_distance, clip_mmd])
def test_a_single_sample_is_too_few(function):
    x = np.zeros((1, 4))
    with pytest.raises(TooFewSamples, match="1 patches .needs at least 2 in each set"):
        function(x, np.ones((5, 4)), "patches")
    assert distances.MIN_SAMPLES == 2
