"""PerCo's model folder: diffusers components, loaded on first use; and random ones written
in the same layout (tests, benchmarks, the cross-check).

A PerCo model folder holds ``config.json`` (``{"architecture": "perco"}``, and ``"base":
NAME`` when some components come from another installed model) and the components as
diffusers and transformers lay them out::

    unet/config.json, unet/diffusion_pytorch_model.safetensors          the model's own:
    hyper_enc/config.json, hyper_enc/diffusion_pytorch_model.safetensors  PerCo (SD)'s release
    vae/config.json, vae/diffusion_pytorch_model.safetensors            Stable Diffusion 2.1's
    text_encoder/config.json, text_encoder/model.safetensors            (the base, when not
    tokenizer/{vocab.json, merges.txt, tokenizer_config.json, ...}       in the folder itself)
    scheduler/scheduler_config.json

Weights are read from safetensors only, and nothing is downloaded (``local_files_only``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tcodec.errors import ModelError, ModelNotFoundError, one_line
from tcodec.models.perco import HyperEncoder, PercoModel
from tcodec.weights import CONFIG_FILE, status

ARCHITECTURE = "perco"
COMPONENTS = ("vae", "text_encoder", "tokenizer", "scheduler", "unet", "hyper_enc")
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
HYPER_ENCODER_KEYS = ("in_channels", "N", "M", "codebook_dim", "cfg_ss", "cfg_cs")


def component_folders(folder: Path, config: dict) -> dict[str, Path]:
    """Where each component is: in the model's folder, else in its base model's.

    Raises:
        ModelNotFoundError: a component is in neither (the base not installed, say).
    """
    base = config.get("base")
    base_folder = None
    if base is not None:
        state = status(str(base))
        base_folder = state["folder"] if state["installed"] else None
    found, missing = {}, []
    for name in COMPONENTS:
        for place in (folder, base_folder):
            if place is not None and (place / name).is_dir():
                found[name] = place / name
                break
        else:
            missing.append(name)
    if missing:
        where = f"{folder}" + (f" or in its base model {base} ({status(str(base))['folder']})" if base else "")
        get = f"; get the base with: tcodec models fetch {base}" if base and base_folder is None else ""
        raise ModelNotFoundError(f"PerCo model in {folder} lacks {', '.join(missing)} (looked in {where}){get}")
    return found


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"{path} is not readable JSON ({one_line(error)})") from None
    if not isinstance(value, dict):
        raise ModelError(f"{path} is not a JSON object")
    return value


def hyper_encoder_config(folder: Path) -> dict:
    config = _json(folder / CONFIG_FILE)
    values = {key: config.get(key, default) for key, default in
              zip(HYPER_ENCODER_KEYS, (4, 192, 320, 32, 64, 256))}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values.values()) \
            or values["cfg_ss"] not in (8, 16, 32, 64):
        raise ModelError(f"{folder / CONFIG_FILE}: not a PerCo hyper-encoder config ({values})")
    return values


def _state(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelError(f"{path} is missing (PerCo's weights are read from safetensors only)")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelError(f"{path} is not a safetensors file ({one_line(error)})") from None


def _load_hyper_encoder(folder: Path) -> HyperEncoder:
    encoder = HyperEncoder(**hyper_encoder_config(folder))
    _load_strictly(encoder, _state(folder / DIFFUSERS_WEIGHTS), folder)
    return encoder


def _load_strictly(module: torch.nn.Module, state: dict, folder: Path, assign: bool = False) -> None:
    try:
        module.load_state_dict(state, strict=True, assign=assign)
    except (RuntimeError, ValueError) as error:
        raise ModelError(f"the weights in {folder} do not fit its config.json ({one_line(error)[:300]})") from None


def _load_unet(folder: Path, feature_channels: int):
    """diffusers' UNet2DConditionModel with PerCo's extended first convolution as its
    ``conv_in`` (the saved ``conv_in``, unused by PerCo, is checked and dropped)."""
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    config = _json(folder / CONFIG_FILE)
    state = _state(folder / DIFFUSERS_WEIGHTS)
    try:
        with torch.device("meta"):  # the weights are assigned from the file: no random init, no second copy
            unet = UNet2DConditionModel.from_config(config)
            original = unet.conv_in
            unet.conv_in_extended = torch.nn.Conv2d(original.in_channels + feature_channels, original.out_channels,
                                                    original.kernel_size, padding=original.padding)
    except (TypeError, ValueError, KeyError) as error:
        raise ModelError(f"{folder / CONFIG_FILE} is not a UNet2DConditionModel config ({one_line(error)})") from None
    _load_strictly(unet, state, folder, assign=True)
    unet.conv_in = unet.conv_in_extended
    del unet.conv_in_extended
    return unet


def _component_loader(folders: dict[str, Path], feature_channels: int):
    def load(name: str):
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        # their notes (accelerate is not installed, weights not used, progress bars) are not the user's
        diffusers_logging.set_verbosity_error()
        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()

        folder = folders["scheduler" if name == "scheduler_config" else name]
        try:
            if name == "hyper_enc":
                return _load_hyper_encoder(folder)
            if name == "unet":
                return _load_unet(folder, feature_channels)
            if name == "scheduler_config":
                return _json(folder / "scheduler_config.json")
            if name == "vae":
                from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

                return AutoencoderKL.from_pretrained(folder, use_safetensors=True, local_files_only=True)
            if name == "text_encoder":
                from transformers.models.clip.modeling_clip import CLIPTextModel

                return CLIPTextModel.from_pretrained(folder, use_safetensors=True, local_files_only=True)
            if name == "tokenizer":
                from transformers.models.clip.tokenization_clip import CLIPTokenizer

                return CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        except ModelError:
            raise
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, EnvironmentError) as error:
            raise ModelError(f"PerCo component {folder} cannot be loaded ({one_line(error)[:300]})") from None
        raise KeyError(name)
    return load


def load(folder: Path, config: dict) -> PercoModel:
    """A PercoModel over the folder's components (each loaded on first use; the
    hyper-encoder's config read now, since it gives the model's rate setting)."""
    folders = component_folders(folder, config)
    hyper_config = hyper_encoder_config(folders["hyper_enc"])
    return PercoModel(_component_loader(folders, hyper_config["M"]), hyper_config)


# --- random weights in the real layout ---------------------------------------------------

# Stable Diffusion 2.1's configurations (stabilityai/stable-diffusion-2-1), for random
# weights of the real shapes (memory and time benchmarks), and tiny ones for tests.
SD21_UNET = {
    "act_fn": "silu", "attention_head_dim": [5, 10, 20, 20], "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False, "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "dual_cross_attention": False, "flip_sin_to_cos": True, "freq_shift": 0,
    "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05,
    "norm_num_groups": 32, "num_class_embeds": None, "only_cross_attention": False, "out_channels": 4,
    "sample_size": 96, "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "use_linear_projection": True, "upcast_attention": True,
}
SD21_VAE = {
    "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 3, "latent_channels": 4,
    "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 768,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "scaling_factor": 0.18215,
}
SD21_TEXT = {
    "hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 23,
    "max_position_embeddings": 77, "vocab_size": 49408, "hidden_act": "gelu", "projection_dim": 512,
    "layer_norm_eps": 1e-05, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
}
SD21_SCHEDULER = {
    "_class_name": "DDIMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
    "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "v_prediction",
    "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
}
TINY_UNET = {
    **SD21_UNET, "attention_head_dim": 8, "block_out_channels": [32, 64], "cross_attention_dim": 32,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "layers_per_block": 1, "norm_num_groups": 16, "sample_size": 16,
}
TINY_VAE = {**SD21_VAE, "block_out_channels": [16, 16, 16, 16], "layers_per_block": 1, "norm_num_groups": 8,
            "sample_size": 64}
TINY_TEXT = {**SD21_TEXT, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
             "num_hidden_layers": 2, "projection_dim": 32}
PRESETS = {
    "tiny": {"unet": TINY_UNET, "vae": TINY_VAE, "text": TINY_TEXT, "N": 32},
    "full": {"unet": SD21_UNET, "vae": SD21_VAE, "text": SD21_TEXT, "N": 192},
}


def write_random(folder: Path, preset: str = "tiny", *, grid: int = 8, codebook: int = 256, seed: int = 0,
                 components: tuple[str, ...] = COMPONENTS) -> None:
    """Write a PerCo model of random weights into ``folder`` in the real layout, the
    architecture of ``preset`` ("tiny": seconds on a CPU; "full": Stable Diffusion 2.1's
    shapes, about 5 GB), the hyper-encoder for the rate setting (``grid``, ``codebook``)
    with M = 320 (what PerCo (SD)'s U-Net hard-codes). The tokenizer is a real CLIP
    tokenizer whose vocabulary is single characters (every text tokenizes)."""
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from transformers.models.clip.configuration_clip import CLIPTextConfig
    from transformers.models.clip.modeling_clip import CLIPTextModel

    spec = PRESETS[preset]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    (folder / CONFIG_FILE).write_text(json.dumps({"architecture": ARCHITECTURE}, indent=2) + "\n")
    if "hyper_enc" in components:
        hyper_config = {"in_channels": 4, "N": spec["N"], "M": 320, "codebook_dim": 32, "cfg_ss": grid,
                        "cfg_cs": codebook}
        encoder = HyperEncoder(**hyper_config)
        with torch.no_grad():  # with random biases every cell of an image maps to the same code or two
            for layer in encoder.modules():
                if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
                    layer.bias.zero_()
        _save_state(encoder.state_dict(), hyper_config, "HyperEncoder", folder / "hyper_enc")
    if "unet" in components:
        unet = UNet2DConditionModel(**spec["unet"])
        state = unet.state_dict()
        extended = torch.nn.Conv2d(4 + 320, unet.conv_in.out_channels, 3, padding=1)
        state.update({f"conv_in_extended.{k}": v for k, v in extended.state_dict().items()})
        _save_state(state, dict(unet.config), "UNet2DConditionModel", folder / "unet")
        del unet, state
    if "vae" in components:
        vae = AutoencoderKL(**spec["vae"])
        _save_state(vae.state_dict(), dict(vae.config), "AutoencoderKL", folder / "vae")
        del vae
    if "text_encoder" in components:
        _save_text_encoder(CLIPTextModel(CLIPTextConfig(**spec["text"])), folder / "text_encoder")
    if "tokenizer" in components:
        write_character_tokenizer(folder / "tokenizer")
    if "scheduler" in components:
        (folder / "scheduler").mkdir(exist_ok=True)
        (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD21_SCHEDULER, indent=2) + "\n")


def _save_state(state: dict, config: dict, class_name: str, folder: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = {"_class_name": class_name, **{k: v for k, v in config.items() if not k.startswith("_")}}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=list) + "\n")
    save_file({k: v.contiguous() for k, v in state.items()}, folder / DIFFUSERS_WEIGHTS)


def _save_text_encoder(model, folder: Path) -> None:
    """``save_pretrained``, its weights under Stable Diffusion 2.1's names: transformers 5
    saves CLIPTextModel's tensors without the ``text_model.`` prefix, which transformers 4
    (PerCo (SD)'s 4.37, say) does not find, initialising the whole encoder at random without
    an error; transformers 5 loads the prefixed names as well."""
    from safetensors.torch import load_file, save_file

    model.save_pretrained(folder, safe_serialization=True)
    path = folder / "model.safetensors"
    state = load_file(path)
    prefix = "text_model."
    save_file({k if k.startswith(prefix) else prefix + k: v for k, v in state.items()}, path, metadata={"format": "pt"})


def write_character_tokenizer(folder: Path) -> None:
    """A CLIP BPE tokenizer whose vocabulary is CLIP's 256 byte characters, alone and
    word-final, plus its two special tokens (514 entries, ids below SD's vocabulary size),
    padded with "!" as Stable Diffusion 2's tokenizer is."""
    characters = list(_byte_characters())
    vocabulary = characters + [c + "</w>" for c in characters] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocabulary)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": "!"}
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {**special, "model_max_length": 77, "do_lower_case": True, "tokenizer_class": "CLIPTokenizer"}))


def _byte_characters() -> list[str]:
    """The characters byte-level BPE (GPT-2, CLIP) stands the 256 byte values for, in the
    order CLIP's vocabulary starts with them: the printable Latin-1 bytes as themselves
    ("!" first, id 0, which Stable Diffusion 2 pads with), then the others as 256 + their rank."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]
