"""Tiny random PerCo models (the real diffusers layout, ~1 s each to write), shared by
tests/models/test_perco.py and tests/backends/test_perco.py: each is written once per
test session, whichever module asks first."""

from __future__ import annotations

import contextlib
import io
import signal
import sys
from pathlib import Path

_written: dict[tuple, Path] = {}


def tiny_perco(tmp_path_factory, seed: int = 0, grid: int = 8, codebook: int = 256) -> Path:
    """The folder of a tiny random PerCo model (written on the first call of the session)."""
    key = (seed, grid, codebook)
    if key not in _written:
        from tcodec.models.perco_weights import write_random

        folder = tmp_path_factory.mktemp("perco") / f"tiny-g{grid}-k{codebook}-s{seed}"
        with contextlib.redirect_stderr(io.StringIO()):  # transformers' "Writing model shards" bar
            write_random(folder, "tiny", grid=grid, codebook=codebook, seed=seed)
        _written[key] = folder
    return _written[key]


def isolate(tmp_path, monkeypatch) -> Path:
    """An empty model cache and no extra model folders, so that only what a test installs
    is found: the cache's folder (not created)."""
    monkeypatch.setenv("TCODEC_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("TCODEC_MODELS", raising=False)
    return tmp_path / "empty-cache"


def run_main(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run the `tcodec` command's entry point in this process (its real error handling and
    exit codes; models loaded by earlier calls stay loaded): (exit code, stdout, stderr)."""
    import tcodec.cli

    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.setattr(sys, "argv", ["tcodec", *map(str, args)])
        patch.setattr(tcodec.cli, "keep_freed_memory", lambda: False)  # not this test process's malloc
        patch.setattr(tcodec.cli, "_lift_pillow_bomb_limit", lambda: None)
        patch.setattr(tcodec.cli.signal, "signal", lambda *a: signal.SIG_DFL)
        try:
            tcodec.cli.main()
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
