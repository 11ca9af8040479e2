import pytest

from tcodec.bench.qualities import format_quality, parse_qualities, qualities_per_codec
from tcodec.errors import InputError


@pytest.mark.parametrize("spec, expected", [
    ("10,30,50", (10, 30, 50)),
    ("1-6", (1, 2, 3, 4, 5, 6)),
    ("0-90:30", (0, 30, 60, 90)),
    ("50,10, 30,10", (10, 30, 50)),
    ("0.1,0.25", (0.1, 0.25)),
    ("0.1-0.5:0.1", (0.1, 0.2, 0.3, 0.4, 0.5)),
    ("1-6,80", (1, 2, 3, 4, 5, 6, 80)),
    ("7", (7,)),
])
def test_lists_and_ranges(spec, expected):
    assert parse_qualities(spec) == expected


@pytest.mark.parametrize("spec", ["", "10,,20", "a", "6-1", "1-6:0", "-5", "1-2-3", "0-100000:0.001"])
def test_bad_specs_are_input_errors(spec):
    with pytest.raises(InputError):
        parse_qualities(spec)


def test_a_plain_spec_applies_to_every_codec_without_its_own():
    result = qualities_per_codec(["10,20", "webp=0-90:45"], ["jpeg", "webp", "avif"])
    assert result == {"jpeg": (10, 20), "webp": (0, 45, 90), "avif": (10, 20)}
    assert qualities_per_codec([], ["jpeg"]) == {"jpeg": None}


def test_a_spec_for_a_codec_not_being_run_is_refused():
    with pytest.raises(InputError, match="jxl"):
        qualities_per_codec(["jxl=10"], ["jpeg"])


def test_format_quality():
    assert (format_quality(50.0), format_quality(0.25)) == ("50", "0.25")
