"""Run PerCo (SD)'s own code on one image and save every intermediate tensor, for cross-checks.

The reference side of the `perco` backend's cross-check: it imports the modules of
Nikolai10/PerCo at commit da3be39 (Apache-2.0; pipeline_sd_perco.py, unet_2d_perco.py,
hyper_encoder.py, compression_utils.py, helpers.py, config.py) unchanged, builds
StableDiffusionPipelinePerco from the components of a model folder, and follows
compression_utils.compress / decompress step by step on CPU in float32.

It runs in its own virtualenv (outside the repository, never tcodec's), made with exactly:

    python3 -m venv /work/perco-ref-venv
    /work/perco-ref-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 diffusers==0.27.2 \
        transformers==4.37.2 tokenizers==0.15.2 huggingface_hub==0.23.4 safetensors==0.4.3 \
        accelerate==0.32.1 vector-quantize-pytorch==1.15.3 compressai==1.2.6 "numpy<2"

(Python 3.11; numpy resolves to 1.26.4 - accelerate 0.32.1 needs numpy<2. These are PerCo's
requirements.txt versions except torch/torchvision: PerCo pinned 2.3.0/0.18.0, and its diffusers
was a local copy of 0.27.x. huggingface_hub must stay below 0.26 for diffusers 0.27.2's
`cached_download`. ftfy is not installed, as in PerCo's requirements, so CLIPTokenizer cleans
text with transformers' BasicTokenizer.)

Usage (all with that venv's python):

    # PerCo's src/ at da3be39: a folder, or exported from a git mirror with `git archive`
    PY=/work/perco-ref-venv/bin/python
    M=/work/.mirror/Nikolai10+PerCo/repo
    $PY tools/perco_reference.py --mirror $M --make-tiny /tmp/perco-tiny
    $PY tools/perco_reference.py --make-test-image /tmp/perco-test.png --size 128x192
    $PY tools/perco_reference.py --mirror $M --model /tmp/perco-tiny --image /tmp/perco-test.png \
        --caption "a red barn with a pond in the background" --seed 3868512668962463 \
        --steps 3 --guidance 3.0 --out /tmp/perco-ref.safetensors

The output (.safetensors, or .npz) holds every tensor (see TENSORS below); a JSON sidecar
beside it (same name, .json) holds versions, what was stubbed, the hashes of PerCo's source
files and of the model's files, and the settings. The image is used at its own size (sides
multiples of 8 for the pipeline, of 64 for cfg_ss 8): PerCo's read_png resizes to 512x512 and
that step is skipped. PerCo draws the VAE latent with latent_dist.sample() and no generator;
here the hyper-encoder is run on latent_dist.mode() (the posterior mean, what tcodec uses), and
the random sample is only recorded (latent_sample_unused, drawn after torch.manual_seed(seed)).

Every component's loaded weights are checked against its file (check_weights): the libraries
only warn, silenced here, about weights a file lacks or that go unused, and leave the missing
ones at their random initialisation (transformers 4.37 loading transformers 5's unprefixed
CLIPTextModel names, say); a run that does not load exactly stops. --also-tokenize TEXT
(repeatable) tokenizes more texts as the caption is (also_ids), for tokenizer cross-checks.

Reruns are byte-identical at the same --threads (default 1; 1 and 2 threads differ by ~1e-6 in
the diffusion tensors, and so by 1 in a few pixels). The tiny-model builder is deterministic
too (--tiny-seed, default 0).
"""

import argparse
import atexit
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path

PERCO_COMMIT = "da3be394451307b5ca5decf4b780029975f5b531"
# git blob ids of the files this script imports, at PERCO_COMMIT
PERCO_BLOBS = {
    "compression_utils.py": "4f270edefef5d144f60a0c928361895865de26e2",
    "config.py": "f2118713e9bdbd0243ca85c7e6c3fa3c6f16bf5f",
    "helpers.py": "b12c7615cfb9d41a61c39e4024f29620b4fd4903",
    "hyper_encoder.py": "5ad7ecfc31e57d4ef0148f8e4588d23df8d68178",
    "pipeline_sd_perco.py": "913fe8ced377b7d3f2003093a496d14cf42b9b0d",
    "unet_2d_perco.py": "88c9d8b5769f0cb2163d4139b2c41be25c91c6b1",
}

TENSORS = """\
image               uint8 (H, W, 3)          the input PNG as RGB (no resize)
latent_mean         f32 (1, 4, H/8, W/8)     vae.encode(2x-1).latent_dist.mode(), unscaled
latent_logvar       f32 (1, 4, H/8, W/8)     latent_dist.logvar (clamped to [-30, 20] by diffusers)
latent_sample_unused f32 (1, 4, H/8, W/8)    latent_dist.sample() after torch.manual_seed(seed) (PerCo's draw; not used)
latents             f32 (1, 4, H/8, W/8)     latent_mean * vae.config.scaling_factor: the hyper-encoder's input
z                   f32 (1, 320, h, w)       hyper_enc(latents).z (backbone output, pre-VQ)
z_hat               f32 (1, 320, h, w)       hyper_enc(latents).z_hat
indices             i64 (1, h, w)            hyper_enc(latents).indices
z_hat_restored      f32 (1, 320, h, w)       quantizer.get_output_from_indices(indices).permute(0, 3, 1, 2)
prompt_ids          i64 (1, 77)              tokenizer(caption, padding=max_length, max_length=77, truncation)
uncond_ids          i64 (1, 77)              the same for "" (PerCo's negative prompt)
also_ids            i64 (n, 77)              the same for each --also-tokenize text (only with that option)
prompt_embeds       f32 (1, 77, D)           encode_prompt's text embeddings (last_hidden_state)
negative_prompt_embeds f32 (1, 77, D)        encode_prompt's unconditional embeddings
timesteps           i64 (steps,)             scheduler.timesteps
init_noise          f32 (1, 4, H/8, W/8)     prepare_latents' output (randn with the CPU generator * init_noise_sigma)
unet_out            f32 (steps, 2, 4, H/8, W/8)  the UNet's output per step, batch [uncond, text]
step_latents        f32 (steps, 1, 4, H/8, W/8)  latents after each scheduler step
denoised_latent     f32 (1, 4, H/8, W/8)     the final latent before VAE decode (output_type="latent" call)
pixels_float        f32 (1, H, W, 3)         output_type="np": (decode/2+0.5).clamp(0, 1)
pixels              uint8 (H, W, 3)          output_type="pil" image as np.asarray (what .save() writes)
"""

# modules compression_utils imports but this run does not need (not in the venv); each name is a
# fake that raises when used
STUBS = {
    "absl": [],
    "absl.app": ["run"],
    "absl.flags": [],
    "absl.flags.argparse_flags": ["ArgumentParser"],
    "torchac": ["encode_float_cdf", "decode_float_cdf"],
    "torchmetrics": [],
    "torchmetrics.image": ["MultiScaleStructuralSimilarityIndexMeasure", "LearnedPerceptualImagePatchSimilarity"],
    "cleanfid": [],  # `from cleanfid import fid` gets the module below
    "cleanfid.fid": ["compute_fid", "compute_kid"],
}

SD21_SCHEDULER = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.8.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
}


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_from_mirror(mirror: str, commit: str) -> Path:
    """`git archive COMMIT src` from a (bare) mirror into a temporary folder; returns its src/."""
    sha = subprocess.run(["git", "--git-dir", mirror, "rev-parse", "--verify", commit + "^{commit}"],
                         check=True, capture_output=True, text=True).stdout.strip()
    data = subprocess.run(["git", "--git-dir", mirror, "archive", "--format=tar", sha, "src"],
                          check=True, capture_output=True).stdout
    dest = Path(tempfile.mkdtemp(prefix="perco-src-"))
    atexit.register(shutil.rmtree, dest, True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def install_stubs() -> list:
    """Put minimal fakes into sys.modules for the modules in STUBS that are not installed."""
    import importlib.util

    def fake(qualname):
        def raiser(*args, **kwargs):
            raise RuntimeError(f"{qualname} is a stub in tools/perco_reference.py")
        raiser.__name__ = qualname.rsplit(".", 1)[-1]
        return raiser

    stubbed, real = [], {}
    for name in STUBS:
        top = name.split(".")[0]
        if top not in real:
            real[top] = importlib.util.find_spec(top) is not None
        if real[top]:
            continue
        module = types.ModuleType(name)
        module.__path__ = []  # a package, so its submodules import
        for attr in STUBS[name]:
            setattr(module, attr, fake(f"{name}.{attr}"))
        sys.modules[name] = module
        if "." in name:
            parent, child = name.rsplit(".", 1)
            setattr(sys.modules[parent], child, module)
        stubbed.append(name)
    return stubbed


def import_perco(src: Path) -> dict:
    """Import PerCo's modules from src (unchanged); returns them and what was stubbed."""
    src = src.resolve()
    missing = [f for f in PERCO_BLOBS if not (src / f).is_file()]
    if missing:
        raise SystemExit(f"{src} lacks PerCo files: {missing}")
    blobs = {f: git_blob_id((src / f).read_bytes()) for f in PERCO_BLOBS}
    stubbed = install_stubs()
    sys.path.insert(0, str(src))  # config.ConfigPerco.global_path does not exist here
    import config
    import compression_utils
    import hyper_encoder
    import pipeline_sd_perco
    import unet_2d_perco
    return {
        "config": config, "compression_utils": compression_utils, "hyper_encoder": hyper_encoder,
        "pipeline": pipeline_sd_perco, "unet": unet_2d_perco, "stubbed": stubbed, "src": str(src),
        "blobs": blobs, "matches_commit": blobs == PERCO_BLOBS,
    }


# --- tiny random model -------------------------------------------------------------------------

def write_tiny_tokenizer(folder: Path) -> None:
    from transformers import CLIPTokenizer
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False),
                                              encoding="utf-8")
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        tok = CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"),
                            pad_token="!", model_max_length=77)
        tok.save_pretrained(str(folder))


def make_tiny(folder: Path, perco: dict, seed: int) -> None:
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    write_tiny_tokenizer(folder / "tokenizer")
    tok = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 16, 16, 16), layers_per_block=2, latent_channels=4,
        norm_num_groups=4, sample_size=64, scaling_factor=0.18215)
    vae.save_pretrained(str(folder / "vae"), safe_serialization=True)

    torch.manual_seed(seed + 1)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=128, projection_dim=32,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu",
        layer_norm_eps=1e-5, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id))
    text.save_pretrained(str(folder / "text_encoder"), safe_serialization=True)

    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD21_SCHEDULER, indent=2) + "\n",
                                                                encoding="utf-8")

    torch.manual_seed(seed + 2)
    unet = perco["unet"].UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32, attention_head_dim=8,
        norm_num_groups=8, use_linear_projection=True, upcast_attention=True)
    unet.save_pretrained(str(folder / "unet"), safe_serialization=True)

    torch.manual_seed(seed + 3)
    # M=320: unet_2d_perco hard-codes zl_channels = 320
    hyper = perco["hyper_encoder"].HyperEncoder(in_channels=4, N=32, M=320, codebook_dim=32, cfg_ss=8, cfg_cs=256)
    hyper.save_pretrained(str(folder / "hyper_enc"), safe_serialization=True)


def make_test_image(path: Path, size: str) -> None:
    import numpy as np
    from PIL import Image

    h, w = (int(v) for v in size.lower().split("x"))
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([x / max(w - 1, 1), y / max(h - 1, 1), 0.5 + 0.5 * np.sin((x + y) / 9.0)], axis=-1)
    noise = np.random.RandomState(0).normal(0.0, 0.08, size=(h, w, 3))
    Image.fromarray((np.clip(base + noise, 0, 1) * 255).round().astype(np.uint8), "RGB").save(path)


# --- the reference run ---------------------------------------------------------------------------

def build_pipeline(perco: dict, model: Path):
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer

    pipe = perco["pipeline"].StableDiffusionPipelinePerco(
        vae=AutoencoderKL.from_pretrained(str(model / "vae")),
        hyper_enc=perco["hyper_encoder"].HyperEncoder.from_pretrained(str(model / "hyper_enc")),
        text_encoder=CLIPTextModel.from_pretrained(str(model / "text_encoder")),
        tokenizer=CLIPTokenizer.from_pretrained(str(model / "tokenizer")),
        unet=perco["unet"].UNet2DConditionModel.from_pretrained(str(model / "unet")),
        scheduler=DDIMScheduler.from_pretrained(str(model / "scheduler")),
        safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False)
    pipe.to("cpu")
    pipe.set_progress_bar_config(disable=True)
    for name, file in (("vae", "diffusion_pytorch_model.safetensors"), ("hyper_enc", "diffusion_pytorch_model.safetensors"),
                       ("text_encoder", "model.safetensors"), ("unet", "diffusion_pytorch_model.safetensors")):
        check_weights(getattr(pipe, name), model / name / file)
    return pipe


def check_weights(module, path: Path) -> None:
    """Every tensor of the module is the file's tensor of that name, and every tensor of the
    file is the module's: the libraries only warn about missing or unused weights (the
    warnings are silenced here), and a missing one is left at its random initialisation."""
    import torch
    from safetensors.torch import load_file

    saved, state = load_file(str(path)), module.state_dict()
    missing, unused = sorted(set(state) - set(saved)), sorted(set(saved) - set(state))
    differ = sorted(k for k in set(state) & set(saved) if not torch.equal(state[k].cpu(), saved[k]))
    if missing or unused or differ:
        raise SystemExit(f"{path} does not load exactly into {type(module).__name__}: "
                         f"{len(missing)} tensors missing from the file {missing[:3]}, {len(unused)} unused "
                         f"{unused[:3]}, {len(differ)} loaded with other values {differ[:3]}")


def run_reference(perco: dict, args) -> tuple:
    import numpy as np
    import torch
    from PIL import Image
    from torchvision.transforms import ToTensor

    cu = perco["compression_utils"]
    model = Path(args.model)
    pipe = build_pipeline(perco, model)
    for name in ("vae", "hyper_enc", "text_encoder", "unet"):
        assert not any(m.training for m in getattr(pipe, name).modules()), f"{name} is in training mode"
    out = {}

    # compress 1. read image (read_png without its resize to 512x512)
    pil_in = Image.open(args.image).convert("RGB")
    img = ToTensor()(pil_in)  # [0, 1]
    H, W = img.shape[1], img.shape[2]
    if H % 8 or W % 8:
        raise SystemExit(f"image is {H}x{W}: the pipeline needs sides that are multiples of 8")
    out["image"] = torch.from_numpy(np.asarray(pil_in, dtype=np.uint8).copy())

    # compress 3 / decompress 1: the caption goes through compress_text / decompress_text (zlib)
    caption_bytes = cu.compress_text(args.caption)
    caption = cu.decompress_text(caption_bytes)
    assert caption == args.caption

    with torch.no_grad():
        # compress 4. VAE encoder
        dist = pipe.vae.encode((img * 2. - 1.).unsqueeze(0)).latent_dist
        out["latent_mean"] = dist.mode()
        out["latent_logvar"] = dist.logvar
        torch.manual_seed(args.seed)
        out["latent_sample_unused"] = dist.sample()  # what PerCo feeds the hyper-encoder (unseeded there)
        latents = dist.mode() * pipe.vae.config.scaling_factor
        out["latents"] = latents

        # compress 5. hyper-encoder
        pipe.hyper_enc.quantizer.eval()
        hyper_latent = pipe.hyper_enc(latents)
        out["z"], out["z_hat"], out["indices"] = hyper_latent.z, hyper_latent.z_hat, hyper_latent.indices

        # decompress 2. codes from the indices (torchac's round trip of the indices is lossless)
        pipe.hyper_enc.quantizer.eval()
        z_hat_restored = pipe.hyper_enc.quantizer.get_output_from_indices(hyper_latent.indices.long())
        z_hat_restored = z_hat_restored.permute(0, 3, 1, 2)
        out["z_hat_restored"] = z_hat_restored

    tok = pipe.tokenizer
    for key, text in (("prompt_ids", caption), ("uncond_ids", "")):
        out[key] = tok(text, padding="max_length", max_length=tok.model_max_length, truncation=True,
                       return_tensors="pt").input_ids
    if args.also_tokenize:  # more texts through the same call (tokenizer cross-checks)
        out["also_ids"] = tok(list(args.also_tokenize), padding="max_length", max_length=tok.model_max_length,
                              truncation=True, return_tensors="pt").input_ids

    # record what the pipeline computes inside, without changing it
    record = {"embeds": [], "noise": [], "unet": [], "steps": []}
    encode_prompt, prepare_latents = pipe.encode_prompt, pipe.prepare_latents

    def encode_prompt_rec(*a, **k):
        result = encode_prompt(*a, **k)
        record["embeds"].append(tuple(t.detach().clone() for t in result))
        return result

    def prepare_latents_rec(*a, **k):
        result = prepare_latents(*a, **k)
        record["noise"].append(result.detach().clone())
        return result

    def step_end(pipeline, i, t, kwargs):
        record["steps"].append(kwargs["latents"].detach().clone())
        return kwargs

    pipe.encode_prompt, pipe.prepare_latents = encode_prompt_rec, prepare_latents_rec
    hook = pipe.unet.register_forward_hook(lambda m, a, o: record["unet"].append(o[0].detach().clone()))

    def call(output_type, **extra):
        generator = torch.Generator(device="cpu")
        generator.manual_seed(args.seed)
        return pipe(caption, z_hat_restored, height=H, width=W, num_inference_steps=args.steps,
                    guidance_scale=args.guidance, generator=generator, output_type=output_type, **extra).images

    # decompress 2: the pipeline call as decompress makes it (PIL output), plus the per-step latents
    pil_out = call("pil", callback_on_step_end=step_end, callback_on_step_end_tensor_inputs=["latents"])[0]
    buf = io.BytesIO()
    pil_out.save(buf, format="PNG")
    out["pixels"] = torch.from_numpy(np.asarray(pil_out, dtype=np.uint8).copy())
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")), out["pixels"].numpy())
    out["prompt_embeds"], out["negative_prompt_embeds"] = record["embeds"][0]
    out["init_noise"] = record["noise"][0]
    out["unet_out"] = torch.stack(record["unet"])
    out["step_latents"] = torch.stack(record["steps"])
    out["timesteps"] = pipe.scheduler.timesteps.clone().long()
    n_unet = len(record["unet"])

    # the same call again, stopping before the VAE decode, and with float pixels
    out["denoised_latent"] = call("latent")
    out["pixels_float"] = torch.from_numpy(call("np"))
    hook.remove()
    pipe.encode_prompt, pipe.prepare_latents = encode_prompt, prepare_latents

    # every call must see the same embeddings, noise and UNet outputs (deterministic)
    checks = {
        "z_hat_equals_z_hat_restored": bool(torch.equal(out["z_hat"], out["z_hat_restored"])),
        "denoised_latent_equals_last_step": bool(torch.equal(out["denoised_latent"], out["step_latents"][-1])),
        "calls_agree": all(torch.equal(record["noise"][0], n) for n in record["noise"])
        and all(torch.equal(record["embeds"][0][0], e[0]) and torch.equal(record["embeds"][0][1], e[1])
                for e in record["embeds"])
        and all(torch.equal(record["unet"][i], record["unet"][i % n_unet]) for i in range(len(record["unet"]))),
        "pixels_equal_round_of_pixels_float": bool(np.array_equal(
            (out["pixels_float"][0].numpy() * 255).round().astype(np.uint8), out["pixels"].numpy())),
        "weights_load_exactly": True,  # build_pipeline's check_weights exits otherwise
    }
    out = {k: v.detach().contiguous().clone() for k, v in out.items()}
    info = {
        "caption": caption, "caption_zlib_bytes": len(caption_bytes), "height": H, "width": W,
        "vae_scaling_factor": pipe.vae.config.scaling_factor, "init_noise_sigma": float(pipe.scheduler.init_noise_sigma),
        "do_classifier_free_guidance": bool(pipe.do_classifier_free_guidance), "checks": checks,
        "also_tokenized": list(args.also_tokenize),
    }
    return out, info


def model_files(model: Path) -> dict:
    return {str(p.relative_to(model)): sha256_file(p) for p in sorted(model.rglob("*")) if p.is_file()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="tensors saved:\n" + TENSORS)
    parser.add_argument("--perco-src", help="PerCo's src/ at da3be39 (a checkout or export)")
    parser.add_argument("--mirror", help="a git mirror of Nikolai10/PerCo to export src/ from (git archive)")
    parser.add_argument("--commit", default=PERCO_COMMIT, help="commit to export from --mirror")
    parser.add_argument("--make-tiny", metavar="DIR", help="write a tiny random model folder and exit")
    parser.add_argument("--tiny-seed", type=int, default=0, help="torch seed for --make-tiny")
    parser.add_argument("--make-test-image", metavar="PNG", help="write a gradient-with-noise test image and exit")
    parser.add_argument("--size", default="128x192", help="HxW for --make-test-image")
    parser.add_argument("--model", help="model folder: vae/ text_encoder/ tokenizer/ unet/ scheduler/ hyper_enc/")
    parser.add_argument("--image", help="PNG at the working size (no resize)")
    parser.add_argument("--caption", help="the caption (PerCo takes it from BLIP-2)")
    parser.add_argument("--seed", type=int, default=3868512668962463, help="generator seed (PerCo's random_seed)")
    parser.add_argument("--steps", type=int, default=20, help="num_inference_steps")
    parser.add_argument("--guidance", type=float, default=3.0, help="guidance_scale")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (0: torch's default); results differ by ~1e-6 between thread counts")
    parser.add_argument("--out", help="FILE.safetensors or FILE.npz; FILE.json is written beside it")
    parser.add_argument("--also-tokenize", metavar="TEXT", action="append", default=[],
                        help="another text to tokenize as the caption is (repeatable; saved as also_ids)")
    args = parser.parse_args(argv)

    if args.make_test_image:
        make_test_image(Path(args.make_test_image), args.size)
        return 0

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import warnings
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.perco_src:
        src = Path(args.perco_src)
    elif args.mirror:
        src = export_from_mirror(args.mirror, args.commit)
    else:
        parser.error("give --perco-src or --mirror")
    perco = import_perco(src)
    if not perco["matches_commit"]:
        print(f"warning: {src} differs from PerCo at {PERCO_COMMIT[:7]}", file=sys.stderr)

    if args.make_tiny:
        make_tiny(Path(args.make_tiny), perco, args.tiny_seed)
        return 0

    for name in ("model", "image", "caption", "out"):
        if getattr(args, name) is None:
            parser.error(f"--{name} is required for a reference run")
    tensors, info = run_reference(perco, args)

    from importlib.metadata import version
    meta = {
        "reference": f"Nikolai10/PerCo@{PERCO_COMMIT}",
        "perco_src_matches_commit": perco["matches_commit"],
        "perco_src_blobs": perco["blobs"],
        "stubbed_modules": {name: STUBS[name] for name in perco["stubbed"]},
        "hyper_encoder_input": "latent_dist.mode() * scaling_factor (PerCo uses latent_dist.sample(), unseeded)",
        "image_resize": "none (PerCo's read_png resizes to 512x512; skipped)",
        "device": "cpu", "dtype": "float32", "torch_threads": torch.get_num_threads(),
        "seed": args.seed, "steps": args.steps, "guidance": args.guidance,
        "versions": {p: version(p) for p in ("diffusers", "transformers", "torch", "torchvision",
                                              "vector-quantize-pytorch", "compressai", "tokenizers",
                                              "huggingface_hub", "accelerate", "numpy", "safetensors", "pillow")},
        "python": sys.version.split()[0],
        "model_files_sha256": model_files(Path(args.model)),
        **info,
        "tensors": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)} for k, v in tensors.items()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        import numpy as np
        with out.open("wb") as fh:
            np.savez(fh, **{k: v.numpy() for k, v in sorted(tensors.items())})
    else:
        from safetensors.torch import save_file
        # one metadata key: safetensors writes its metadata map in no fixed order
        header = {k: meta[k] for k in ("reference", "caption", "seed", "steps", "guidance", "hyper_encoder_input",
                                       "torch_threads")}
        save_file(tensors, str(out), metadata={"perco_reference": json.dumps(header, sort_keys=True)})
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    bad = [k for k, v in info["checks"].items() if not v]
    for k, v in sorted(tensors.items()):
        print(f"{k:24s} {str(v.dtype).replace('torch.', ''):8s} {tuple(v.shape)}")
    print(f"wrote {out} and {out.with_suffix('.json')}; checks: {'all ok' if not bad else 'FAILED ' + ', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
