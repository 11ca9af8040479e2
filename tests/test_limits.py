import pytest

from tcodec.errors import FormatError, InputError
from tcodec.limits import DEFAULT_LIMITS, DEFAULT_MAX_PIXELS, Limits


def test_within_the_limit_passes_and_over_it_names_the_option():
    limits = Limits(max_pixels=100)
    limits.check_pixels(10, 10, "x.png", InputError)
    with pytest.raises(FormatError, match=r"x.tcz: 11x10 is 110 pixels, more than the limit of 100 \(--max-pixels"):
        limits.check_pixels(11, 10, "x.tcz", FormatError)


def test_defaults():
    assert DEFAULT_LIMITS.max_pixels == DEFAULT_MAX_PIXELS == 8192 * 8192
    assert DEFAULT_LIMITS.max_input_bytes == 256 * 2**20


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "9"])
def test_limits_must_be_positive_whole_numbers(value):
    with pytest.raises(InputError, match="must be a positive whole number"):
        Limits(max_pixels=value)
    with pytest.raises(InputError, match="must be a positive whole number"):
        Limits(max_input_bytes=value)
