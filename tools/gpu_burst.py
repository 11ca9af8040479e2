"""A timed training burst on a lent GPU machine, run there by the device tool.

    python tools/gpu_burst.py SECONDS ITERATIONS DECAY_FROM [LR]

Trains a branch of training/taco-gpu-v2.toml (its `base`) with the iterations, decay_from
and learning rate of this burst, stops it after SECONDS (checkpoints every 100 steps, so
little is lost), and writes the checkpoint to $OUT in three parts of under 16 MiB (the most one
returned file may hold), with its JSON and log. Join them with `safetensors` on the way
back and put the result in .gpu/out/ to resume. training/MODEL_CARD.md has the commands
that made tcodec-taco-v2.
"""

import os
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

from tcodec.training import load_config

CONFIG = Path("training/taco-gpu-v2.toml")
PARTS = 3


def main(seconds: float, iterations: int, decay_from: float, lr: float | None = None) -> None:
    out = Path(os.environ["OUT"])
    burst = CONFIG.with_name(".gpu-burst.toml")
    keys = {"iterations": iterations, "decay_from": decay_from, "save_every": 100} | ({"lr": lr} if lr else {})
    burst.write_text(f'base = "{CONFIG.name}"\n[train]\n' + "".join(f"{k} = {v}\n" for k, v in keys.items()))
    try:
        checkpoint = Path(load_config(burst)[2].checkpoint)
        subprocess.run(["timeout", str(int(seconds)), sys.executable, "-m", "tcodec.training", str(burst)])
    finally:
        burst.unlink()
    state = load_file(checkpoint)
    parts, sizes = [{} for _ in range(PARTS)], [0] * PARTS
    for key in sorted(state, key=lambda k: -state[k].numel() * state[k].element_size()):  # largest first
        smallest = sizes.index(min(sizes))
        parts[smallest][key] = state[key]
        sizes[smallest] += state[key].numel() * state[key].element_size()
    for i, part in enumerate(parts):
        save_file(part, out / f"part{i}.safetensors")
    for suffix in (".json", ".log.csv"):
        (out / f"{checkpoint.stem}{suffix}").write_bytes(checkpoint.with_suffix(suffix).read_bytes())


if __name__ == "__main__":
    main(float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), *(float(a) for a in sys.argv[4:5]))
