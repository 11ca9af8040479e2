"""Train tcodec's own variable-rate TACO weights on the CPU (or a lent GPU), resumably.

    python -m tcodec.training training/taco-v4-release.toml                         # starts, or resumes
    python -m tcodec.training training/taco-v4-release.toml --export tcodec-taco-v4 # checkpoint -> package model

One model learns every rate: each sample of a batch draws a quality q in [1, rates]
and its λ(q) (log-linear between the config's end points), and the loss is
bpp + λ(q)·255²·MSE averaged over the batch; the rate gains of the model follow q.
Captions come with the images (COCO's human captions, ImageNet's "a photo of a ...")
and are dropped to "" with some probability, so the model also works without text.
Their MiniLM token states are computed once and cached.

A second stage (``stage = "parameter_networks"``, how tcodec-taco-v4 was made) trains only
the entropy-parameter networks, for rate, on latents of the frozen analysis transform: to
fit integer networks (``integer_bits``) to a trained model, quantisation-aware.

Checkpoints hold the model weights only (safetensors) and a small JSON with the
iteration; a restarted run continues from them (Adam's moments start afresh, with a
short warm-up). Kodak is never read here: it is for evaluation only.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tcodec.images import IMAGE_SUFFIXES
from tcodec.errors import InputError, TcodecError
from tcodec.models.integer import IntegerLayer
from tcodec.models.layers import Extractor, Injector
from tcodec.models.taco import TacoConfig, TacoModel, rate_lambda



@dataclass
class Recipe:
    """The [train] table of a config file (see training/*.toml for the meaning)."""

    data: list[str]
    checkpoint: str
    iterations: int
    init: str = ""  # a checkpoint to start from (weights and iteration) while `checkpoint` does not exist
    batch: int = 8
    crop: int = 128
    short_side: tuple[int, int] = (256, 384)
    lr: float = 5e-4
    warmup: int = 300
    resume_warmup: int = 100
    decay_from: float = 0.8  # fraction of iterations after which the lr decays (cosine to 10%)
    aux_lr: float = 1e-2
    lambdas: tuple[float, float] = (0.0018, 0.0932)  # λ at quality 1 and at the top quality
    caption_dropout: float = 0.3
    bf16: bool = True
    threads: int = 2
    device: str = "cpu"  # or "cuda": the same recipe on a lent GPU
    freeze_text_adapter: bool = False  # for runs without captions: keep what the adapter learnt
    seed: int = 0
    log_every: int = 50
    save_every: int = 500
    # "all" trains the whole model (bpp + λ·MSE); "parameter_networks" trains only the
    # entropy-parameter networks, for rate alone, on latents that the frozen analysis
    # transform computes once for `latent_crops` crops (how integer networks are fitted)
    stage: str = "all"
    latent_crops: int = 2048
    # TACO's perceptual term: k_p times ST-LPIPS (alex) of each crop is added to its
    # bpp + λ·MSE (0: pixels only); the joint image-text term needs CLIP's image tower
    perceptual: float = 0.0
    # k_s times (100 - SSIMULACRA 2) / 100 of each crop is added too (0: none), times
    # (λ / λ_top) ** ssimulacra2_lambda_exponent: with 0 the same weight at every quality,
    # which at low qualities outweighs the rate many times over (SSIMULACRA 2 falls fastest
    # there); 0.5 keeps its pull near a fixed share of the rate's along the curve
    ssimulacra2: float = 0.0
    ssimulacra2_lambda_exponent: float = 0.0
    # parameters whose names start with one of these stay as they are (e.g. the integer
    # entropy-parameter networks, so a fine-tuned model shares them with its base)
    frozen: tuple[str, ...] = ()
    # every holdout-th image (sorted by path) is left out of training, for validation
    holdout: int = 0


def _read_config(path: Path) -> dict:
    """The config's tables, a branch's ``base`` (and its base, ...) filled in under it."""
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    if "base" in raw:  # a branch of another run: its model and recipe, some keys changed
        base = _read_config(path.parent / raw.pop("base"))
        tables = {table: {**base.get(table, {}), **raw.get(table, {})} for table in ("model", "train")}
        raw = {**base, **raw, **tables}
    return raw


def load_config(path: Path) -> tuple[TacoConfig, str, Recipe]:
    raw = _read_config(path)
    root = path.parent
    recipe = Recipe(**raw["train"])
    recipe.data = [str((root / d).resolve()) for d in recipe.data]
    recipe.checkpoint = str((root / recipe.checkpoint).resolve())
    recipe.init = str((root / recipe.init).resolve()) if recipe.init else ""
    return TacoConfig.from_dict(raw["model"]), raw.get("text_encoder", "all-minilm-l6-v2"), recipe


# --- data ------------------------------------------------------------------------------


def find_images(folders: list[str], holdout: int = 0) -> list[Path]:
    """The training images; with ``holdout`` N, every N-th one is left out (see held_out)."""
    files = sorted(p for folder in folders for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if any("kodak" in part.lower() for f in files for part in f.parts):
        raise InputError("refusing to train on Kodak: it is the evaluation set")
    return [f for i, f in enumerate(files) if not holdout or i % holdout]


def held_out(folders: list[str], holdout: int) -> list[Path]:
    """The validation images that ``find_images(folders, holdout)`` leaves out."""
    everything = find_images(folders)
    return everything[::holdout] if holdout else []


def captions_for(files: list[Path]) -> dict[Path, list[str]]:
    """Human captions (captions.jsonl) or pseudo-captions (labels.jsonl) beside the images."""
    found: dict[Path, list[str]] = {}
    for listing in {f.parent for f in files}:
        for name, key in (("captions.jsonl", "captions"), ("labels.jsonl", "pseudo_caption")):
            path = listing / name
            if path.is_file():
                for line in path.read_text(encoding="utf-8").splitlines():
                    entry = json.loads(line)
                    value = entry[key]
                    found[listing / entry["file"]] = value if isinstance(value, list) else [value]
    return found


def downscaled(path: Path, rng: random.Random, short_side: tuple[int, int], crop: int) -> torch.Tensor:
    """The image, downscaled once so its short side is in ``short_side`` (cleaner pixels
    than the camera's, more content per crop), as a uint8 (3, H, W) tensor."""
    image = Image.open(path).convert("RGB")
    target = rng.randint(*short_side)
    scale = target / min(image.size)
    if scale < 1:
        image = image.resize((max(crop, round(image.width * scale)), max(crop, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


class TextCache:
    """MiniLM token states of every caption, computed once, kept as float16."""

    def __init__(self, captions: list[str], text_encoder: str, cache: Path) -> None:
        self.index = {c: i for i, c in enumerate(captions)}
        key = {"text_encoder": text_encoder, "captions": captions}
        if cache.is_file() and json.loads(cache.with_suffix(".json").read_text()) == key:
            self.states = torch.load(cache, weights_only=True)  # our own file, tensors only
            return
        from tcodec.models.text import text_encoder as load_text_encoder

        encoder = load_text_encoder(text_encoder)
        self.states = torch.cat([encoder.encode(captions[i:i + 64]).half() for i in range(0, len(captions), 64)])
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.states, cache)
        cache.with_suffix(".json").write_text(json.dumps(key))

    def __call__(self, captions: list[str]) -> torch.Tensor:
        return self.states[[self.index[c] for c in captions]].float()


# --- training ------------------------------------------------------------------------


def lambda_of(quality: torch.Tensor, recipe: Recipe, rates: int) -> torch.Tensor:
    return rate_lambda(quality, recipe.lambdas, rates)


def ssimulacra2_weight(lmbda: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    """The weight of (100 - SSIMULACRA 2)/100 in the loss of a crop trained at ``lmbda``."""
    return recipe.ssimulacra2 * (lmbda / recipe.lambdas[1]) ** recipe.ssimulacra2_lambda_exponent


def learning_rate(step: int, recipe: Recipe, started_at: int = 0) -> float:
    """The schedule (warm-up, constant, cosine decay to 10%), ramped up again for
    ``resume_warmup`` steps after a resume, since Adam's moments start afresh."""
    warmup = recipe.warmup if started_at == 0 else recipe.resume_warmup
    ramp = min(1.0, (step - started_at + 1) / max(1, warmup))
    start = recipe.decay_from * recipe.iterations
    progress = max(0.0, step - start) / max(1, recipe.iterations - start)
    return recipe.lr * ramp * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def batch_of(images, captions, recipe: Recipe, rng: random.Random):
    crops, texts = [], []
    for _ in range(recipe.batch):
        i = rng.randrange(len(images))
        image = images[i]
        top = rng.randint(0, image.shape[1] - recipe.crop)
        left = rng.randint(0, image.shape[2] - recipe.crop)
        crop = image[:, top:top + recipe.crop, left:left + recipe.crop]
        crops.append(crop.flip(-1) if rng.random() < 0.5 else crop)
        options = captions[i]
        texts.append("" if not options or rng.random() < recipe.caption_dropout else rng.choice(options))
    return torch.stack(crops).float().div(255), texts


def train(config_path: Path) -> None:
    config, text_encoder, recipe = load_config(config_path)
    if recipe.stage not in ("all", "parameter_networks"):
        raise InputError(f"unknown stage {recipe.stage!r}: all or parameter_networks")
    torch.set_num_threads(recipe.threads)
    device = torch.device(recipe.device)
    rng = random.Random(recipe.seed)
    torch.manual_seed(recipe.seed)
    files = find_images(recipe.data, recipe.holdout)
    known = captions_for(files)
    started = time.time()
    images = [downscaled(f, rng, recipe.short_side, recipe.crop) for f in files]
    captions = [known.get(f, []) for f in files]
    all_captions = sorted({""} | {c for options in captions for c in options})
    checkpoint = Path(recipe.checkpoint)
    text_cache = TextCache(all_captions, text_encoder, checkpoint.parent / "cache" / "text_states.pt")
    print(f"{len(images)} images, {len(all_captions)} captions ready in {time.time() - started:.0f} s", flush=True)

    model = TacoModel(config)
    step, fresh_grids = 0, False
    start = checkpoint if checkpoint.is_file() else Path(recipe.init) if recipe.init else None
    if start is not None:
        from safetensors.torch import load_file

        state = load_file(start)
        # a float model's checkpoint starts an integer one: its grids are calibrated below
        missing, unexpected = model.load_state_dict(state, strict=False)
        fresh_grids = bool(missing)
        if unexpected or any(not key.endswith(IntegerLayer.BUFFERS) for key in missing):
            model.load_state_dict(state)  # raises, naming the keys that do not fit
        step = json.loads(start.with_suffix(".json").read_text())["iteration"]
        print(f"resumed from {start} at iteration {step}", flush=True)
    started_at = step
    model.to(device).train()
    if recipe.stage == "parameter_networks":
        latents = analysed_latents(model, images, captions, text_cache, recipe, rng, device)
        _train_parameter_networks(model, latents, recipe, checkpoint, step, fresh_grids or start is None)
        return
    if recipe.freeze_text_adapter:
        for module in model.modules():
            if isinstance(module, (Injector, Extractor)):
                module.requires_grad_(False)
    for prefix in recipe.frozen:
        matched = [p for name, p in model.named_parameters() if name.startswith(prefix)]
        if not matched:
            raise InputError(f"frozen = {prefix!r} names no parameter of the model")
        for parameter in matched:
            parameter.requires_grad_(False)
    perceptual = perceptual_distance(device) if recipe.perceptual else None
    if recipe.ssimulacra2:  # only then: it imports scipy to build its filter
        from tcodec.bench.ssimulacra2 import scores as ssimulacra2_scores
    # z's quantiles follow its prior: frozen with it, so the exported tables stay the same
    aux_parameters = [p for n, p in model.named_parameters() if n.endswith("quantiles") and p.requires_grad]
    main_parameters = [p for n, p in model.named_parameters() if not n.endswith("quantiles") and p.requires_grad]
    optimizer = torch.optim.Adam(main_parameters, lr=recipe.lr)
    aux_optimizer = torch.optim.Adam(aux_parameters, lr=recipe.aux_lr) if aux_parameters else None
    rng = random.Random(recipe.seed + step)  # a resumed run draws new crops
    log = _TrainingLog(checkpoint.with_suffix(".log.csv"), recipe.log_every)
    while step < recipe.iterations:
        x, texts = batch_of(images, captions, recipe, rng)
        x = x.to(device, non_blocking=True)
        quality = (torch.rand(recipe.batch) * (config.rates - 1) + 1).to(device)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, recipe, started_at)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=recipe.bf16):
            out = model(x, text_cache(texts).to(device), quality)
        pixels = x.shape[2] * x.shape[3]
        bits = sum(-torch.log2(l).flatten(1).sum(1) for l in out["likelihoods"].values())
        mse = (out["x_hat"].float() - x).pow(2).flatten(1).mean(1)
        lmbda = lambda_of(quality, recipe, config.rates)
        loss = bits / pixels + lmbda * 255**2 * mse
        decoded = out["x_hat"].float().clamp(0, 1)
        logged = {}
        if perceptual:
            distance = perceptual(decoded, x)
            loss = loss + recipe.perceptual * distance
            logged["st_lpips_alex"] = distance.mean().item()
        if recipe.ssimulacra2:
            score = ssimulacra2_scores(x, decoded)
            loss = loss + ssimulacra2_weight(lmbda, recipe) * (100 - score) / 100
            logged["ssimulacra2"] = score.mean().item()
        loss = loss.mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main_parameters, 1.0)
        optimizer.step()
        aux_loss = model.aux_loss()
        if aux_parameters:
            aux_optimizer.zero_grad()
            aux_loss.backward()
            aux_optimizer.step()
        step += 1
        log.add(step, optimizer, loss=loss.item(), bpp=(bits / pixels).mean().item(),
                psnr_db=(10 * torch.log10(1 / mse)).mean().item(), aux_loss=aux_loss.item(), **logged)
        if step % recipe.save_every == 0 or step == recipe.iterations:
            _save(model, checkpoint, step)


def perceptual_distance(device: torch.device):
    """ST-LPIPS (alex) per image of a batch in [0, 1], differentiable in its inputs; the
    network itself stays fixed (its own instance: the bench's is shared and on the CPU)."""
    from tcodec.bench.metrics import new_st_lpips_network

    network = new_st_lpips_network().to(device)
    network.requires_grad_(False)

    def distance(decoded: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return network(decoded, reference, normalize=True).flatten(1).mean(1)

    return distance


@torch.no_grad()
def analysed_latents(model: TacoModel, images, captions, text_cache: TextCache, recipe: Recipe,
                     rng: random.Random, device: torch.device) -> torch.Tensor:
    """y (before the rate gains) of ``recipe.latent_crops`` random crops, from the frozen
    analysis transform, in batches of ``recipe.batch``."""
    started, latents = time.time(), []
    model.eval()
    while sum(len(y) for y in latents) < recipe.latent_crops:
        x, texts = batch_of(images, captions, recipe, rng)
        latents.append(model.g_a(x.to(device), text_cache(texts).to(device)))
    model.train()
    print(f"{recipe.latent_crops} latents ready in {time.time() - started:.0f} s", flush=True)
    return torch.cat(latents)[: recipe.latent_crops]


def _train_parameter_networks(model: TacoModel, latents: torch.Tensor, recipe: Recipe, checkpoint: Path,
                              step: int, calibrate: bool) -> None:
    """The "parameter_networks" stage: only the networks that compute the entropy
    parameters learn, for the rate of y alone (the transforms, the gains and z's prior stay
    as they are, so the distortion changes only through the means)."""
    rates = model.config.rates
    generator = torch.Generator().manual_seed(recipe.seed + step)

    def batch():
        picked = torch.randint(len(latents), (recipe.batch,), generator=generator)
        quality = torch.rand(recipe.batch, generator=generator) * (rates - 1) + 1
        return latents[picked], quality.to(latents.device)

    def gained(y, quality):
        gains = model.gains(quality)
        return y if gains is None else y * gains[0]

    if calibrate and model.config.integer_bits:
        def run():
            with torch.no_grad():
                for _ in range(8):
                    model.quantize_latent(gained(*batch()))
        model.calibrate_integer_networks(run)
        print("activation grids calibrated", flush=True)
        if step >= recipe.iterations:  # no steps asked for: the calibrated grids alone
            _save(model, checkpoint, step)
    model.requires_grad_(False)
    trained = [p for network in model.parameter_networks() for p in network.parameters()]
    for parameter in trained:
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(trained, lr=recipe.lr)
    log = _TrainingLog(checkpoint.with_suffix(".log.csv"), recipe.log_every)
    started_at = step
    while step < recipe.iterations:
        y, quality = batch()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, recipe, started_at)
        _, likelihoods = model.quantize_latent(gained(y, quality))
        pixels = (y.shape[-2] * 16) * (y.shape[-1] * 16)
        y_bpp = -torch.log2(likelihoods["y"]).flatten(1).sum(1).mean() / pixels
        optimizer.zero_grad()
        y_bpp.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        step += 1
        log.add(step, optimizer, loss=y_bpp.item(), bpp=y_bpp.item())  # y's estimated bits; no PSNR
        if step % recipe.save_every == 0 or step == recipe.iterations:
            _save(model, checkpoint, step)


class _TrainingLog:
    """Means over each ``every`` steps, appended to the run's ``.log.csv`` and printed; a
    column a run does not compute (a loss term it leaves out) is NaN."""

    COLUMNS = {"loss": ".4f", "bpp": ".4f", "psnr_db": ".3f", "aux_loss": ".2f", "it_per_s": ".3f", "lr": ".2e",
               "st_lpips_alex": ".4f", "ssimulacra2": ".3f"}
    MEASURED = [name for name in COLUMNS if name not in ("it_per_s", "lr")]

    def __init__(self, path: Path, every: int) -> None:
        self.path, self.every = path, every
        self._restart()

    def _restart(self) -> None:
        self.totals, self.clock = dict.fromkeys(self.MEASURED, 0.0), time.time()

    def add(self, step: int, optimizer, **values: float) -> None:
        for name in self.MEASURED:
            self.totals[name] += values.get(name, math.nan)
        if step % self.every:
            return
        row = {name: total / self.every for name, total in self.totals.items()}
        row.update(it_per_s=self.every / (time.time() - self.clock), lr=optimizer.param_groups[0]["lr"])
        line = ",".join([str(step), *(format(row[name], spec) for name, spec in self.COLUMNS.items())])
        if not self.path.exists():
            self.path.write_text(",".join(["iteration", *self.COLUMNS]) + "\n")
        with self.path.open("a") as file:
            file.write(line + "\n")
        print(line, flush=True)
        self._restart()


def _save(model: TacoModel, checkpoint: Path, step: int) -> None:
    """Weights only. Each file is written whole and renamed into place; a kill between the
    two leaves weights one save newer than the iteration says, which resuming tolerates."""
    from safetensors.torch import save

    from tcodec.fileio import write_atomic

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_atomic(checkpoint, save(state), overwrite=True)
    write_atomic(checkpoint.with_suffix(".json"), (json.dumps({"iteration": step}) + "\n").encode(), overwrite=True)


def export(config_path: Path, name: str, folder: Path | None = None, half: bool = True) -> Path:
    """The last checkpoint, CDF tables frozen, as the model ``name`` (default: packaged)."""
    from safetensors.torch import load_file

    from tcodec.models.taco_weights import save_model

    config, text_encoder, recipe = load_config(config_path)
    model = TacoModel(config)
    model.load_state_dict(load_file(recipe.checkpoint))
    iteration = json.loads(Path(recipe.checkpoint).with_suffix(".json").read_text())["iteration"]
    packaged = Path(__file__).resolve().parent.parent / "data" / "models" / name
    folder = folder or packaged
    # the λ range -O effort refines for, where the loss is rate + λ·MSE alone
    extra = {} if recipe.perceptual or recipe.ssimulacra2 else {"lambdas": list(recipe.lambdas)}
    model_hash = save_model(model.eval(), folder, text_encoder, fit_quantiles=True, half=half, **extra,
                            trained_iterations=iteration, recipe=str(config_path.name))
    print(f"exported {name} (iteration {iteration}) to {folder}, model hash {model_hash[:16]}")
    if folder == packaged:
        print(f"pin it in models.lock: python tools/lock_packaged_model.py {name}")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description="Train tcodec's own TACO weights (resumes by itself).")
    parser.add_argument("config", type=Path)
    parser.add_argument("--export", metavar="NAME", help="write the checkpoint as packaged model NAME and stop")
    args = parser.parse_args()
    try:
        if args.export:
            export(args.config, args.export)
        else:
            train(args.config)
    except TcodecError as error:
        sys.exit(f"tcodec.training: error: {error}")


if __name__ == "__main__":
    main()
