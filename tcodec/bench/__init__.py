"""``tcodec bench``: compare codecs and qualities on a folder of images, with real files.

Every image is encoded to a file on disk by each codec at each quality, read back and
decoded; the rate comes from the file's size and the metrics from the decoded pixels.
Layout:

- ``command.py``  the Typer command (imports nothing heavy)
- ``qualities.py`` quality lists and ranges (``1-6``, ``10,30,50``, ``0-90:10``)
- ``codecs.py``   tcodec backends (through ``.tcz``) and reference codecs (WebP, AVIF,
  JPEG 2000, JPEG XL, Pillow JPEG) behind one interface
- ``metrics.py``  the metric registry: PSNR, MS-SSIM, and metrics that need weights
- ``measure.py``  one encode/decode with time and peak memory
- ``cache.py``    the JSON Lines cache that makes a run resumable
- ``runner.py``   images, tasks, parallel jobs, progress
- ``curves.py``   averages per codec and quality, CompressAI JSON, anchors, BD table
- ``bdrate.py``   Bjontegaard deltas (PCHIP or cubic)
- ``report.py``, ``plots.py``  tables, CSV, Markdown and RD plots
"""
