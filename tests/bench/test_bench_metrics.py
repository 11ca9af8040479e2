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

    monkeypatch.setattr(weights, "read_lock", lambda: {"some-weights": object()})
    monkeypatch.setattr(weights, "status", lambda name: {"installed": True})
    monkeypatch.setitem(METRICS, "future", metrics_module.Metric("future", "Future", True, weights=("some-weights",)))
    usable, reasons = split_metrics(["future"])
    assert usable == [] and "not implemented" in reasons["future"]


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


def test_st_lpips_with_kept_reference_features_is_the_librarys_forward():
    """The bench splits ST-LPIPS's forward to keep a reference's features; each version of
    the image, measured after another or after a different image, scores as the library."""
    import numpy as np
    import torch

    pytest.importorskip("stlpips_pytorch")
    from PIL import Image

    photo, other = _natural_photo(), _natural_photo().transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    network = metrics_module._st_lpips_network()
    for reference, quality in [(photo, 90), (photo, 20), (other, 20), (photo, 50)]:
        decoded = np.asarray(_jpeg_round_trip(reference, quality))
        reference = np.asarray(reference)
        with torch.no_grad():
            expected = float(network(metrics_module._unit_tensor(reference), metrics_module._unit_tensor(decoded),
                                     normalize=True).mean())
        assert metrics_module.st_lpips_alex(reference, decoded) == pytest.approx(expected, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("key", ["flip", "butteraugli", "ssimulacra2", "cvvdp", "vmaf"])
def test_offline_perceptual_metrics_are_perfect_for_identical_images_and_worsen_from_q90_to_q10(key):
    metric = METRICS[key]
    reason = metrics_module.unavailable_reason(metric)
    if reason:
        pytest.skip(reason)  # butteraugli_main is a Debian package, not a Python dependency
    photo = _natural_photo()
    reference = np.asarray(photo)
    perfect = metric.compute(reference, reference)
    assert perfect == {"ssimulacra2": 100.0, "cvvdp": pytest.approx(10.0, abs=1e-4),
                       "vmaf": pytest.approx(97.428, abs=0.002)}.get(key, pytest.approx(0, abs=1e-7))
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


def test_vmaf_records_ffmpeg_and_libvmaf_and_weighted_metrics_their_weights(monkeypatch):
    pytest.importorskip("imageio_ffmpeg")
    from tcodec import weights

    found = metrics_module.metric_versions([METRICS["vmaf"]])["vmaf"]
    assert {"imageio-ffmpeg", "ffmpeg", "libvmaf", "model"} <= set(found) and found["model"] == "vmaf_v0.6.1"
    monkeypatch.setattr(weights, "status", lambda name: {"installed": True, "hash": "ab" * 32})
    assert metrics_module.metric_versions([METRICS["fid"]])["fid"]["inception-v3-fid"] == "model hash " + "ab" * 8


def _distorted(photo):
    reference = np.asarray(photo)
    return reference, [np.asarray(_jpeg_round_trip(photo, q)) for q in (90, 50, 10)]


def test_lpips_with_a_random_alexnet_is_zero_for_identical_images_and_worsens_from_q90_to_q10(
        random_lpips, monkeypatch):
    """The real LPIPS code path; the network has LPIPS' structure and linear layers, but a
    random AlexNet trunk (torchvision's ImageNet weights cannot be downloaded here)."""
    from tcodec.bench import networks

    monkeypatch.setattr(networks, "lpips_network", lambda: random_lpips)
    metric = METRICS["lpips"]
    reference, distorted = _distorted(_natural_photo())
    assert metric.compute(reference, reference) == 0
    scores = [metric.compute(reference, pixels) for pixels in distorted]
    assert all(math.isfinite(s) for s in scores) and 0 < scores[0] < scores[1] < scores[2]
    with pytest.raises(MetricUnavailable, match="LPIPS needs both sides of at least 31 px"):
        metric.compute(reference[:30], reference[:30])


def test_lpips_is_usable_once_its_weights_are_fetched(monkeypatch, tmp_path, random_lpips):
    from tcodec.bench import networks

    monkeypatch.setenv("TCODEC_CACHE", str(tmp_path))
    assert "tcodec models fetch lpips-alex" in metrics_module.unavailable_reason(METRICS["lpips"])
    (tmp_path / "lpips-alex").mkdir()
    (tmp_path / "lpips-alex" / "alexnet-owt-7be5be79.pth").write_bytes(b"stand-in: the loader is replaced")
    monkeypatch.setattr(networks, "lpips_network", lambda: random_lpips)
    usable, reasons = split_metrics(["lpips"])
    assert [m.key for m in usable] == ["lpips"] and reasons == {}
    pixels = np.asarray(_natural_photo())
    assert measure_image(usable, pixels, pixels) == ({"lpips": 0.0}, {})


def test_weights_that_fail_to_load_make_the_metric_unavailable_for_that_image(monkeypatch, tmp_path):
    monkeypatch.setenv("TCODEC_CACHE", str(tmp_path))
    pixels = np.asarray(_natural_photo())
    values, reasons = measure_image([METRICS["lpips"]], pixels, pixels)
    assert values == {} and "tcodec models fetch lpips-alex" in reasons["lpips"]


def test_clip_score_compares_the_decoded_image_with_its_caption(clip_installed):
    """A tiny CLIP of the real classes with random weights, loaded from its folder by the
    real loader: the score is 100 max(cos, 0) of CLIP's own embeddings, and reads the decoded
    image only. (Whether it drops with distortion needs the real weights.)"""
    import torch

    from tcodec.bench import networks

    metric = METRICS["clip-score"]
    assert metric.uses_caption and metrics_module.unavailable_reason(metric) is None
    reference, distorted = _distorted(_natural_photo())
    with pytest.raises(MetricUnavailable, match="no caption"):
        metric.compute(reference, reference, caption=None)
    model, tokenizer = networks.clip_model()
    scores = []
    for caption in ("a cat", "a grey cat sits on a wooden floor", "zzz"):
        score = metric.compute(reference, distorted[1], caption=caption)
        with torch.no_grad():
            tokens = tokenizer([caption], return_tensors="pt")
            output = model(**tokens, pixel_values=networks.clip_pixels([distorted[1]], 32, square_crop=False))
        cosine = float(output.logits_per_image[0, 0] / model.logit_scale.exp())
        assert score == pytest.approx(100 * max(cosine, 0), abs=1e-3) and 0 <= score <= 100
        assert metric.compute(distorted[1], distorted[1], caption=caption) == score  # the reference is not read
        scores.append(score)
    values, _ = measure_image([metric], reference, distorted[1], caption="a cat")
    assert values == {"clip-score": scores[0]}


def test_dataset_metrics_are_left_to_the_dataset_and_share_embeddings():
    pixels = np.zeros((64, 64, 3), np.uint8)
    assert measure_image([METRICS["fid"], METRICS["psnr-rgb"]], pixels, pixels) == ({"psnr-rgb": math.inf}, {})
    found = metrics_module.embeddings([METRICS[key] for key in ("fid", "kid", "cmmd", "psnr-rgb")])
    assert {name: keys for name, (_, keys) in found.items()} == {
        "inception-v3-fid-pool3-patches256": ("fid", "kid"), "clip-vit-large-patch14-336-image": ("cmmd",)}


def _scores(metric, reference, distorted, embed):
    rows = embed(reference)
    return [metric.compute(rows, rows)[0]] + [metric.compute(rows, embed(pixels))[0] for pixels in distorted]


def test_fid_and_kid_on_patches_with_a_random_inception(random_inception, monkeypatch):
    """The real FID/KID path (patches, pytorch-fid's Inception structure, the distances) with
    random Inception weights; 128 px patches of a 256x256 photo crop (5 each) keep it quick."""
    from tcodec.bench import distances, networks

    monkeypatch.setattr(networks, "inception_network", lambda: random_inception)
    monkeypatch.setattr(distances, "PATCH", 128)
    reference, distorted = _distorted(_natural_photo().crop((100, 20, 356, 276)))
    embed = metrics_module.INCEPTION_PATCHES.compute
    assert embed(reference).shape == (5, 2048)
    fid = _scores(METRICS["fid"], reference, distorted, embed)
    assert fid[0] == pytest.approx(0, abs=1e-6) and 0 < fid[1] < fid[2] < fid[3]
    kid = _scores(METRICS["kid"], reference, distorted, embed)
    # KID's unbiased estimate of identical sets is -2 (mean k(a, a) - mean k(a, b)) / m, near 0
    # next to the kernel's values (about 1); with 5 random-weight patches its bias hides the
    # step from q90 to q50 (the real weights and Kodak's 192 patches are needed for that)
    assert all(math.isfinite(k) for k in kid) and abs(kid[0]) < 0.01 and kid[3] > max(kid[0], kid[1])
    _, details = METRICS["kid"].compute(embed(reference), embed(distorted[0]))
    assert (details["subset_size"], details["subsets"], details["std"]) == (5, 1, None)  # all of both sets: one estimate


def test_too_few_patches_are_a_reason_not_a_number():
    rows = np.zeros((1, 2048))
    with pytest.raises(MetricUnavailable, match="only 1 256x256 patches .needs at least 2 in each set"):
        METRICS["fid"].compute(rows, rows)


def test_cmmd_with_a_random_clip_vit(clip_installed):
    """CMMD's real path: the tiny random CLIP saved as clip-vit-large-patch14-336, loaded by
    the real loader; one embedding per image, so four crops of the photo make a set."""
    from PIL import Image

    metric = METRICS["cmmd"]
    assert metrics_module.unavailable_reason(metric) is None
    photo = _natural_photo()
    crops = [photo.crop((x, y, x + 160, y + 160)) for x in (0, 140, 280) for y in (0, 130)]
    reference = [np.asarray(crop) for crop in crops]
    embed = metrics_module.CLIP_LARGE_IMAGES.compute
    rows = np.concatenate([embed(pixels) for pixels in reference])
    assert rows.shape == (6, 16)
    scores = [metric.compute(rows, rows)[0]]
    for quality in (90, 50, 10):
        decoded = np.concatenate([embed(np.asarray(_jpeg_round_trip(Image.fromarray(p), quality))) for p in reference])
        scores.append(metric.compute(rows, decoded)[0])
    assert scores[0] == pytest.approx(0, abs=1e-9) and 0 < scores[1] < scores[2] < scores[3]
