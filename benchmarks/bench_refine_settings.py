"""How much -O effort's refinement lowers the real cost, for other learning rates and
temperatures, on photos that are not Kodak (the held-out training photos).

    python benchmarks/bench_refine_settings.py --steps 32 --photos 6 --variant 0.02:0.3:0.1 --variant 0.04:0.3:0.1

For each photo (at least 320 px on the short side) of the held-out set of
training/taco-p1-release.toml and each quality of --qualities, tcodec-taco-v4's latents
are refined for --steps steps with each variant (learning rate : first temperature : last
temperature), and the real cost (bits/pixel + λ·255²·MSE, coded as the coder codes) is
divided by the unrefined latents' real cost; the script prints the running mean ratio per
variant (lower is better; 0.96 is a cost 4% lower). It tunes nothing by itself: the
constants in tcodec/models/refine.py are changed by hand, from what this prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

import tcodec.models.refine as refine
from tcodec.models import image_to_tensor, pad_to_multiple
from tcodec.models.taco import rate_lambda
from tcodec.models.text import text_encoder
from tcodec.training.taco import held_out, load_config
from tcodec.weights import load_model, read_lock

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "training" / "taco-p1-release.toml"
MODEL = "tcodec-taco-v4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--photos", type=int, default=6)
    parser.add_argument("--qualities", default="2,4,6")
    parser.add_argument("--variant", action="append", default=[],
                        help="LR:FIRST_TEMPERATURE:LAST_TEMPERATURE (repeatable); default: refine.py's own")
    args = parser.parse_args()
    variants = [tuple(map(float, v.split(":"))) for v in args.variant] or [
        (refine.LEARNING_RATE, *refine.TEMPERATURES)]
    _, _, recipe = load_config(RECIPE)
    photos = [p for p in held_out(recipe.data, recipe.holdout) if min(Image.open(p).size) >= 320][:args.photos]
    loaded = load_model(MODEL)
    model = loaded.model
    lambdas = read_lock()[MODEL].lambdas
    text = text_encoder(loaded.config["text_encoder"]).encode([""], "cpu")
    refiner = refine.Refiner(model)
    ratios: dict[tuple, list[float]] = {v: [] for v in variants}
    for photo in photos:
        image = Image.open(photo).convert("RGB")
        x = pad_to_multiple(image_to_tensor(image), model.downsampling)
        with torch.inference_mode():
            y = model.analyse(x, text)
        pixels, size = image.width * image.height, (image.height, image.width)
        for quality in map(float, args.qualities.split(",")):
            lam = rate_lambda(quality, lambdas, model.config.rates)
            inverse_gain = model.gains(quality)[1]
            start = model.scaled(y.clone(), quality)
            distortion = refine._distortion(x, size, inverse_gain)
            with torch.no_grad():
                before = refiner.real_cost(start.float(), model.h_a(start).float(), distortion, lam, pixels)
            for variant in variants:
                refine.LEARNING_RATE, refine.TEMPERATURES = variant[0], variant[1:]
                with torch.enable_grad():
                    y_refined, z_refined = refiner.refine(x, start.clone(), inverse_gain, lam, args.steps, size=size)
                after = refiner.real_cost(y_refined.float(), z_refined.float(), distortion, lam, pixels)
                ratios[variant].append(after / before)
        means = ", ".join(f"lr {v[0]:g} τ {v[1]:g}->{v[2]:g}: {sum(r) / len(r):.4f}" for v, r in ratios.items())
        print(f"{photo.name}: mean cost ratio so far, {args.steps} steps: {means}", flush=True)


if __name__ == "__main__":
    main()
