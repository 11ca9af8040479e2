"""Cross-check tcodec's `perco` backend against PerCo (SD)'s own code, tensor by tensor.

What it runs, for each hyper-encoder grid of --grids (default 8; "8,64" adds the grid
without downsampling, whose backbone takes the 1x1-convolution paths):

1. a tiny random PerCo model written by tcodec's own writer,
   ``tcodec.models.perco_weights.write_random(folder, "tiny", grid=G, codebook=256, seed=0)``
   (the real diffusers layout; M = 320, as PerCo's U-Net hard-codes), and a deterministic
   test image of --size (default 640x448, width x height: gradients, hard-edged blocks, a
   checkerboard, a disc, a thin line, Gaussian noise). Its sides must be multiples of 64
   and a fixed point of ``tcodec.backends.perco.working_size``, so that nothing resizes it;
2. the reference: ``tools/perco_reference.py`` in its own venv (--reference-python), which
   imports Nikolai10/PerCo @ da3be39's src/ unchanged (exported from --mirror), loads the
   model folder with diffusers 0.27.2 / transformers 4.37.2 (and checks that every weight
   loaded is the file's), and follows compress / decompress on the CPU in float32, 1 torch
   thread, saving every intermediate tensor; with the caption (--caption), PerCo's seed
   3868512668962463, --steps (default 3: cheap) and guidance 3.0. It also tokenizes the
   TOKENIZER_TEXTS below;
3. tcodec in this process (torch.set_num_threads(1)), through
   ``tcodec.weights.load_model(folder)`` and PercoModel's methods: ``latent``; the VAE
   posterior's mean and log-variance (the call ``latent`` makes); the hyper-encoder's
   backbone output z; ``indices``; ``features`` (z_hat from the indices); the tokenizer call
   of ``text_embedding``; ``text_embedding``; ``empty_embedding``; ``initial_noise``;
   ``denoise`` on tcodec's own indices, whose ``on_step`` callback gives each step's
   timestep, U-Net output and latents; ``pixels``. Then the real command line, as
   subprocesses with OMP_NUM_THREADS=1 (the CLI has no thread option; torch takes its
   intra-op thread count from that variable):
       tcodec encode IMG -m perco -q Q -O model=DIR -O steps=S -O guidance=G -O seed=N
                     --caption C --device cpu -f -o f.tcz
       tcodec decode f.tcz -O model=DIR --device cpu -f -o out.png
   comparing the indices in f.tcz (its payload unpacked) and out.png's pixels too;
4. "isolated" rows: tcodec's text encoder, U-Net, DDIM scheduler and VAE decoder fed the
   reference's own inputs (its token ids, embeddings, features, noise, U-Net outputs,
   step latents, final latent), to show where each difference of the end-to-end rows
   starts;
5. prints, per grid, a table: each quantity's shape, max |tcodec - reference|, the
   largest |reference|, how many values (cells, for indices) differ, the bar, the verdict,
   and the cause (a tag from the list below) where something differs; then the tokenizer
   texts' ids, the quantiser's smallest top-2 cosine-similarity gap, and the times.

The bar (exit status 1 if a row misses it, 2 if something could not run):
- exact: the image read, token ids (caption, "", the tokenizer texts), timesteps, indices
  (model level and in the .tcz file), and the CLI's out.png against the model-level pixels
  (same code, same thread count): every value identical;
- float tensors: max |difference| <= 1e-5 * max(1, max |reference|) (absolute for values
  of order 1, relative for larger ones);
- 8-bit pixels (model level, and the CLI's out.png, against the reference's PIL image):
  max |difference| <= 1, i.e. only roundings flipped by float noise; the count is printed.

Differences and their causes, as measured (tcodec: transformers 5.24.0, diffusers 0.42.1;
reference: transformers 4.37.2, diffusers 0.27.2; torch 2.14.1 on both sides):
- [none] identical bits: the image, latent mean / log-variance / scaled latent (the VAE
  encoders of both diffusers versions run the same float32 ops), z (tcodec's HyperEncoder
  is PerCo's layer for layer), the indices, z_hat (the same float32 project_out of the same
  codebook rows, bitwise equal to vector_quantize_pytorch's, both from the indices and in
  its forward pass), token ids, timesteps, the initial noise (diffusers' randn_tensor with
  a CPU generator is torch.randn with it, which tcodec calls).
- [attention] the caption's and the empty caption's embeddings, ~1e-6 of values ~3:
  transformers 4.37.2's CLIPAttention scales the queries before the q.k product and runs
  torch.bmm, adding a float-min causal mask; transformers 5's CLIP runs torch's
  scaled_dot_product_attention by default (its eager path scales the product instead, and
  differs by ~1e-6 too). The isolated row "text encoder with 4.37's attention" loads the
  same weights in transformers 5 with that order registered as an attention function:
  identical bits, so the attention's summation order is the whole difference.
- [propagated] U-Net outputs, step latents, the denoised latent, float pixels: within
  ~5e-6. The isolated rows show the U-Net, the DDIM step (with PerCo's guidance formula) and
  the VAE decoder give identical bits on the reference's inputs: this is the embeddings'
  ~1e-6 carried through cross-attention and the steps, nothing else.
- [rounding] 8-bit pixels: both sides round (x/2 + 0.5).clamp(0, 1) * 255 half to even
  (numpy in diffusers' PIL output, torch.round in tcodec); a float pixel that the ~5e-6
  moved across a half rounds the other way: a difference of 1 in a few dozen of the
  860160 values. The CLI's out.png equals the model-level pixels exactly.
- [float64 VQ] (not seen) tcodec's quantiser projects and compares in float64,
  vector_quantize_pytorch in float32: their argmax differs only where two codes' cosine
  similarities are within float32 rounding (~1e-7); the smallest top-2 gap is printed
  (with this model and image: ~2e-4 at grid 8, ~2e-6 at grid 64), so the indices agree.
- Not exercised (both sides make the same choice, so no difference shows): legacy
  'nearest' (floor-index) upsampling of the features to the latent's size (tcodec before
  the U-Net, PerCo inside it; an integer factor at the working sizes, so plain
  repetition); PerCo's unseeded VAE latent *sample* (the reference, like tcodec, feeds the
  posterior mean to the hyper-encoder, and records the sample only); PerCo's 512x512
  resize (skipped on both sides); the tokenizer's "!" (below).
- [unexplained] any difference in a row expected identical: a bug to look into.

The tokenizer: Stable Diffusion 2's tokenizer pads with "!", which transformers registers as
a special added token, so a "!" inside a caption is split off and becomes the pad id 0,
not BPE's "!</w>" (id 256 in write_random's character vocabulary). PerCo's transformers
4.37.2 does this, and the "tokenizer texts" row checks tcodec's transformers on the same
files, for texts with "!" (word-final, doubled, at the end) and without.

A weight-layout difference this found (fixed in tcodec.models.perco_weights): transformers 5
saves CLIPTextModel's tensors without the ``text_model.`` prefix, which transformers 4.37
silently ignores (the whole text encoder left at its random initialisation); write_random
now saves them under SD 2.1's prefixed names, which transformers 5 loads too, and
perco_reference.py refuses any component whose loaded weights are not the file's.

Setup of the reference venv (outside the repository; Python 3.11), exactly as
tools/perco_reference.py's docstring gives it:

    python3 -m venv /work/perco-ref-venv
    /work/perco-ref-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 diffusers==0.27.2 \\
        transformers==4.37.2 tokenizers==0.15.2 huggingface_hub==0.23.4 safetensors==0.4.3 \\
        accelerate==0.32.1 vector-quantize-pytorch==1.15.3 compressai==1.2.6 "numpy<2"

and PerCo's source as a git mirror of Nikolai10/PerCo holding commit da3be39 (--mirror).

Usage (with tcodec's venv; about 45 s a grid on 2 CPU cores):

    .venv/bin/python tools/perco_crosscheck.py [--reference-python /work/perco-ref-venv/bin/python]
        [--mirror /work/.mirror/Nikolai10+PerCo/repo] [--keep DIR] [--steps 3] [--size 640x448]
        [--grids 8,64]

--keep DIR keeps the model folders, the image, the reference's tensors (.safetensors and
its .json), tcodec's tensors, the .tcz files and the decoded PNGs there.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REFERENCE_PYTHON = "/work/perco-ref-venv/bin/python"
DEFAULT_MIRROR = "/work/.mirror/Nikolai10+PerCo/repo"
CAPTION = "a red barn with a pond in the background"
# tokenized on both sides only: with "!" (word-final, doubled, last) and without
TOKENIZER_TEXTS = ("a red barn, at dusk!", "Wow!! A red barn!", "a cat on a mat", "")
CODEBOOK = 256
TOLERANCE = 1e-5
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def make_image(path: Path, width: int, height: int) -> None:
    """A deterministic RGB test image: smooth gradients, hard-edged blocks and a
    checkerboard, a disc, a thin line, and Gaussian noise (numpy RandomState(0))."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / (width - 1), y / (height - 1)
    image = np.stack([u, v, 0.5 + 0.5 * np.sin((x + 2 * y) / 11.0)], axis=-1)
    image[((x // 16 + y // 16) % 2 == 1) & (u > 0.55) & (v < 0.45)] = [0.95, 0.9, 0.1]
    image[(u < 0.3) & (v > 0.6)] = [0.1, 0.2, 0.85]
    image[(u - 0.35) ** 2 * (width / height) ** 2 + (v - 0.3) ** 2 < 0.02] = [0.9, 0.15, 0.1]
    image[np.abs(u - v - 0.1) < 0.01] = 0.0
    image += np.random.RandomState(0).normal(0.0, 0.05, size=image.shape)
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8), "RGB").save(path)


def parse_size(text: str) -> tuple[int, int]:
    from tcodec.backends.perco import working_size

    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--size {text}: give WIDTHxHEIGHT, e.g. 640x448") from None
    if width % 64 or height % 64 or working_size(width, height) != (width, height):
        raise SystemExit(f"--size {text}: the sides must be multiples of 64 and a fixed point of working_size "
                         f"(which gives {working_size(width, height)})")
    return width, height


def start_reference(args, model: Path, image: Path, out: Path) -> subprocess.Popen:
    command = [args.reference_python, str(ROOT / "tools" / "perco_reference.py"), "--mirror", args.mirror,
               "--model", str(model), "--image", str(image), "--caption", args.caption, "--seed", str(args.seed),
               "--steps", str(args.steps), "--guidance", str(args.guidance), "--threads", "1", "--out", str(out)]
    for text in TOKENIZER_TEXTS:
        command += ["--also-tokenize", text]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **THREAD_ENV})


def tokenize(tokenizer, texts):
    """The tokenizer call of PercoModel.text_embedding (and of PerCo's encode_prompt)."""
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def run_tcodec(args, model: Path, image: Path) -> dict:
    """tcodec's side at the model level: every quantity the reference saves."""
    import numpy as np
    import torch
    from diffusers import DDIMScheduler
    from PIL import Image

    from tcodec.backends.perco import LATENT_DOWNSAMPLING, Sampling
    from tcodec.models import image_to_tensor, tensor_to_image
    from tcodec.weights import load_model

    perco = load_model(str(model)).model
    out = {}
    with torch.inference_mode():
        pil = Image.open(image).convert("RGB")
        out["image"] = torch.from_numpy(np.asarray(pil, dtype=np.uint8).copy())
        pixels_in = image_to_tensor(pil)
        posterior = perco.component("vae").encode(pixels_in * 2 - 1).latent_dist  # PercoModel.latent's call
        out["latent_mean"], out["latent_logvar"] = posterior.mode(), posterior.logvar
        out["latents"] = perco.latent(pixels_in)
        out["z"] = perco.component("hyper_enc").backbone(out["latents"])
        indices = perco.indices(pixels_in)
        out["indices"] = indices[None]
        out["z_hat_restored"] = perco.features(indices)
        tokenizer = perco.component("tokenizer")
        out["prompt_ids"], out["uncond_ids"] = tokenize(tokenizer, args.caption), tokenize(tokenizer, "")
        out["also_ids"] = tokenize(tokenizer, list(TOKENIZER_TEXTS))
        out["prompt_embeds"] = perco.text_embedding(args.caption)
        out["negative_prompt_embeds"] = perco.empty_embedding()
        latent_size = (pixels_in.shape[-2] // LATENT_DOWNSAMPLING, pixels_in.shape[-1] // LATENT_DOWNSAMPLING)
        sigma = DDIMScheduler.from_config(perco.component("scheduler_config")).init_noise_sigma
        out["init_noise"] = perco.initial_noise(latent_size, args.seed) * sigma
        steps = {"t": [], "unet": [], "latents": []}

        def on_step(t, unet_output, latents):
            steps["t"].append(int(t))
            steps["unet"].append(unet_output.float().clone())
            steps["latents"].append(latents.float().clone())

        denoised = perco.denoise(indices, args.caption, latent_size, Sampling(args.steps, args.guidance, args.seed),
                                 on_step=on_step)
        out["timesteps"] = torch.tensor(steps["t"], dtype=torch.int64)
        out["unet_out"], out["step_latents"] = torch.stack(steps["unet"]), torch.stack(steps["latents"])
        out["denoised_latent"] = denoised
        decoded = perco.pixels(denoised)
        out["pixels_float"] = decoded.permute(0, 2, 3, 1)
        out["pixels"] = torch.from_numpy(np.asarray(tensor_to_image(decoded.clone()), dtype=np.uint8).copy())
    return {k: v.detach().contiguous().clone() for k, v in out.items()}


def legacy_clip_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """transformers 4.37.2's CLIPAttention order, as a transformers 5 attention function:
    the queries scaled before the product, torch.bmm over batch x heads, a float-min
    causal mask added, softmax, bmm."""
    import torch

    batch, heads, n, dim = query.shape
    q = (query * scaling).reshape(batch * heads, n, dim)
    k, v = key.reshape(batch * heads, -1, dim), value.reshape(batch * heads, -1, dim)
    weights = torch.bmm(q, k.transpose(1, 2)).view(batch, heads, n, -1)
    if attention_mask is None and kwargs.get("is_causal"):
        attention_mask = torch.full((n, n), torch.finfo(weights.dtype).min).triu(1)[None, None]
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = torch.nn.functional.softmax(weights.view(batch * heads, n, -1), dim=-1)
    return torch.bmm(weights, v).view(batch, heads, n, dim).transpose(1, 2).contiguous(), None


def run_isolated(args, model: Path, reference: dict) -> dict:
    """tcodec's components on the reference's own inputs (see the docstring, step 4)."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDIMScheduler
    from transformers import AttentionInterface, CLIPTextModel

    from tcodec.weights import load_model

    perco = load_model(str(model)).model
    out = {}
    with torch.inference_mode():
        AttentionInterface.register("perco_crosscheck_legacy", legacy_clip_attention)
        with contextlib.redirect_stderr(io.StringIO()):  # its "Loading weights" bar
            legacy = CLIPTextModel.from_pretrained(model / "text_encoder", attn_implementation="perco_crosscheck_legacy",
                                                   local_files_only=True).eval()
        ids = torch.cat([reference["uncond_ids"], reference["prompt_ids"]])
        out["iso_text"] = legacy(ids)[0]
        unet = perco.component("unet")
        scheduler = DDIMScheduler.from_config(perco.component("scheduler_config"))
        scheduler.set_timesteps(args.steps)
        text = torch.cat([reference["negative_prompt_embeds"], reference["prompt_embeds"]])
        local = F.interpolate(reference["z_hat_restored"], size=reference["init_noise"].shape[-2:], mode="nearest")
        local = torch.cat([local] * 2)
        unet_out, stepped = [], []
        latents = reference["init_noise"]
        for i, t in enumerate(scheduler.timesteps):
            model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
            unet_out.append(unet(torch.cat([model_input, local], dim=1), t, encoder_hidden_states=text).sample)
            unconditional, conditional = reference["unet_out"][i].chunk(2)
            prediction = unconditional + args.guidance * (conditional - unconditional)
            stepped.append(scheduler.step(prediction, t, latents, eta=0.0).prev_sample)
            latents = reference["step_latents"][i]
        out["iso_unet"], out["iso_step"] = torch.stack(unet_out), torch.stack(stepped)
        out["iso_decode"] = perco.pixels(reference["denoised_latent"]).permute(0, 2, 3, 1)
        # the quantiser's margin: the smallest gap between a cell's two most similar codes
        quantizer = perco.component("hyper_enc").quantizer
        x = reference["z"].double().permute(0, 2, 3, 1)
        x = F.normalize(F.linear(x, quantizer.project_in.weight.double(), quantizer.project_in.bias.double()), dim=-1)
        top = (x @ quantizer._codebook.embed[0].double().T).topk(2, dim=-1).values
        out["vq_margin"] = float((top[..., 0] - top[..., 1]).min())
    return out


def run_cli(args, model: Path, image: Path, quality: int, work: Path) -> dict:
    """tcodec's command line, encode then decode: the indices in the file, the decoded pixels."""
    import numpy as np
    import torch
    from PIL import Image

    from tcodec.backends.perco import RATE_SETTINGS, grid_shape, unpack_payload
    from tcodec.format.container import unpack

    work.mkdir(parents=True, exist_ok=True)
    tcodec = Path(sys.executable).parent / "tcodec"
    tcz, png = work / "tcodec.tcz", work / "tcodec-decoded.png"
    commands = [
        [str(tcodec), "encode", str(image), "-m", "perco", "-q", str(quality), "-O", f"model={model}",
         "-O", f"steps={args.steps}", "-O", f"guidance={args.guidance:g}", "-O", f"seed={args.seed}",
         "--caption", args.caption, "--device", "cpu", "-f", "-o", str(tcz)],
        [str(tcodec), "decode", str(tcz), "-O", f"model={model}", "--device", "cpu", "-f", "-o", str(png)],
    ]
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **THREAD_ENV}, check=False)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    container = unpack(tcz.read_bytes())
    setting = RATE_SETTINGS[quality - 1]
    rows, columns = grid_shape(container.width, container.height, setting)
    sampling, indices = unpack_payload(container.streams[0], setting, rows * columns)
    if (sampling.steps, sampling.guidance, sampling.seed) != (args.steps, args.guidance, args.seed):
        raise RuntimeError(f"{tcz} holds {sampling}, not the settings asked for")
    return {"cli_indices": torch.tensor(indices, dtype=torch.int64).view(1, rows, columns),
            "cli_pixels": torch.from_numpy(np.asarray(Image.open(png).convert("RGB"), dtype=np.uint8).copy()),
            "cli_bytes": tcz.stat().st_size}


# (label, tcodec key, reference key ("@key": tcodec's own, "+a,b": the reference's a and b
# concatenated), bar kind, cause tag when it differs: "" means expected identical)
ROWS = [
    ("image (PNG read)", "image", "image", "exact", ""),
    ("latent mean (VAE posterior)", "latent_mean", "latent_mean", "float", ""),
    ("latent log-variance", "latent_logvar", "latent_logvar", "float", ""),
    ("latent x scaling factor", "latents", "latents", "float", ""),
    ("z (hyper-encoder backbone)", "z", "z", "float", ""),
    ("indices", "indices", "indices", "exact", "float64 VQ"),
    ("z_hat(indices) vs z_hat_restored", "z_hat_restored", "z_hat_restored", "float", ""),
    ("z_hat(indices) vs VQ forward z_hat", "z_hat_restored", "z_hat", "float", ""),
    ("token ids: caption", "prompt_ids", "prompt_ids", "exact", ""),
    ("token ids: ''", "uncond_ids", "uncond_ids", "exact", ""),
    ("token ids: tokenizer texts", "also_ids", "also_ids", "exact", ""),
    ("caption embedding", "prompt_embeds", "prompt_embeds", "float", "attention"),
    ("empty-caption embedding", "negative_prompt_embeds", "negative_prompt_embeds", "float", "attention"),
    ("timesteps", "timesteps", "timesteps", "exact", ""),
    ("initial noise", "init_noise", "init_noise", "float", ""),
    ("U-Net outputs [uncond, text]", "unet_out", "unet_out", "float", "propagated"),
    ("latents after each step", "step_latents", "step_latents", "float", "propagated"),
    ("denoised latent", "denoised_latent", "denoised_latent", "float", "propagated"),
    ("pixels, float (1,H,W,3)", "pixels_float", "pixels_float", "float", "propagated"),
    ("pixels, 8-bit", "pixels", "pixels", "u8", "rounding"),
    ("CLI: indices in the .tcz", "cli_indices", "indices", "exact", "float64 VQ"),
    ("CLI: out.png vs reference", "cli_pixels", "pixels", "u8", "rounding"),
    ("CLI: out.png vs model level", "cli_pixels", "@pixels", "exact", ""),
    ("isolated: text enc., 4.37's attention", "iso_text", "+negative_prompt_embeds,prompt_embeds", "float", ""),
    ("isolated: U-Net on ref. inputs", "iso_unet", "unet_out", "float", ""),
    ("isolated: DDIM step on ref. inputs", "iso_step", "step_latents", "float", ""),
    ("isolated: VAE decode of ref. latent", "iso_decode", "pixels_float", "float", ""),
]


def compare(ours: dict, reference: dict) -> list[dict]:
    import torch

    results = []
    for label, key, ref_key, kind, cause in ROWS:
        if ref_key.startswith("@"):
            ref = ours[ref_key[1:]]
        elif ref_key.startswith("+"):
            ref = torch.cat([reference[k] for k in ref_key[1:].split(",")])
        else:
            ref = reference[ref_key]
        mine = ours[key]
        row = {"label": label, "shape": tuple(ref.shape), "kind": kind, "cause": cause or "unexplained",
               "total": ref.numel(), "note": ""}
        if mine.shape != ref.shape:
            row.update(ok=False, max_diff=float("nan"), max_ref=float("nan"), differ=ref.numel(),
                       note=f"shape {tuple(mine.shape)} here")
            results.append(row)
            continue
        diff = (mine.double() - ref.double()).abs()
        row.update(max_diff=float(diff.max()), max_ref=float(ref.double().abs().max()), differ=int((mine != ref).sum()))
        if kind == "exact":
            row["ok"] = row["differ"] == 0
        elif kind == "u8":
            row["ok"] = row["max_diff"] <= 1
        else:
            row["ok"] = bool(torch.isfinite(diff).all()) and row["max_diff"] <= TOLERANCE * max(1.0, row["max_ref"])
        results.append(row)
    return results


def print_table(grid: int, quality: int, results: list[dict]) -> None:
    print(f"\n== grid {grid}, {CODEBOOK} codes (quality {quality}) ==")
    header = f"{'quantity':39s} {'shape':13s} {'max|diff|':>9s} {'max|ref|':>8s} {'differ':>15s}  {'bar':5s} verdict  cause"
    print(header)
    print("-" * len(header))
    for row in results:
        bar = {"exact": "exact", "u8": "<=1", "float": "tol"}[row["kind"]]
        print(f"{row['label']:39s} {'x'.join(map(str, row['shape'])):13s} {row['max_diff']:9.3g} {row['max_ref']:8.3g} "
              f"{str(row['differ']) + '/' + str(row['total']):>15s}  {bar:5s} {'ok' if row['ok'] else 'FAIL':7s}  "
              f"{row['cause'] if row['differ'] else '-'}{('  ' + row['note']) if row['note'] else ''}")


def print_tokens(reference: dict, ours: dict, vocab: dict) -> None:
    eos = int(reference["uncond_ids"][0, 1])  # "" is [bos, eos, pad, ...]
    for text, mine, theirs in zip(TOKENIZER_TEXTS, ours["also_ids"], reference["also_ids"]):
        end = int((theirs == eos).nonzero()[0]) + 1 if bool((theirs == eos).any()) else len(theirs)
        same = bool((mine == theirs).all())
        print(f"  tokens {text!r}: {'same' if same else 'DIFFERENT'}; reference {theirs[:end].tolist()}"
              + ("" if same else f", tcodec {mine[:end].tolist()}"))
    print(f"  ('!' is id {vocab.get('!')}, the pad id; '!</w>' is id {vocab.get('!</w>')}: a '!' in a caption becomes "
          "the pad id, on both sides where the rows say 'same')")


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--reference-python", default=DEFAULT_REFERENCE_PYTHON,
                        help="the reference venv's python (diffusers 0.27.2, transformers 4.37.2, ...)")
    parser.add_argument("--mirror", default=DEFAULT_MIRROR, help="git mirror of Nikolai10/PerCo holding da3be39")
    parser.add_argument("--keep", metavar="DIR", help="keep models, image, tensors, .tcz and PNGs in DIR")
    parser.add_argument("--steps", type=int, default=3, help="DDIM steps (default 3: cheap)")
    parser.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale (default 3)")
    parser.add_argument("--seed", type=int, default=3868512668962463, help="sampling seed (default PerCo's)")
    parser.add_argument("--size", default="640x448", help="WIDTHxHEIGHT of the test image (default 640x448)")
    parser.add_argument("--grids", default="8", help="hyper-encoder grids, comma-separated (8, 16, 32, 64; default 8)")
    parser.add_argument("--caption", default=CAPTION, help=f"the caption (default {CAPTION!r})")
    args = parser.parse_args(argv)

    started = time.monotonic()
    width, height = parse_size(args.size)
    from tcodec.backends.perco import RATE_SETTINGS

    qualities = {}
    for grid in (int(g) for g in args.grids.split(",")):
        matching = [q for q, s in enumerate(RATE_SETTINGS, 1) if (s.grid, s.codebook) == (grid, CODEBOOK)]
        if not matching:
            raise SystemExit(f"--grids: no rate setting has grid {grid} and {CODEBOOK} codes")
        qualities[grid] = matching[0]
    if not Path(args.reference_python).is_file():
        raise SystemExit(f"{args.reference_python}: no such python; set up the reference venv (see --help)")

    import torch
    from safetensors.torch import load_file, save_file

    from tcodec.models.perco_weights import write_random
    from tcodec.weights import load_model

    torch.set_num_threads(1)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="perco-crosscheck-"))
    work.mkdir(parents=True, exist_ok=True)
    image = work / f"test-{width}x{height}.png"
    make_image(image, width, height)
    print(f"image {width}x{height} (no resize); caption {args.caption!r}; seed {args.seed}; {args.steps} steps; "
          f"guidance {args.guidance:g}; 1 torch thread on each side")
    print(f"tcodec: transformers {_version('transformers')}, diffusers {_version('diffusers')}, torch "
          f"{torch.__version__}")

    failed = broken = False
    try:
        for grid, quality in qualities.items():
            folder = work / f"tiny-g{grid}"
            with contextlib.redirect_stderr(io.StringIO()):  # transformers' "Writing model shards" bar
                write_random(folder, "tiny", grid=grid, codebook=CODEBOOK, seed=0)
            ref_out = work / f"reference-g{grid}.safetensors"
            t0 = time.monotonic()
            process = start_reference(args, folder, image, ref_out)  # runs while tcodec's side does
            try:
                ours = run_tcodec(args, folder, image)
                t1 = time.monotonic()
                cli = run_cli(args, folder, image, quality, work / f"cli-g{grid}")
                t2 = time.monotonic()
            finally:
                log, _ = process.communicate()
            t3 = time.monotonic()
            if process.returncode:
                print(f"\ngrid {grid}: the reference run failed ({process.returncode}):\n{log}")
                broken = True
                continue
            reference = load_file(str(ref_out))
            sidecar = json.loads(ref_out.with_suffix(".json").read_text())
            isolated = run_isolated(args, folder, reference)
            cli_bytes, margin = cli.pop("cli_bytes"), isolated.pop("vq_margin")
            ours.update(cli)
            ours.update(isolated)
            if args.keep:
                save_file({k: v.contiguous() for k, v in ours.items()}, str(work / f"tcodec-g{grid}.safetensors"))
            results = compare(ours, reference)
            print_table(grid, quality, results)
            versions = sidecar["versions"]
            print(f"  reference: transformers {versions['transformers']}, diffusers {versions['diffusers']}, "
                  f"vector-quantize-pytorch {versions['vector-quantize-pytorch']}; PerCo src is da3be39's: "
                  f"{sidecar['perco_src_matches_commit']}; its self-checks: "
                  + ", ".join(f"{k}={v}" for k, v in sidecar["checks"].items()))
            print_tokens(reference, ours, load_model(str(folder)).model.component("tokenizer").get_vocab())
            print(f"  quantiser: smallest gap between a cell's two most similar codes {margin:.3g} "
                  "(float32 rounding of a cosine: ~6e-8)")
            print(f"  times: reference {t3 - t0:.1f} s (alongside tcodec), tcodec model level {t1 - t0:.1f} s, "
                  f"CLI encode + decode {t2 - t1:.1f} s ({cli_bytes}-byte .tcz)")
            failed |= not all(row["ok"] for row in results)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\ncauses: see the docstring (--help); {time.monotonic() - started:.0f} s in all"
          + (f"; files kept in {work}" if args.keep else ""))
    if broken:
        print("RESULT: could not run")
        return 2
    print("RESULT: " + ("FAIL (a row misses its bar)" if failed else "pass (every row meets its bar)"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
