import numpy as np
import pytest
from PIL import Image, features

from tcodec.bench.codecs import REFERENCE_CODECS, get_codec
from tcodec.errors import BackendError, InputError


def available(name: str):
    try:
        return get_codec(name)
    except BackendError as error:
        pytest.skip(str(error))


@pytest.mark.parametrize("name", ["jpeg", *REFERENCE_CODECS])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_every_codec_writes_a_file_and_decodes_it(name, mode, card):
    codec = available(name)
    image = card.convert(mode)
    data = codec.encode(image, codec.default_qualities[-1])
    decoded = codec.decode(data)
    assert decoded.size == image.size
    error = np.abs(np.asarray(decoded.convert("RGB"), float) - np.asarray(image.convert("RGB"), float)).mean()
    assert error < 10


def test_tcodec_backends_go_through_tcz(card):
    codec = get_codec("jpeg")
    data = codec.encode(card, 50)
    assert data[:3] == b"TCZ"
    assert codec.model_hash(data) is None
    assert codec.settings()["container"] == "tcz"


@pytest.mark.parametrize("name", ["jpeg", *REFERENCE_CODECS])
def test_settings_and_versions_are_recorded(name):
    codec = available(name)
    assert codec.versions()["Pillow"] == Image.__version__
    assert codec.description().startswith(name)
    assert codec.quality_meaning


def test_library_versions_come_from_pillow():
    if not features.check("webp"):
        pytest.skip("no WebP")
    assert get_codec("webp").versions()["libwebp"] == features.version("webp")
    assert get_codec("webp").settings()["method"] == 6


def test_jpeg2000_quality_is_the_target_bpp(card):
    codec = available("jpeg2000")
    data = codec.encode(card, 1.0)
    assert 8 * len(data) / (card.width * card.height) == pytest.approx(1.0, abs=0.2)


def test_quality_out_of_range_is_an_input_error():
    with pytest.raises(InputError, match="webp"):
        get_codec("webp").check_quality(101)
    with pytest.raises(InputError, match="integer"):
        get_codec("pillow-jpeg").check_quality(50.5)
    with pytest.raises(InputError):
        get_codec("jpeg").check_quality(0)


def test_unknown_codec_is_a_backend_error():
    with pytest.raises(BackendError, match="unknown codec 'gif'.*webp"):
        get_codec("gif")


def test_reference_settings_can_be_changed_with_typed_values(card):
    webp = available("webp").with_options({"method": "4", "lossless": "false"})
    assert webp.settings()["method"] == 4 and webp.settings()["lossless"] is False
    assert get_codec("webp").settings()["method"] == 6  # the registered codec is unchanged
    with pytest.raises(InputError, match="unknown option 'speed' for webp"):
        get_codec("webp").with_options({"speed": "1"})
    with pytest.raises(InputError, match="expected int"):
        get_codec("webp").with_options({"method": "fast"})


def test_backend_options_reach_the_backend_and_the_settings(card):
    from tcodec import api

    codec = get_codec("jpeg", "auto", (("subsampling", "4:4:4"),))
    assert codec.settings()["subsampling"] == "4:4:4"
    data = codec.encode(card, 80)
    assert data == api.encode(card, "jpeg", 80, options={"subsampling": "4:4:4"})


def test_a_model_option_reaches_the_decoder_too(card, tiny_folder, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.delenv("TCODEC_MODELS", raising=False)  # only the option can find this model
    codec = get_codec("taco", "cpu", (("model", str(tiny_folder)),))
    assert codec.decode(codec.encode(card, 2)).size == card.size


def test_a_caption_reaches_only_backends_that_use_it(card, monkeypatch):
    from tcodec import api

    seen = []
    monkeypatch.setattr(api, "encode", lambda *args, caption=None, **kw: seen.append(caption) or b"")
    codec = get_codec("jpeg")
    assert codec.uses_caption is False  # jpeg would only store it: that measures the container
    codec.encode(card, 50, "a red door")
    assert seen == [None]
