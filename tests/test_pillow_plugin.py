import io

from PIL import Image

import tcodec


def test_pillow_opens_tcz_after_import(tmp_path, card):
    data = tcodec.encode(card, quality=80, caption="a test card")
    path = tmp_path / "card.tcz"
    path.write_bytes(data)
    with Image.open(path) as image:
        assert image.format == "TCZ"
        assert (image.size, image.mode) == (card.size, "RGB")
        assert image.info["caption"] == "a test card" and image.info["backend"] == "jpeg"
        assert image.tobytes() == tcodec.decode(data).tobytes()


def test_pillow_opens_tcz_from_a_stream(card):
    data = tcodec.encode(card.convert("L"))
    image = Image.open(io.BytesIO(data))
    assert image.convert("RGB").size == card.size
    assert image.mode == "L"


def test_extension_and_mime_are_registered():
    assert Image.registered_extensions()[".tcz"] == "TCZ"
    assert Image.MIME["TCZ"] == "image/x-tcz"


def test_pillow_reads_no_more_than_the_input_limit(card, monkeypatch):
    import pytest

    from tcodec import pillow_plugin
    from tcodec.limits import Limits

    data = tcodec.encode(card, quality=80)
    monkeypatch.setattr(pillow_plugin, "DEFAULT_LIMITS", Limits(max_input_bytes=len(data) - 1))
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(io.BytesIO(data))
    monkeypatch.setattr(pillow_plugin, "DEFAULT_LIMITS", Limits(max_input_bytes=len(data)))
    assert Image.open(io.BytesIO(data)).size == card.size
