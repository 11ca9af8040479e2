"""Bjontegaard deltas: exact answers on synthetic curves, and the BD-rates published for
CompressAI's Kodak anchors (../shared/anchors/README.md), from data copied here."""

import math

import pytest

from tcodec.bench.bdrate import METHODS, BjontegaardError, Curve, bd_quality, bd_rate, pchip_slopes

# CompressAI's published Kodak results (jpeg.json, webp.json): bpp and RGB PSNR.
JPEG_BPP = (0.2212, 0.3266, 0.4231, 0.5084, 0.5879, 0.6601, 0.7289, 0.7860, 0.8497, 0.9060, 0.9644, 1.0372,
            1.1274, 1.2398, 1.3688, 1.5718, 1.8588, 2.3502, 3.4013)
JPEG_PSNR = (23.7799, 26.5772, 28.0422, 29.0418, 29.7847, 30.3783, 30.9032, 31.3078, 31.7048, 32.0587, 32.3993,
             32.7899, 33.2347, 33.7926, 34.3943, 35.2390, 36.3289, 37.9121, 40.5567)
WEBP_BPP = (0.2344, 0.2963, 0.3529, 0.4070, 0.4608, 0.5127, 0.5674, 0.6207, 0.6747, 0.7218, 0.7709, 0.8237,
            0.8740, 0.9343, 0.9984, 1.2163, 1.5201, 2.0104, 2.9285)
WEBP_PSNR = (28.3284, 29.1512, 29.8209, 30.4070, 30.9392, 31.4426, 31.9360, 32.4248, 32.8835, 33.2376, 33.6067,
             33.9717, 34.3282, 34.6934, 35.1042, 36.3690, 37.7783, 39.5570, 41.7592)


def up_to(bpp, psnr, max_bpp=2.0) -> Curve:
    kept = [(r, q) for r, q in zip(bpp, psnr) if r <= max_bpp]
    return Curve([r for r, _ in kept], [q for _, q in kept])


@pytest.mark.parametrize("method", METHODS)
def test_webp_against_jpeg_matches_the_published_bd_rate(method):
    # README: "WebP -37.7% vs JPEG" (RGB PSNR, 0-2 bpp)
    result = bd_rate(up_to(JPEG_BPP, JPEG_PSNR), up_to(WEBP_BPP, WEBP_PSNR), method)
    assert result == pytest.approx(-37.7, abs=1.0)


def test_pchip_is_the_default_and_reproduces_the_published_number_closely():
    assert bd_rate(up_to(JPEG_BPP, JPEG_PSNR), up_to(WEBP_BPP, WEBP_PSNR)) == pytest.approx(-37.7, abs=0.1)


SYNTHETIC_RATE = (0.1, 0.25, 0.5, 1.0, 2.0)
SYNTHETIC_PSNR = (26.0, 29.5, 32.0, 35.0, 38.5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("factor", [0.5, 0.8, 1.25])
def test_a_constant_rate_factor_gives_exactly_that_bd_rate(method, factor):
    reference = Curve(SYNTHETIC_RATE, SYNTHETIC_PSNR)
    scaled = Curve([factor * r for r in SYNTHETIC_RATE], SYNTHETIC_PSNR)
    assert bd_rate(reference, scaled, method) == pytest.approx(100 * (factor - 1), abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_a_constant_quality_shift_gives_exactly_that_bd_psnr(method):
    reference = Curve(SYNTHETIC_RATE, SYNTHETIC_PSNR)
    better = Curve(SYNTHETIC_RATE, [q + 0.75 for q in SYNTHETIC_PSNR])
    assert bd_quality(reference, better, method) == pytest.approx(0.75, abs=1e-9)


def test_a_curve_against_itself_is_zero_and_the_order_of_points_does_not_matter():
    curve = Curve(SYNTHETIC_RATE, SYNTHETIC_PSNR)
    shuffled = Curve(SYNTHETIC_RATE[::-1], SYNTHETIC_PSNR[::-1])
    assert bd_rate(curve, shuffled) == pytest.approx(0, abs=1e-12)


def test_swapping_the_curves_inverts_the_rate_ratio():
    jpeg, webp = up_to(JPEG_BPP, JPEG_PSNR), up_to(WEBP_BPP, WEBP_PSNR)
    forward, backward = bd_rate(jpeg, webp) / 100 + 1, bd_rate(webp, jpeg) / 100 + 1
    assert forward * backward == pytest.approx(1.0, abs=1e-12)


def test_a_linear_log_rate_curve_is_integrated_exactly():
    # log-rate linear in PSNR: PCHIP is exact; shifting by 1 dB at slope s gives exp(-s) - 1
    slope = 0.2
    psnr = [25.0, 27.0, 30.0, 31.0, 35.0]
    reference = Curve([math.exp(slope * q) for q in psnr], psnr)
    test = Curve([math.exp(slope * (q - 1)) for q in psnr], psnr)
    assert bd_rate(reference, test) == pytest.approx(100 * (math.exp(-slope) - 1), abs=1e-9)


def test_pchip_slopes_match_scipy():
    scipy_interpolate = pytest.importorskip("scipy.interpolate")
    x = [math.log(v) for v in JPEG_BPP]
    slopes = pchip_slopes(__import__("numpy").array(x), __import__("numpy").array(JPEG_PSNR))
    reference = scipy_interpolate.PchipInterpolator(x, JPEG_PSNR).derivative()(x)
    assert slopes == pytest.approx(reference, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("reference, test, message", [
    (Curve([0.1, 0.2], [20, 22]), Curve([1.0, 2.0], [30, 32]), "do not overlap"),
    (Curve([0.1], [20]), Curve([0.1, 0.2], [20, 22]), "at least 2 points"),
    (Curve([0.1, 0.2, 0.3], [20, 20, 22]), Curve([0.1, 0.2], [20, 22]), "same value"),
    (Curve([0.0, 0.2], [20, 22]), Curve([0.1, 0.2], [20, 22]), "positive"),
])
def test_curves_that_cannot_be_compared_say_why(reference, test, message):
    with pytest.raises(BjontegaardError, match=message):
        bd_rate(reference, test)


def test_the_cubic_fit_needs_four_points():
    curve = Curve([0.1, 0.2, 0.4], [20, 22, 25])
    with pytest.raises(BjontegaardError, match="4 points"):
        bd_rate(curve, curve, "cubic")


def test_a_metric_where_lower_is_better_gets_the_bd_rate_of_equal_value():
    """The test curve reaches each ST-LPIPS of the reference at half its rate: -50%, not +100%
    (which a higher-is-better reading of the numbers would give)."""
    from tcodec.bench.curves import RDCurve, bd_table

    rates = (0.1, 0.2, 0.4, 0.8, 1.6)
    scores = (0.30, 0.20, 0.12, 0.06, 0.02)  # falls with rate: lower is better
    reference = RDCurve("ref", rates, (None,) * 5, (None,) * 5, others={"st-lpips-alex": scores})
    test = RDCurve("test", tuple(r / 2 for r in rates), (None,) * 5, (None,) * 5, others={"st-lpips-alex": scores})
    (row,) = bd_table([reference, test], reference, "pchip", None)
    assert dict(row.others)["st-lpips-alex"] == pytest.approx(-50.0)
    assert isinstance(row.bd_rate_psnr, str)  # no PSNR values: said, not made up
