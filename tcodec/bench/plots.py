"""Rate-distortion plots as PNG: PSNR, MS-SSIM (in dB) and every other measured metric
(``rd-<key>.png``, e.g. ``rd-st-lpips-alex.png``) against bpp, the run's
curves solid with markers, anchors dashed (in the colour of the run's codec of the
same name, so ``webp`` and ``compressai-kodak/webp`` pair up). matplotlib, Agg backend."""

from __future__ import annotations

import io
from pathlib import Path

from tcodec.bench.curves import RDCurve, ms_ssim_db
from tcodec.bench.metrics import METRICS
from tcodec.fileio import write_atomic

PALETTE_COLOURS = 64  # the PNGs are stored with a palette: a few tens of KB instead of ~150


def plot_rd(curves: list[RDCurve], folder: Path, title: str) -> list[Path]:
    """Write ``rd-psnr.png``, ``rd-ms-ssim.png`` and one per other metric; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = [c for c in curves if not c.anchor]
    max_bpp = 1.1 * max((max(c.bpp) for c in ours if c.bpp), default=2.0)
    colours = _colours(curves, plt.get_cmap("tab20").colors)
    written = []
    others = [key for key in METRICS if any(key in c.others for c in curves)]
    for name, ylabel, values_of in (
        ("rd-psnr.png", "PSNR-RGB (dB)", lambda c: c.psnr),
        ("rd-ms-ssim.png", "MS-SSIM-RGB (dB) = -10 log10(1 - MS-SSIM)", lambda c: [ms_ssim_db(v) for v in c.ms_ssim]),
        *((f"rd-{key}.png", f"{METRICS[key].title} ({'higher' if METRICS[key].higher_is_better else 'lower'} is better)",
           lambda c, key=key: c.others.get(key, (None,) * len(c.bpp))) for key in others),
    ):
        figure, axes = plt.subplots(figsize=(9, 5), dpi=90)
        for curve in curves:
            pairs = [(r, v) for r, v in zip(curve.bpp, values_of(curve)) if v is not None and r <= max_bpp]
            if not pairs:
                continue
            style = dict(linestyle="--", linewidth=1) if curve.anchor else dict(marker="o", markersize=3)
            axes.plot([r for r, _ in pairs], [v for _, v in pairs], label=curve.label, color=colours[curve.label],
                      **style)
        axes.set(xlabel="bits per pixel (file size)", ylabel=ylabel, title=title, xlim=(0, max_bpp))
        axes.grid(True, alpha=0.3)
        if axes.lines:  # a metric no curve has (not measured in this run) gets an empty plot, no legend
            axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        figure.tight_layout()
        path = folder / name
        write_atomic(path, _png_bytes(figure), overwrite=True)
        plt.close(figure)
        written.append(path)
    return written


def _colours(curves: list[RDCurve], palette: tuple) -> dict[str, tuple]:
    ours = {c.label: palette[(2 * i) % len(palette)] for i, c in enumerate(c for c in curves if not c.anchor)}
    colours, spare = dict(ours), 1
    for curve in curves:
        if curve.anchor:
            stem = curve.label.rsplit("/", 1)[-1]
            if stem in ours:
                colours[curve.label] = ours[stem]
            else:
                colours[curve.label] = palette[(2 * len(ours) + spare) % len(palette)]
                spare += 2
    return colours


def _png_bytes(figure) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB").quantize(PALETTE_COLOURS)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()
