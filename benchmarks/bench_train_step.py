"""Seconds per training step of tcodec's TACO model, float32 against bf16 autocast.

    python benchmarks/bench_train_step.py [--config training/taco-v3-release.toml] [--steps 2]

Whether bf16 pays depends on the CPU: with native bf16 (AVX512-BF16, AMX) it halves a step,
without it PyTorch emulates it and a step gets many times slower. Random weights and
inputs of the config's batch and crop size (speed does not depend on the values); one
warm-up step, then the mean of --steps steps, forward + backward + Adam.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from tcodec.models.taco import TacoModel
from tcodec.training import load_config

ROOT = Path(__file__).resolve().parents[1]


def seconds_per_step(model: TacoModel, batch: int, crop: int, text_dim: int, bf16: bool, steps: int) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    x, text = torch.rand(batch, 3, crop, crop), torch.randn(batch, 38, text_dim)
    quality = torch.rand(batch) * (model.config.rates - 1) + 1
    for step in range(steps + 1):
        if step == 1:
            started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x, text, quality)
        loss = out["x_hat"].float().pow(2).mean() - sum(l.log().mean() for l in out["likelihoods"].values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "training" / "taco-v3-release.toml")
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    config, _, recipe = load_config(args.config)
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(0)
    model = TacoModel(config).train()
    for bf16 in (False, True):
        seconds = seconds_per_step(model, recipe.batch, recipe.crop, config.text_dim, bf16, args.steps)
        print(f"{'bf16 autocast' if bf16 else 'float32':>14}: {seconds:.2f} s per step "
              f"(batch {recipe.batch} of {recipe.crop}x{recipe.crop}, {recipe.threads} threads)", flush=True)


if __name__ == "__main__":
    main()
