import math

import numpy as np
import pytest

from tcodec.bench import metrics as metrics_module
from tcodec.bench.metrics import METRICS, MetricUnavailable, measure_image, ms_ssim_rgb, psnr_rgb, split_metrics


def test_psnr_is_over_all_rgb_values_with_range_255():
    reference = np.zeros((4, 4, 3), np.uint8)
    decoded = reference.copy()
    decoded[0, 0, 0] = 16  # MSE = 256 / 48
    assert psnr_rgb(reference, decoded) == pytest.approx(10 * math.log10(255**2 * 48 / 256))
    assert psnr_rgb(reference, reference) == math.inf


WEIGHTED = ("lpips", "fid", "kid", "clip-score", "cmmd")


def test_metrics_that_need_weights_say_which_weights_when_they_are_not_listed(monkeypatch):
    from tcodec import weights

    monkeypatch.setattr(weights, "read_lock", lambda: {})
    usable, reasons = split_metrics()
    assert set(WEIGHTED) <= set(reasons)
    for key in WEIGHTED:
        assert METRICS[key].weights
        assert all(f"{name} (models.lock does not list them yet)" in reasons[key] for name in METRICS[key].weights)
    assert {"psnr-rgb"} <= {metric.key for metric in usable}


def test_weights_listed_but_not_installed_name_the_fetch_command(monkeypatch):
    from tcodec import weights

    monkeypatch.setattr(weights, "read_lock", lambda: {"lpips-alex": object()})
    monkeypatch.setattr(weights, "status", lambda name: {"installed": False})
    _, reasons = split_metrics(["lpips"])
    assert reasons == {"lpips": "needs model weights lpips-alex (not on this machine: tcodec models fetch lpips-alex)"}


def test_a_metric_without_code_is_never_faked(monkeypatch):
    from tcodec import weights

    monkeypatch.setattr(weights, "read_lock", lambda: {"lpips-alex": object()})
    monkeypatch.setattr(weights, "status", lambda name: {"installed": True})
    usable, reasons = split_metrics(["lpips"])
    assert usable == [] and "not implemented" in reasons["lpips"]


def test_ms_ssim_of_a_small_image_is_unavailable_with_the_reason(card):
    pixels = np.asarray(card)
    with pytest.raises(MetricUnavailable, match="96x64.*161"):
        ms_ssim_rgb(pixels, pixels)
    values, reasons = measure_image([METRICS["psnr-rgb"], METRICS["ms-ssim-rgb"]], pixels, pixels)
    assert values == {"psnr-rgb": math.inf} and "ms-ssim-rgb" in reasons


def test_ms_ssim_is_pytorch_msssim_on_0_255_floats():
    torch = pytest.importorskip("torch")
    pytorch_msssim = pytest.importorskip("pytorch_msssim")
    from tcodec.sample import sample_image

    reference = np.asarray(sample_image(176, 168))
    noisy = np.clip(reference.astype(int) + np.random.default_rng(0).integers(-20, 21, reference.shape), 0, 255)
    decoded = noisy.astype(np.uint8)
    expected = pytorch_msssim.ms_ssim(torch.tensor(reference).permute(2, 0, 1)[None].float(),
                                      torch.tensor(decoded).permute(2, 0, 1)[None].float(), data_range=255)
    assert ms_ssim_rgb(reference, decoded) == pytest.approx(float(expected), abs=1e-6)
    assert ms_ssim_rgb(reference, reference) == pytest.approx(1.0, abs=1e-6)


def _natural_photo():
    """A natural image that ships with tcodec (the demo's CC0 photo): tests need no data folder."""
    import io

    from PIL import Image

    from tcodec.cli.demo import photo_bytes

    return Image.open(io.BytesIO(photo_bytes())).convert("RGB")


def _jpeg_round_trip(image, quality):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(buffer).convert("RGB")


def test_st_lpips_is_zero_for_identical_images_and_worsens_from_jpeg_q90_to_q10():
    import numpy as np

    pytest.importorskip("stlpips_pytorch")
    from tcodec.bench.metrics import METRICS

    metric = METRICS["st-lpips-alex"]
    assert metrics_module.unavailable_reason(metric) is None and not metric.higher_is_better
    photo = _natural_photo()
    reference = np.asarray(photo)
    assert metric.compute(reference, reference) == pytest.approx(0, abs=1e-7)
    scores = [metric.compute(reference, np.asarray(_jpeg_round_trip(photo, q))) for q in (90, 50, 10)]
    assert 0 < scores[0] < scores[1] < scores[2]


@pytest.mark.parametrize("key", ["flip", "butteraugli", "ssimulacra2", "cvvdp"])
def test_offline_perceptual_metrics_are_perfect_for_identical_images_and_worsen_from_q90_to_q10(key):
    metric = METRICS[key]
    reason = metrics_module.unavailable_reason(metric)
    if reason:
        pytest.skip(reason)  # butteraugli_main is a Debian package, not a Python dependency
    photo = _natural_photo()
    reference = np.asarray(photo)
    perfect = metric.compute(reference, reference)
    assert perfect == {"ssimulacra2": 100.0, "cvvdp": pytest.approx(10.0, abs=1e-4)}.get(key, pytest.approx(0, abs=1e-7))
    scores = [metric.compute(reference, np.asarray(_jpeg_round_trip(photo, q))) for q in (90, 50, 10)]
    better = scores if metric.higher_is_better else [-s for s in scores]
    assert better[0] > better[1] > better[2]


def test_each_metrics_time_is_recorded_and_reported(card):
    from tcodec.bench.report import metric_cost

    pixels = np.asarray(card)
    seconds = {}
    values, _ = measure_image([METRICS["psnr-rgb"]], pixels, pixels, seconds)
    assert set(seconds) == {"psnr-rgb"} and seconds["psnr-rgb"] >= 0 and values["psnr-rgb"] == math.inf
    records = [{"metric_seconds": {"psnr-rgb": 0.002, "ssimulacra2": 0.5}},
               {"metric_seconds": {"psnr-rgb": 0.004, "ssimulacra2": 0.7}}, {}]  # a cached record without times
    assert metric_cost(records) == ("metric cost per decoded image (mean): psnr-rgb 0.003 s, ssimulacra2 0.600 s; "
                                    "together 0.60 s")
    assert metric_cost([{}]) == ""
