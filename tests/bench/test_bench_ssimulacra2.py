"""tcodec's SSIMULACRA 2 against scores of the C++ reference (libjxl tools/ssimulacra2),
as imazen/ssimulacra2 captured them for synthetic images (reference_data.rs; the images are
rebuilt here and checked by the sha256 of their RGB bytes, as that file gives them)."""

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("scipy")

from tcodec.bench.ssimulacra2 import ssimulacra2  # noqa: E402


def uniform(size: int, value: int) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


def gradient(size: int) -> np.ndarray:
    row = (np.arange(size) * 255 // (size - 1)).astype(np.uint8)
    return np.repeat(np.repeat(row[None, :, None], 3, axis=2), size, axis=0)


def noise(size: int, seed: int) -> np.ndarray:
    """The reference's LCG: state = state * 6364136223846793005 + 1442695040888963407, byte (state >> 33)."""
    state, out = seed, bytearray()
    for _ in range(size * size * 3):
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        out.append((state >> 33) & 0xFF)
    return np.frombuffer(bytes(out), np.uint8).reshape(size, size, 3)


def sha(pixels: np.ndarray) -> str:
    return hashlib.sha256(pixels.tobytes()).hexdigest()[:16]


# name, reference image, distorted image, their hashes, the C++ score
CASES = [
    ("gradient_vs_uniform_64x64", gradient(64), uniform(64, 128), "bfcfaa0618d28284", "2203a98fd84adfbd", -64.56872148),
    ("noise_vs_uniform_64x64", noise(64, 42), uniform(64, 128), "7f6be7f433ccb0a0", "2203a98fd84adfbd", -47.33572558),
    ("uniform_shift_50_64x64", uniform(64, 128), uniform(64, 178), "2203a98fd84adfbd", "e67286008fa164d1", -8.75942256),
    ("uniform_shift_50_128x128", uniform(128, 128), uniform(128, 178), "2af5ead05032faaf", "768e019eb1e7b74a",
     -9.82383315),
]


@pytest.mark.parametrize("name, reference, distorted, reference_sha, distorted_sha, expected", CASES,
                         ids=[case[0] for case in CASES])
def test_the_reference_implementations_scores(name, reference, distorted, reference_sha, distorted_sha, expected):
    assert (sha(reference), sha(distorted)) == (reference_sha, distorted_sha)  # the reference's very images
    # structured images to 0.01; flat ones, where float32 rounding of a zero variance moves
    # the reference's own score, to 0.1
    assert ssimulacra2(reference, distorted) == pytest.approx(expected, abs=0.01 if "uniform_shift" not in name else 0.1)


def test_identical_images_score_100_and_jpeg_q90_to_q10_score_lower():
    from tcodec.cli.demo import photo_bytes

    photo = Image.open(io.BytesIO(photo_bytes())).convert("RGB")
    assert ssimulacra2(np.asarray(photo), np.asarray(photo)) == 100.0
    scores = []
    for quality in (90, 50, 10):
        buffer = io.BytesIO()
        photo.save(buffer, "JPEG", quality=quality)
        scores.append(ssimulacra2(np.asarray(photo), np.asarray(Image.open(buffer).convert("RGB"))))
    assert 100 > scores[0] > scores[1] > scores[2]


def test_images_of_other_sizes_are_refused():
    with pytest.raises(ValueError, match="one size"):
        ssimulacra2(uniform(16, 0), uniform(17, 0))


def test_the_recursive_gaussian_runs_as_its_whole_finite_response():
    from tcodec.bench.ssimulacra2 import _TAPS

    # the taps at the window's ends are already zero, so nothing of the response is cut off
    assert abs(_TAPS[0]) < 1e-12 and abs(_TAPS[-1]) < 1e-12
    assert _TAPS.sum() == pytest.approx(1.0) and np.allclose(_TAPS, _TAPS[::-1])


def jpeg_pair(size=(96, 80), quality=20):
    from tcodec.sample import sample_image

    image = sample_image(*size)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return np.asarray(image.convert("RGB")), np.asarray(Image.open(buffer).convert("RGB"))


def test_batched_scores_are_the_images_own_scores_and_float64_is_close():
    import torch

    from tcodec.bench.ssimulacra2 import scores

    pairs = [jpeg_pair(quality=q) for q in (10, 40, 90)]
    one_by_one = [ssimulacra2(reference, distorted) for reference, distorted in pairs]  # float32
    batch = [torch.stack([torch.tensor(p[i]).permute(2, 0, 1) for p in pairs]).float() / 255 for i in (0, 1)]
    assert scores(*batch).tolist() == pytest.approx(one_by_one, abs=1e-4)
    assert scores(*(b.double() for b in batch)).tolist() == pytest.approx(one_by_one, abs=0.01)


def test_scores_have_finite_gradients_that_point_to_the_reference():
    import torch

    from tcodec.bench.ssimulacra2 import scores

    reference, distorted = (torch.tensor(p).permute(2, 0, 1)[None].float() / 255 for p in jpeg_pair())
    same = reference.clone().requires_grad_(True)
    (gradient_at_identity,) = torch.autograd.grad(scores(reference, same).sum(), same)
    assert torch.isfinite(gradient_at_identity).all()
    moving = distorted.clone().requires_grad_(True)
    score = scores(reference, moving)
    (gradient,) = torch.autograd.grad(score.sum(), moving)
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0
    # a small step up the gradient raises the score
    assert scores(reference, (distorted + 1e-3 * gradient / gradient.abs().max()).clamp(0, 1)) > score.detach()
