"""The golden files in formats/vectors decode exactly as their JSON says, byte for byte."""

import hashlib
import json
from pathlib import Path

import pytest

import tcodec

VECTORS = Path(__file__).resolve().parent.parent / "formats" / "vectors"
NAMES = sorted(p.stem for p in VECTORS.glob("*.tcz"))


def test_there_are_vectors_for_every_decodable_backend():
    assert {"jpeg-rgb", "jpeg-gray-caption", "taco-v1-rgb", "taco-v2-rgb", "taco-v3-rgb", "taco-v4-rgb",
            "taco-p1-rgb", "taco-p2-rgb", "taco-p3-rgb", "taco-p4-rgb", "taco-p5-rgb",
            "taco-container",
            "perco-payload", "perco-defaults"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_vector_header_and_streams(name):
    data = (VECTORS / f"{name}.tcz").read_bytes()
    expected = json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))
    container = tcodec.read_info(data)  # the container, and the caption decoded
    assert len(data) == expected["size_bytes"]
    for key in ("backend", "quality", "width", "height", "mode", "entropy_coder", "caption"):
        assert getattr(container, key) == expected[key], key
    assert (container.model_hash.hex() if container.model_hash else None) == expected["model_hash"]
    assert [hashlib.sha256(s).hexdigest() for s in container.streams] == expected["stream_sha256"]


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("jpeg")])
def test_vector_pixels(name):
    data = (VECTORS / f"{name}.tcz").read_bytes()
    expected = json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))
    assert hashlib.sha256(tcodec.decode(data).tobytes()).hexdigest() == expected["pixels_sha256"]


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("perco")])
def test_perco_vector_payload(name):
    """The indices and sampling settings a perco file's stream holds (no model needed)."""
    from tcodec.backends.perco import RATE_SETTINGS, grid_shape, unpack_payload

    container = tcodec.read_info(VECTORS / f"{name}.tcz")
    expected = json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))["perco"]
    setting = RATE_SETTINGS[int(container.quality) - 1]
    assert list(grid_shape(container.width, container.height, setting)) == expected["grid"]
    sampling, indices = unpack_payload(container.streams[0], setting, expected["grid"][0] * expected["grid"][1])
    assert (sampling.steps, sampling.guidance, sampling.seed) == (expected["steps"], expected["guidance"],
                                                                   expected["seed"])
    assert indices == expected["indices"]


@pytest.mark.parametrize("name", [n for n in NAMES if (VECTORS / f"{n}.decoded.png").exists()])
def test_taco_vector_decodes_with_its_packaged_model(name):
    """Each packaged model keeps decoding the files made with it, the default or not."""
    pytest.importorskip("torch")
    import numpy as np
    from PIL import Image

    decoded = np.asarray(tcodec.decode(VECTORS / f"{name}.tcz"), dtype=np.int16)  # every bit consumed, or it raises
    reference = np.asarray(Image.open(VECTORS / f"{name}.decoded.png"), dtype=np.int16)
    # a misread bit desynchronises the range coder and wrecks the image; float32 rounding moves a level
    assert decoded.shape == reference.shape and np.abs(decoded - reference).max() <= 1


def test_p2_codes_v4s_bits_and_only_decodes_them_differently():
    """tcodec-taco-p2 is v4's encoder with its own decoder: the same image, quality and
    caption give the same stream under another model hash."""
    v4, p2 = (tcodec.read_info(VECTORS / f"taco-{name}-rgb.tcz") for name in ("v4", "p2"))
    assert p2.streams == v4.streams and p2.model_hash != v4.model_hash
    assert (p2.quality, p2.width, p2.height, p2.caption) == (v4.quality, v4.width, v4.height, v4.caption)


def test_worked_example_in_the_spec_matches_the_vector():
    data = (VECTORS / "jpeg-gray-caption.tcz").read_bytes()
    assert data[:25].hex(" ") == "54 43 5a 10 02 01 28 23 0f 07 01 00 00 09 67 72 61 79 20 72 61 6d 70 01 aa"
