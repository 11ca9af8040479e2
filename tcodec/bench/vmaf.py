"""VMAF (Netflix) of one image, through the static ffmpeg that the ``imageio-ffmpeg`` wheel
ships: it is built with libvmaf, whose built-in models need no file.

Model ``vmaf_v0.6.1`` (libvmaf's default, asked for by its version so that a later default
cannot change the numbers), one frame, one thread (``-threads 1``, ``n_threads=1``). Both
images go to ffmpeg as raw rgb24 and are converted by ffmpeg's scaler to 8-bit limited-range
BT.601 ``yuv444p``, what ffmpeg does for RGB input without colour metadata. VMAF v0.6.1
reads the luma plane only (VIF, ADM and motion on Y), so 4:4:4 and 4:2:0 give the same score
(checked); 4:4:4 is used because it skips a chroma resampling that the score never sees, and
takes odd sizes. Colour errors are therefore invisible to VMAF. The score is read from
libvmaf's JSON log. A still image has no motion (the motion feature is 0), so identical images
score 97.43, not 100: that is the model's value for VIF = ADM = 1 without motion, the
highest it gives a still image.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from functools import cache
from pathlib import Path

MODEL = "vmaf_v0.6.1"
PIXEL_FORMAT = "yuv444p"
CONVERSION = f"scale=out_color_matrix=bt601:out_range=tv:flags=accurate_rnd+bitexact,format={PIXEL_FORMAT}"
TIMEOUT_S = 600
# smaller images crash libvmaf (16x16: a segfault) or give its multi-scale features too few
# pixels (identical 24x24 images scored 95.8; from 36 px on, 97.43 within 0.001)
MIN_SIDE = 48


class VmafError(Exception):
    """ffmpeg or libvmaf could not score a pair; the message says why, in one line."""


def ffmpeg_program() -> str:
    """The path of imageio-ffmpeg's ffmpeg binary.

    Raises:
        VmafError: the wheel has no binary for this platform.
    """
    import imageio_ffmpeg

    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as error:
        raise VmafError(f"imageio-ffmpeg has no ffmpeg binary here ({error})") from None


def vmaf(reference, decoded) -> float:
    """VMAF v0.6.1 of ``decoded`` against ``reference`` (uint8 HxWx3 arrays of one size);
    0-100, higher is better.

    Raises:
        VmafError: a side under MIN_SIDE, or ffmpeg failed.
    """
    height, width = reference.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise VmafError(f"image is {width}x{height}; VMAF needs both sides of at least {MIN_SIDE} px")
    return _run(reference, decoded)["pooled_metrics"]["vmaf"]["mean"]


def _run(reference, decoded) -> dict:
    """libvmaf's JSON log for one pair of images."""
    height, width = reference.shape[:2]
    raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}"]
    graph = (f"[0:v]{CONVERSION}[main];[1:v]{CONVERSION}[reference];"
             f"[main][reference]libvmaf=model=version={MODEL}:n_threads=1:log_fmt=json:log_path=vmaf.json")
    with tempfile.TemporaryDirectory(prefix="tcodec-vmaf-") as folder:
        # relative names, run in the folder: no path needs escaping inside the filter graph
        decoded.tofile(Path(folder) / "decoded.rgb")
        reference.tofile(Path(folder) / "reference.rgb")
        command = [ffmpeg_program(), "-hide_banner", "-nostdin", "-loglevel", "error", "-threads", "1",
                   "-filter_threads", "1", *raw, "-i", "decoded.rgb", *raw, "-i", "reference.rgb",
                   "-lavfi", graph, "-f", "null", "-"]
        try:
            result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as error:
            raise VmafError(f"ffmpeg did not run ({error})") from None
        if result.returncode != 0:
            # the first line names the cause; the later ones are ffmpeg's generic summary
            first = (result.stderr.strip().splitlines() or ["no message"])[0]
            first = re.sub(r"^\[[^]]* @ 0x[0-9a-f]+\] ", "", first)
            raise VmafError(f"ffmpeg's libvmaf failed on a {width}x{height} image (exit {result.returncode}): {first}")
        try:
            return json.loads((Path(folder) / "vmaf.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise VmafError(f"libvmaf wrote no readable JSON log ({error})") from None


@cache
def versions() -> dict[str, str]:
    """ffmpeg's version and libvmaf's (the version its JSON log gives: a release or a git
    commit), and the model and pixel format used."""
    import numpy as np

    first = subprocess.run([ffmpeg_program(), "-version"], capture_output=True, text=True, timeout=60).stdout
    ffmpeg = first.split("\n", 1)[0].removeprefix("ffmpeg version ").split(" Copyright")[0].strip()
    probe = np.full((64, 64, 3), 128, np.uint8)
    return {"ffmpeg": ffmpeg or "unknown", "libvmaf": str(_run(probe, probe).get("version", "unknown")),
            "model": MODEL, "pixel format": f"{PIXEL_FORMAT} (BT.601, limited range)"}
