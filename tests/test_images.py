import io

import pytest
from PIL import Image

from tcodec.errors import InputError
from tcodec.images import load_image, normalise

from tests.conftest import image_bytes


@pytest.mark.parametrize("fmt, options", [("PNG", {}), ("JPEG", {"quality": 95}), ("WEBP", {"lossless": True}),
                                           ("TIFF", {}), ("BMP", {})])
def test_common_formats_are_read(card, fmt, options):
    loaded = load_image(image_bytes(card, fmt, **options))
    assert loaded.image.mode == "RGB" and loaded.image.size == card.size and not loaded.notes
    if fmt != "JPEG":
        assert loaded.image.tobytes() == card.tobytes()


def test_paths_are_read(card_png, card):
    assert load_image(card_png).image.tobytes() == card.tobytes()
    assert load_image(str(card_png)).image.size == card.size


def test_exif_orientation_is_applied(card):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = image_bytes(card, "JPEG", quality=95, exif=exif)
    assert load_image(data).image.size == (card.height, card.width)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_l_and_rgb_pass_unchanged(card, mode):
    image = card.convert(mode)
    loaded = normalise(image)
    assert loaded.image.mode == mode and loaded.image.tobytes() == image.tobytes() and not loaded.notes


def test_bilevel_becomes_l_silently(card):
    loaded = normalise(card.convert("1"))
    assert loaded.image.mode == "L" and not loaded.notes


def test_palette_becomes_rgb_losslessly(card):
    palette = card.quantize(64)
    loaded = normalise(palette)
    assert loaded.image.mode == "RGB" and not loaded.notes
    assert loaded.image.tobytes() == palette.convert("RGB").tobytes()


def test_opaque_alpha_is_dropped_without_a_note(card):
    loaded = normalise(card.convert("RGBA"))
    assert loaded.image.mode == "RGB" and not loaded.notes
    assert loaded.image.tobytes() == card.tobytes()


def test_transparency_is_flattened_onto_white_with_a_note():
    image = Image.new("RGBA", (4, 2), (255, 0, 0, 255))
    image.putpixel((0, 0), (0, 0, 0, 0))
    image.putpixel((1, 0), (0, 0, 0, 128))
    loaded = normalise(image)
    assert loaded.notes == ["alpha channel flattened onto white"]
    assert loaded.image.getpixel((0, 0)) == (255, 255, 255)
    assert loaded.image.getpixel((1, 0)) == (127, 127, 127)
    assert loaded.image.getpixel((2, 0)) == (255, 0, 0)


def test_gray_with_alpha_stays_gray():
    image = Image.new("LA", (2, 2), (10, 0))
    loaded = normalise(image)
    assert loaded.image.mode == "L" and loaded.image.getpixel((0, 0)) == 255


def test_palette_with_transparency_is_flattened():
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 0
    data = image_bytes(image, "PNG")
    loaded = load_image(data)
    assert loaded.image.mode == "RGB" and loaded.notes
    assert loaded.image.getpixel((0, 0)) == (255, 255, 255) and loaded.image.getpixel((1, 0)) == (200, 10, 10)


def test_16_bit_is_reduced_with_rounding():
    image = Image.new("I;16", (4, 1))
    for x, value in enumerate([0, 128, 385, 65535]):
        image.putpixel((x, 0), value)
    loaded = load_image(image_bytes(image, "PNG"))
    assert loaded.image.mode == "L" and loaded.notes == ["I;16 image reduced to 8 bits"]
    assert [loaded.image.getpixel((x, 0)) for x in range(4)] == [0, 0, 1, 255]


def test_cmyk_is_converted_with_a_note(card):
    loaded = load_image(image_bytes(card.convert("CMYK"), "JPEG", quality=95))
    assert loaded.image.mode == "RGB" and "CMYK" in loaded.notes[0]


def test_float_images_are_refused():
    with pytest.raises(InputError, match="mode 'F' are not supported"):
        normalise(Image.new("F", (2, 2)))


def test_animation_codes_the_first_frame_with_a_note():
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    loaded = load_image(buffer.getvalue())
    assert loaded.notes == ["2 frames; only the first is coded"]
    assert loaded.image.getpixel((0, 0)) == (255, 0, 0)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "absent.png")


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        load_image(tmp_path)


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello")
    with pytest.raises(InputError, match="notes.png: not an image format tcodec can read"):
        load_image(path)


def test_truncated_image(card):
    data = image_bytes(card, "PNG")
    with pytest.raises(InputError, match="cannot read image"):
        load_image(data[: len(data) // 2])


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` and whose data is one empty chunk:
    cheap to make, and ruinous to decode if its size were believed."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_refused_from_its_declared_size(monkeypatch):
    loads = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loads.append(self.size))
    # A library caller keeps Pillow's own warning (its limit is process-wide; the CLI lifts it)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)  # Pillow's default
    with pytest.warns(Image.DecompressionBombWarning):
        with pytest.raises(InputError, match="bomb.png: 12000x12000 is 144,000,000 pixels, more than the limit of "
                                             "67,108,864"):
            load_image(png_claiming(12000, 12000), name="bomb.png")
    assert loads == []


def test_the_pixel_limit_can_be_lowered_and_raised(card):
    from tcodec.limits import Limits

    with pytest.raises(InputError, match="more than the limit of 100"):
        load_image(image_bytes(card), limits=Limits(max_pixels=100))
    with pytest.raises(InputError, match="more than the limit of 100"):
        load_image(card, limits=Limits(max_pixels=100))
    assert load_image(image_bytes(card), limits=Limits(max_pixels=card.width * card.height)).image.size == card.size


def test_pillows_own_refusal_becomes_a_one_line_input_error(monkeypatch):
    from tcodec.limits import Limits

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)  # Pillow's default

    with pytest.raises(InputError, match="larger than Pillow allows"):
        load_image(png_claiming(20000, 20000), limits=Limits(max_pixels=1 << 30))


def test_paths_are_read_within_the_byte_limit(card_png):
    from tcodec.limits import Limits

    with pytest.raises(InputError, match="larger than the input limit of 10 bytes"):
        load_image(card_png, limits=Limits(max_input_bytes=10))
