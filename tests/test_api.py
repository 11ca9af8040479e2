import warnings

import pytest

import tcodec
from tcodec.errors import BackendError, FormatError, InputError, TcodecWarning

from tests.conftest import image_bytes


def test_encode_accepts_an_image_a_path_or_bytes(card, card_png):
    from_image = tcodec.encode(card, quality=70)
    assert tcodec.encode(card_png, quality=70) == from_image
    assert tcodec.encode(str(card_png), quality=70) == from_image
    assert tcodec.encode(image_bytes(card), quality=70) == from_image


def test_decode_accepts_bytes_or_a_path(tmp_path, card):
    data = tcodec.encode(card)
    path = tmp_path / "card.tcz"
    path.write_bytes(data)
    assert tcodec.decode(path).tobytes() == tcodec.decode(data).tobytes()
    assert tcodec.decode(str(path)).size == card.size


def test_default_backend_and_quality(card):
    info = tcodec.read_info(tcodec.encode(card))
    assert (info.backend, info.quality) == ("jpeg", 75)


def test_read_info_does_not_decode(card):
    info = tcodec.read_info(tcodec.encode(card, caption="a card"))
    assert (info.width, info.height, info.mode, info.caption) == (96, 64, "RGB", "a card")


def test_encoding_is_deterministic(card):
    assert tcodec.encode(card, quality=50) == tcodec.encode(card, quality=50)


def test_lossy_conversions_are_warned(card):
    rgba = card.convert("RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    with pytest.warns(TcodecWarning, match="alpha channel flattened onto white"):
        tcodec.encode(rgba)


def test_lossless_conversions_are_silent(card):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tcodec.encode(card.quantize(16))


def test_jpeg_stores_a_caption_when_given(card):
    assert tcodec.read_info(tcodec.encode(card, caption="cat")).caption == "cat"
    assert tcodec.read_info(tcodec.encode(card)).caption is None
    assert tcodec.read_info(tcodec.encode(card, caption="cat", store_caption=False)).caption is None


def test_caption_does_not_change_the_jpeg_payload(card):
    with_caption = tcodec.read_info(tcodec.encode(card, caption="a colourful card"))
    assert with_caption.streams == tcodec.read_info(tcodec.encode(card)).streams


def test_caption_over_the_limit_is_an_input_error(card):
    with pytest.raises(InputError, match="caption is 5000 bytes"):
        tcodec.encode(card, caption="x" * 5000)


@pytest.mark.parametrize("device", ["gpu", "cuda:x", ""])
def test_bad_device_is_an_input_error(card, device):
    with pytest.raises(InputError, match="device must be auto, cpu or cuda"):
        tcodec.encode(card, device=device)


def test_unknown_backend(card):
    with pytest.raises(BackendError, match="unknown backend"):
        tcodec.encode(card, backend="nope")


def test_unknown_option(card):
    with pytest.raises(InputError, match="unknown option 'speed' for jpeg"):
        tcodec.encode(card, options={"speed": "1"})


def test_decoding_garbage_is_a_format_error():
    with pytest.raises(FormatError, match="not a .tcz file"):
        tcodec.decode(b"definitely not")


def test_decoding_a_missing_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        tcodec.decode(tmp_path / "missing.tcz")


def test_errors_share_one_base_class():
    for error in (InputError, FormatError, BackendError, tcodec.ModelError, tcodec.OutputError):
        assert issubclass(error, tcodec.TcodecError)
    codes = [InputError.exit_code, FormatError.exit_code, tcodec.ModelError.exit_code,
             BackendError.exit_code, tcodec.OutputError.exit_code]
    assert codes == [2, 3, 4, 5, 7]


def test_docstring_example_runs():
    import doctest

    import tcodec.api

    assert doctest.testmod(tcodec.api).failed == 0


def test_fractional_quality_is_used_as_the_header_stores_it():
    pytest.importorskip("torch")  # taco is the backend with fractional qualities
    from tcodec.api import check_quality

    assert check_quality("taco", 3.3333) == 3.33


def test_a_caption_is_checked_before_any_work_even_when_not_stored(card, monkeypatch):
    from tcodec.backends.jpeg import JpegBackend

    monkeypatch.setattr(JpegBackend, "encoder", lambda *args, **kwargs: pytest.fail("encoded anyway"))
    with pytest.raises(tcodec.InputError, match="not valid Unicode"):
        tcodec.encode(card, "jpeg", 75, caption="a\ud800b", store_caption=False)
    with pytest.raises(tcodec.InputError, match="caption is 5000 bytes"):
        tcodec.encode(card, "jpeg", 75, caption="x" * 5000, store_caption=False)
