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
