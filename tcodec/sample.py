"""A built-in test card, so tests (and benchmarks) need no downloaded image."""

from __future__ import annotations

import math

from PIL import Image, ImageDraw, ImageFilter


def sample_image(width: int = 512, height: int = 384) -> Image.Image:
    """A deterministic RGB picture with what codecs find hard: smooth gradients, sharp
    edges, fine stripes, saturated colour and texture."""
    image = Image.new("RGB", (width, height))
    pixels = image.load()
    for y in range(height):
        for x in range(width):
            r = int(255 * x / (width - 1))
            g = int(255 * y / (height - 1))
            b = int(127.5 + 127.5 * math.sin(x * 0.05) * math.cos(y * 0.07))
            pixels[x, y] = (r, g, b)
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.55, height * 0.1, width * 0.95, height * 0.6), fill=(220, 30, 40), outline="white", width=4)
    draw.rectangle((width * 0.05, height * 0.55, width * 0.4, height * 0.92), fill=(20, 60, 200))
    for i in range(0, int(width * 0.35), 3):  # one-pixel stripes: a worst case for 4:2:0
        x = int(width * 0.05) + i
        draw.line((x, height * 0.1, x, height * 0.45), fill=(255, 255, 255) if i % 2 else (0, 0, 0))
    draw.polygon([(width * 0.5, height * 0.95), (width * 0.7, height * 0.65), (width * 0.9, height * 0.95)],
                 fill=(250, 210, 0))
    return image.filter(ImageFilter.SMOOTH_MORE).filter(ImageFilter.SHARPEN)
