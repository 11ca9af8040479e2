"""tcodec's SSIMULACRA 2 against the C++ reference's scores (libjxl tools/ssimulacra2, as
imazen/ssimulacra2's reference_data.rs captured them), and against the PyPI package
``ssimulacra2`` where it is installed (tcodec does not depend on it).

    python benchmarks/bench_ssimulacra2_reference.py

The images are the reference's synthetic ones, rebuilt by the test's generators and
checked by their sha256. Flat images with a small shift have a zero variance, so their
reference score rests on float32 rounding: they are printed, not used as a check.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tcodec.bench.ssimulacra2 import ssimulacra2  # noqa: E402
from tests.bench.test_bench_ssimulacra2 import gradient, noise, uniform  # noqa: E402

# name, reference image, distorted image, the C++ score
CASES = [
    ("gradient_vs_uniform_64x64", gradient(64), uniform(64, 128), -64.568721479999994),
    ("noise_vs_uniform_64x64", noise(64, 42), uniform(64, 128), -47.335725580000002),
    ("uniform_shift_50_64x64", uniform(64, 128), uniform(64, 178), -8.759422560000001),
    ("uniform_shift_50_128x128", uniform(128, 128), uniform(128, 178), -9.823833150000000),
    ("uniform_shift_1_32x32", uniform(32, 128), uniform(32, 129), 97.749214300000006),
    ("uniform_shift_5_32x32", uniform(32, 128), uniform(32, 133), 98.808273819999997),
    ("uniform_shift_1_64x64", uniform(64, 128), uniform(64, 129), 97.986721259999996),
    ("uniform_shift_10_64x64", uniform(64, 128), uniform(64, 138), 80.242893929999994),
    ("uniform_shift_5_128x128", uniform(128, 128), uniform(128, 133), 88.540708760000001),
    ("uniform_shift_1_256x256", uniform(256, 128), uniform(256, 129), 96.150270980000002),
    ("uniform_shift_20_256x256", uniform(256, 128), uniform(256, 148), 59.778929179999999),
]


def pypi_score(reference, distorted) -> float | None:
    if importlib.util.find_spec("ssimulacra2") is None:
        return None
    import ssimulacra2 as package

    with tempfile.TemporaryDirectory() as folder:
        paths = [f"{folder}/a.png", f"{folder}/b.png"]
        for pixels, path in zip((reference, distorted), paths):
            Image.fromarray(pixels).save(path)
        return package.compute_ssimulacra2(*paths)


def main() -> None:
    print(f"{'case':<26} {'C++':>9} {'tcodec':>9} {'diff':>8} {'PyPI ssimulacra2':>17}")
    for name, reference, distorted, expected in CASES:
        ours = ssimulacra2(reference, distorted)
        other = pypi_score(reference, distorted)
        shown = "not installed" if other is None else f"{other:.3f}"
        print(f"{name:<26} {expected:9.3f} {ours:9.3f} {ours - expected:+8.3f} {shown:>17}")


if __name__ == "__main__":
    main()
