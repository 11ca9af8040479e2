"""The quality search behind --max-bytes / --target-bpp, on made-up size curves and real JPEGs."""

import math

import pytest

import tcodec
from tcodec.errors import InputError
from tcodec.rate_search import byte_budget, highest_fitting
from tests.conftest import run_cli

GRID = [round(1 + i / 100, 2) for i in range(701)]  # taco's qualities 1.00 .. 8.00


def counted(size_of):
    calls = []

    def file_at(quality):
        calls.append(quality)
        return b"x" * size_of(quality)
    return file_at, calls


@pytest.mark.parametrize("budget", [403, 404, 1000, 4321, 20000, 54084, 99999])
def test_finds_the_highest_fitting_quality_in_few_encodes(budget):
    size_of = lambda q: round(200 * math.exp(0.7 * q))  # noqa: E731 - size grows exponentially with quality
    file_at, calls = counted(size_of)
    quality, data = highest_fitting(GRID, file_at, budget)
    expected = max(q for q in GRID if size_of(q) <= budget)
    assert quality == expected and len(data) == size_of(expected)
    assert len(calls) <= 12  # bisection alone needs 2 + 10 on 701 qualities


def test_bisects_when_sizes_are_far_from_exponential():
    size_of = lambda q: 100 if q < 7.9 else 10**6  # noqa: E731 - interpolation alone would crawl
    file_at, calls = counted(size_of)
    assert highest_fitting(GRID, file_at, 1000)[0] == 7.89
    assert len(calls) <= 14


def test_non_monotonic_sizes_still_give_a_file_that_fits():
    size_of = lambda q: 1000 + (300 if round(q * 100) % 7 == 0 else 0) + round(10 * q)  # noqa: E731
    file_at, _ = counted(size_of)
    quality, data = highest_fitting(GRID, file_at, 1050)
    assert len(data) <= 1050 and size_of(quality) == len(data)


def test_top_quality_when_everything_fits():
    file_at, calls = counted(lambda q: 10)
    assert highest_fitting(GRID, file_at, 10) == (8.0, b"x" * 10) and calls == [8.0]


def test_a_budget_below_the_smallest_file_is_an_input_error():
    file_at, _ = counted(lambda q: 500 + round(q))
    with pytest.raises(InputError, match="cannot fit in 400 bytes: the smallest file, at quality 1, takes 501"):
        highest_fitting(GRID, file_at, 400)


def test_byte_budget():
    assert byte_budget(None, None, 10, 10) is None
    assert byte_budget(123, None, 10, 10) == 123
    assert byte_budget(None, 0.5, 768, 512) == 24576
    for bad in [dict(max_bytes=0), dict(target_bpp=0.0), dict(target_bpp=-1.0), dict(target_bpp=math.nan),
                dict(target_bpp=math.inf), dict(max_bytes=10, target_bpp=1.0)]:
        with pytest.raises(InputError):
            byte_budget(bad.get("max_bytes"), bad.get("target_bpp"), 10, 10)


@pytest.mark.parametrize("max_bytes", [1500, 2600, 5000])
def test_jpeg_max_bytes_is_the_highest_quality_that_fits(card, max_bytes):
    data = tcodec.encode(card, "jpeg", max_bytes=max_bytes)
    quality = int(tcodec.read_info(data).quality)
    assert len(data) <= max_bytes
    assert quality == 100 or len(tcodec.encode(card, "jpeg", quality + 1)) > max_bytes
    assert data == tcodec.encode(card, "jpeg", quality)  # the same file a plain -q gives


def test_target_bpp_is_a_ceiling_in_bits_per_pixel(card):
    data = tcodec.encode(card, "jpeg", target_bpp=2.0, caption="a test card")
    assert 8 * len(data) / (card.width * card.height) <= 2.0
    assert tcodec.read_info(data).caption == "a test card"  # the caption's bytes count too


def test_quality_and_budget_together_are_refused(card):
    with pytest.raises(InputError, match="not both"):
        tcodec.encode(card, "jpeg", 50, max_bytes=3000)


def test_cli_max_bytes(card_png, tmp_path):
    out = tmp_path / "card.tcz"
    result = run_cli("encode", card_png, "-o", out, "--max-bytes", 3000)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size <= 3000
    refused = run_cli("encode", card_png, "-o", tmp_path / "b.tcz", "--max-bytes", 100)
    assert refused.returncode == 2 and refused.stderr.decode().count("\n") == 1
    assert "cannot fit in 100 bytes" in refused.stderr.decode()
    both = run_cli("encode", card_png, "-o", tmp_path / "c.tcz", "-q", 50, "--target-bpp", 1)
    assert both.returncode == 2 and "not both" in both.stderr.decode()
    assert not (tmp_path / "b.tcz").exists() and not (tmp_path / "c.tcz").exists()
