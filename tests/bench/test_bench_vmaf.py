"""VMAF through imageio-ffmpeg's ffmpeg and its libvmaf."""

import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("imageio_ffmpeg")

from tcodec.bench import vmaf as vmaf_module  # noqa: E402
from tcodec.bench.vmaf import VmafError, versions, vmaf  # noqa: E402

STILL_IDENTICAL = 97.428  # vmaf_v0.6.1 at VIF = ADM = 1 and no motion


def _photo(width=256, height=192):
    """A crop of the demo's natural photo (CC0, ships in the package)."""
    from tcodec.cli.demo import photo_bytes

    return Image.open(io.BytesIO(photo_bytes())).convert("RGB").crop((100, 50, 100 + width, 50 + height))


def _jpeg(image, quality):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def test_identical_stills_get_the_models_top_score_whatever_the_image():
    for image in (_photo(), _photo(160, 120).transpose(Image.Transpose.FLIP_LEFT_RIGHT)):
        pixels = np.asarray(image)
        assert vmaf(pixels, pixels) == pytest.approx(STILL_IDENTICAL, abs=0.002)


def test_vmaf_worsens_from_jpeg_q90_to_q50_to_q10():
    photo = _photo()
    reference = np.asarray(photo)
    scores = [vmaf(reference, _jpeg(photo, quality)) for quality in (90, 50, 10)]
    assert STILL_IDENTICAL > scores[0] > scores[1] > scores[2] > 0


def test_luma_only_so_420_and_444_agree(monkeypatch):
    photo = _photo()
    reference, decoded = np.asarray(photo), _jpeg(photo, 30)
    score = vmaf(reference, decoded)
    monkeypatch.setattr(vmaf_module, "CONVERSION", vmaf_module.CONVERSION.replace("yuv444p", "yuv420p"))
    assert vmaf(reference, decoded) == pytest.approx(score, abs=1e-6)


def test_a_too_small_image_is_refused_with_the_reason():
    pixels = np.zeros((40, 64, 3), np.uint8)
    with pytest.raises(VmafError, match="64x40; VMAF needs both sides of at least 48 px"):
        vmaf(pixels, pixels)


def test_a_failing_ffmpeg_is_one_line(monkeypatch):
    monkeypatch.setattr(vmaf_module, "MODEL", "no_such_model")
    pixels = np.asarray(_photo(64, 64))
    with pytest.raises(VmafError, match=r"ffmpeg's libvmaf failed on a 64x64 image \(exit \d+\): .*no_such_model"):
        vmaf(pixels, pixels)


def test_versions_name_ffmpeg_libvmaf_and_the_model():
    found = versions()
    assert found["ffmpeg"] and found["ffmpeg"] != "unknown"
    assert found["libvmaf"] and found["libvmaf"] != "unknown"
    assert found["model"] == "vmaf_v0.6.1" and found["pixel format"].startswith("yuv444p")
