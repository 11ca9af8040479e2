"""Pixels to tensors and back (tcodec.models): exact values, the networks' layout."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from tcodec.models import image_to_tensor, pad_to_multiple, tensor_to_image  # noqa: E402


def noise_image(height=37, width=53):
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_image_to_tensor_is_the_pixels_over_255_channels_last():
    image = noise_image()
    x = image_to_tensor(image)
    assert x.shape == (1, 3, 37, 53) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)
    expected = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    assert torch.equal(x[0], expected)


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_tensor_to_image_inverts_image_to_tensor(layout):
    image = noise_image()
    x = image_to_tensor(image).contiguous(memory_format=layout)
    assert np.array_equal(np.asarray(tensor_to_image(x)), np.asarray(image))
    assert np.array_equal(np.asarray(tensor_to_image(x[..., :20, 3:30])), np.asarray(image)[:20, 3:30])


def test_tensor_to_image_rounds_and_clamps_without_touching_its_input():
    x = torch.tensor([-0.5, 0.1 / 255, 0.6 / 255, 1.7]).view(1, 1, 1, 4).expand(1, 3, 1, 4).clone()
    before = x.clone()
    assert np.asarray(tensor_to_image(x))[0, :, 0].tolist() == [0, 0, 1, 255]
    assert torch.equal(x, before)


def test_pad_to_multiple_repeats_edges_and_keeps_a_fitting_tensor():
    x = image_to_tensor(noise_image())
    padded = pad_to_multiple(x, 64)
    assert padded.shape == (1, 3, 64, 64)
    assert torch.equal(padded[..., :37, :53], x)
    assert torch.equal(padded[..., 63, 63], x[..., 36, 52])
    assert pad_to_multiple(padded, 64) is padded
