"""Write the golden vectors in formats/vectors/ that do not exist yet.

    python formats/make_vectors.py

Existing vectors are never rewritten: a vector that no longer decodes as its JSON says
means the format changed, which needs a new format version, not a new vector.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from PIL import Image

from tcodec import api
from tcodec.backends.perco import RATE_SETTINGS, Sampling, default_sampling, grid_shape, pack_payload, unpack_payload
from tcodec.coding import captions
from tcodec.format.container import Container, pack, unpack
from tcodec.images import LoadedImage
from tcodec.sample import sample_image

HERE = Path(__file__).parent / "vectors"


def gradient(mode: str, width: int, height: int) -> Image.Image:
    image = Image.new(mode, (width, height))
    for y in range(height):
        for x in range(width):
            value = (x * 255 // (width - 1), y * 255 // (height - 1), (x + y) * 255 // (width + height - 2))
            image.putpixel((x, y), value if mode == "RGB" else value[0])
    return image


def vectors() -> dict[str, bytes]:
    return {
        "jpeg-rgb": api.encode(LoadedImage(gradient("RGB", 32, 24)), "jpeg", 75),
        "jpeg-gray-caption": api.encode(LoadedImage(gradient("L", 16, 8)), "jpeg", 90, caption="gray ramp"),
        # One per packaged taco model: its decoder must keep reading these bits the same way.
        **{f"taco-{version}-rgb": api.encode(LoadedImage(sample_image(80, 56)), "taco", 3.5,
                                             caption="a colourful test card", store_caption=True,
                                             options={"model": f"tcodec-taco-{version}"})
           for version in ("v1", "v2", "v3", "v4", "p1", "p2", "p3", "p4", "p5")},
        # The perco payload (bitstream level: no released model can be installed here, and a
        # random one's pixels are no contract): every sampling field, and the defaults.
        "perco-payload": perco_vector(768, 512, 1, Sampling(steps=4, guidance=2.5, seed=42),
                                      "a red barn with a pond in the background"),
        "perco-defaults": perco_vector(300, 200, 4, default_sampling(RATE_SETTINGS[3]),
                                       "two parrots standing next to each other"),
        # Container-level only: opaque streams in a learned backend's layout.
        "taco-container": pack(Container(
            backend="taco", quality=3.5, width=300, height=200, mode="RGB",
            streams=(b"\x01\x02\x03\x04", b"", bytes(range(200))),
            entropy_coder="constriction-ans", model_hash=bytes.fromhex("0123456789abcdef"),
            coded_caption=captions.encode("café ☕ — naïve"),
        )),
    }


def perco_indices(count: int, codebook: int) -> list[int]:
    """Indices that use the whole codebook, ending in zeros (which the trimmed stream drops)."""
    return [(i * 37 + i * i) % codebook for i in range(count - 5)] + [0] * 5


def perco_vector(width: int, height: int, quality: int, sampling: Sampling, caption: str) -> bytes:
    setting = RATE_SETTINGS[quality - 1]
    rows, columns = grid_shape(width, height, setting)
    return pack(Container(
        backend="perco", quality=quality, width=width, height=height, mode="RGB",
        streams=(pack_payload(sampling, setting, perco_indices(rows * columns, setting.codebook)),),
        entropy_coder="constriction-range", model_hash=bytes.fromhex("fedcba9876543210"),
        coded_caption=captions.encode(caption),
    ))


def describe(data: bytes) -> dict:
    container = api.read_info(data)
    expected = {
        "backend": container.backend, "quality": container.quality, "width": container.width,
        "height": container.height, "mode": container.mode, "entropy_coder": container.entropy_coder,
        "model_hash": container.model_hash.hex() if container.model_hash else None,
        "caption": container.caption, "size_bytes": len(data),
        "stream_sha256": [hashlib.sha256(s).hexdigest() for s in container.streams],
    }
    if container.backend == "jpeg":
        expected["pixels_sha256"] = hashlib.sha256(api.decode(data).tobytes()).hexdigest()
    if container.backend == "perco":
        setting = RATE_SETTINGS[int(container.quality) - 1]
        rows, columns = grid_shape(container.width, container.height, setting)
        sampling, indices = unpack_payload(container.streams[0], setting, rows * columns)
        expected["perco"] = {"grid": [rows, columns], "steps": sampling.steps, "guidance": sampling.guidance,
                             "seed": sampling.seed, "indices": indices}
    return expected


def reference_decode(name: str, data: bytes) -> None:
    """A learned decoder's output, kept as PNG: its float32 synthesis may differ by a level
    between CPUs, so tests compare with a tolerance instead of a hash."""
    if unpack(data).backend == "taco":
        api.decode(data).save(HERE / f"{name}.decoded.png")


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for name, data in vectors().items():
        target = HERE / f"{name}.tcz"
        if target.exists():
            print(f"kept    {target}")
            continue
        target.write_bytes(data)
        (HERE / f"{name}.json").write_text(json.dumps(describe(data), indent=2, ensure_ascii=False) + "\n")
        reference_decode(name, data)
        print(f"wrote   {target} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
