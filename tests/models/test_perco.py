"""PerCo (SD)'s networks (tcodec.models.perco) and its model folders (perco_weights):
parameter names and shapes as PerCo (SD) saves them, the quantiser against an independent
computation, loading, bases, and damaged folders."""

import hashlib
import json
import pickle
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the learned backends are an optional extra
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from tcodec import weights  # noqa: E402
from tcodec.errors import ModelError, ModelNotFoundError  # noqa: E402
from tcodec.models import perco_weights  # noqa: E402
from tcodec.models.perco import CosineVectorQuantizer, HyperEncoder, PercoModel  # noqa: E402
from tests.perco_fixtures import isolate, tiny_perco  # noqa: E402

BASE_COMPONENTS = ("vae", "text_encoder", "tokenizer", "scheduler")
OWN_COMPONENTS = ("unet", "hyper_enc")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return tiny_perco(tmp_path_factory)


# --- the hyper-encoder under PerCo (SD)'s names ---------------------------------------------


def perco_hyper_encoder_shapes(N: int, M: int, codebook: int, dim: int, cfg_ss: int) -> dict:
    """Every tensor of PerCo (SD)'s saved hyper_enc/ (Nikolai10/PerCo src/hyper_encoder.py:
    a Sequential ``backbone`` of conv1x1 / CompressAI conv (5x5, stride 2), its
    ResidualBottleneckBlock (``layers``), CompressAI's AttentionBlock; vector_quantize_pytorch's
    VectorQuantize as ``quantizer``), written out here from that description."""
    shapes = {}

    def conv(name, cin, cout, kernel):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cout, cin, kernel, kernel), (cout,)

    def bottleneck(name, c):
        conv(f"{name}.0", c, c // 2, 1)
        conv(f"{name}.2", c // 2, c // 2, 3)
        conv(f"{name}.4", c // 2, c, 1)

    def attention(name, c):
        for branch in ("conv_a", "conv_b"):
            for unit in range(3):
                bottleneck(f"{name}.{branch}.{unit}.conv", c)
        conv(f"{name}.conv_b.3", c, c, 1)

    conv("backbone.0", 4, N, 1 if cfg_ss >= 16 else 5)
    for i in (1, 2, 3):
        bottleneck(f"backbone.{i}.layers", N)
    conv("backbone.4", N, N, 1 if cfg_ss >= 32 else 5)
    for i in (5, 6, 7):
        bottleneck(f"backbone.{i}.layers", N)
    attention("backbone.8", N)
    conv("backbone.9", N, N, 1 if cfg_ss == 64 else 5)
    for i in (10, 11, 12):
        bottleneck(f"backbone.{i}.layers", N)
    conv("backbone.13", N, M, 1)
    attention("backbone.14", M)
    shapes["quantizer.project_in.weight"], shapes["quantizer.project_in.bias"] = (dim, M), (dim,)
    shapes["quantizer.project_out.weight"], shapes["quantizer.project_out.bias"] = (M, dim), (M,)
    shapes["quantizer._codebook.initted"] = (1,)
    shapes["quantizer._codebook.cluster_size"] = (1, codebook)
    shapes["quantizer._codebook.embed_avg"] = (1, codebook, dim)
    shapes["quantizer._codebook.embed"] = (1, codebook, dim)
    return shapes


@pytest.mark.parametrize("cfg_ss, codebook", [(8, 256), (16, 1024), (32, 8196), (64, 64)])
def test_hyper_encoder_state_dict_has_perco_sds_names_and_shapes(cfg_ss, codebook):
    encoder = HyperEncoder(N=32, M=320, cfg_ss=cfg_ss, cfg_cs=codebook)
    got = {key: tuple(value.shape) for key, value in encoder.state_dict().items()}
    expected = perco_hyper_encoder_shapes(32, 320, codebook, 32, cfg_ss)
    assert sorted(got) == sorted(expected)  # names first: a readable diff
    assert got == expected
    assert {key for key in got if key.startswith("backbone.")} >= {f"backbone.{i}.weight" for i in (0, 4, 9, 13)}
    assert max(int(key.split(".")[1]) for key in got if key.startswith("backbone.")) == 14


@pytest.mark.parametrize("cfg_ss, published", [(64, 4_080_128), (8, 5_868_032)])
def test_full_size_backbone_has_the_parameter_count_perco_sd_publishes(cfg_ss, published):
    """PerCo (SD)'s HyperEncoder docstring: the authors' hyper-encoder has 4,080,128
    parameters at 0.1250 bpp and 5,868,032 at 0.0019 (N=192, M=320); that is its backbone."""
    encoder = HyperEncoder(N=192, M=320, cfg_ss=cfg_ss, cfg_cs=256)
    assert sum(p.numel() for p in encoder.backbone.parameters()) == published
    projections = (320 * 32 + 32) + (32 * 320 + 320)
    assert sum(p.numel() for p in encoder.parameters()) == published + projections


@pytest.mark.parametrize("cfg_ss, factor", [(64, 1), (32, 2), (16, 4), (8, 8)])
def test_grid_is_the_latent_divided_by_64_over_cfg_ss(cfg_ss, factor):
    torch.manual_seed(0)
    encoder = HyperEncoder(N=32, M=320, cfg_ss=cfg_ss, cfg_cs=64).eval()
    with torch.inference_mode():
        indices = encoder(torch.randn(1, 4, 8, 24))
    assert indices.shape == (1, 8 // factor, 24 // factor) and indices.dtype == torch.int64
    assert 0 <= indices.min() and indices.max() < 64


def reference_indices(features: np.ndarray, weight, bias, embed: np.ndarray) -> np.ndarray:
    """vector_quantize_pytorch's cosine-similarity codebook at inference, in float64 numpy:
    project, l2-normalise, dot with the stored (unit) codebook, argmax (numpy: the first
    of equal maxima)."""
    x = np.moveaxis(features.astype(np.float64), 1, -1)  # (B, H, W, C)
    if weight is not None:
        x = x @ weight.astype(np.float64).T + bias.astype(np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    return np.argmax(x @ embed.astype(np.float64).T, axis=-1)


def test_quantizer_indices_equal_an_independent_float64_cosine_argmax():
    torch.manual_seed(1)
    quantizer = CosineVectorQuantizer(dim=40, codebook_size=300, codebook_dim=8)
    with torch.no_grad():
        quantizer.project_in.bias.normal_()
    features = torch.randn(2, 40, 5, 7)
    got = quantizer.indices(features)
    expected = reference_indices(features.numpy(), quantizer.project_in.weight.detach().numpy(),
                                 quantizer.project_in.bias.detach().numpy(), quantizer._codebook.embed[0].numpy())
    assert got.dtype == torch.int64 and got.shape == (2, 5, 7)
    assert np.array_equal(got.numpy(), expected)
    assert len(np.unique(expected)) > 10  # not a degenerate case where every cell picks one code


def test_quantizer_picks_the_first_of_exactly_tied_codes():
    quantizer = CosineVectorQuantizer(dim=4, codebook_size=8, codebook_dim=4)  # no projection: exact
    assert isinstance(quantizer.project_in, torch.nn.Identity)
    target = torch.tensor([0.5, -0.5, 0.5, 0.5])  # unit length, exact in binary
    embed = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0.5, -0.5, 0.5, 0.5],
                          [0, 0, 0, 1.0], [-1.0, 0, 0, 0], [0.5, -0.5, 0.5, 0.5], [0.5, -0.5, 0.5, 0.5]])
    quantizer._codebook.embed.copy_(embed[None])
    features = torch.stack([target * 3, embed[1] * 2, embed[4]]).T.reshape(1, 4, 1, 3)
    assert quantizer.indices(features).tolist() == [[[3, 1, 4]]]
    quantizer._codebook.embed.copy_(embed[3].expand(8, 4)[None])  # every code the same
    assert quantizer.indices(features).unique().tolist() == [0]


def test_features_are_project_out_of_the_codebook_rows():
    torch.manual_seed(2)
    quantizer = CosineVectorQuantizer(dim=40, codebook_size=16, codebook_dim=8)
    indices = torch.randint(0, 16, (1, 3, 4))
    embed = quantizer._codebook.embed[0].double()
    weight, bias = quantizer.project_out.weight.detach().double(), quantizer.project_out.bias.detach().double()
    expected = (embed[indices] @ weight.T + bias).permute(0, 3, 1, 2)
    with torch.no_grad():
        got = quantizer.features(indices)
    assert got.shape == (1, 40, 3, 4)
    assert torch.allclose(got.double(), expected, atol=1e-6)
    # the decoder's view of an encoded cell: the feature of the index it was given
    with torch.no_grad():
        one = quantizer.project_out(quantizer._codebook.embed[0, indices[0, 2, 3]])
    assert torch.allclose(got[0, :, 2, 3], one, atol=1e-6)


# --- model folders ------------------------------------------------------------------------


def test_write_random_then_load_model_round_trip(model_folder):
    from safetensors.torch import load_file

    loaded = weights.load_model(str(model_folder))
    assert loaded.config == {"architecture": "perco"}
    assert isinstance(loaded.model, PercoModel)
    assert loaded.model.hyper_config == {"in_channels": 4, "N": 32, "M": 320, "codebook_dim": 32,
                                         "cfg_ss": 8, "cfg_cs": 256}
    assert loaded.hash == weights.model_hash(model_folder) and len(loaded.hash8) == 8
    assert loaded.model._components == {}  # nothing loaded until it is used
    encoder = loaded.model.component("hyper_enc")
    assert loaded.model.component("hyper_enc") is encoder  # loaded once
    saved = load_file(model_folder / "hyper_enc" / perco_weights.DIFFUSERS_WEIGHTS)
    state = encoder.state_dict()
    assert set(state) == set(saved) and all(torch.equal(state[k], saved[k]) for k in saved)
    assert not any(p.requires_grad for p in encoder.parameters()) and not encoder.training
    assert set(loaded.model._components) == {"hyper_enc"}


def test_the_unets_conv_in_is_perco_sds_extended_convolution(model_folder):
    from safetensors.torch import load_file

    loaded = weights.load_model(str(model_folder))
    unet = loaded.model.component("unet")
    saved = load_file(model_folder / "unet" / perco_weights.DIFFUSERS_WEIGHTS)
    assert unet.conv_in.in_channels == 4 + 320 and unet.conv_in.weight.shape[1] == 324
    assert torch.equal(unet.conv_in.weight, saved["conv_in_extended.weight"])
    assert torch.equal(unet.conv_in.bias, saved["conv_in_extended.bias"])
    assert saved["conv_in.weight"].shape[1] == 4  # SD's own, in the file, unused
    assert not hasattr(unet, "conv_in_extended") and unet.config.in_channels == 4  # the noise has 4 channels
    assert not any(p.is_meta for p in unet.parameters())
    assert loaded.model.component("scheduler_config")["prediction_type"] == "v_prediction"


def test_tokenizer_reads_every_text_and_counts_characters(model_folder):
    tokenizer = weights.load_model(str(model_folder)).model.component("tokenizer")
    assert tokenizer.model_max_length == 77
    ids = tokenizer("a red barn").input_ids
    assert len(ids) == 2 + len("aredbarn") and max(ids) < perco_weights.SD21_TEXT["vocab_size"]


@pytest.fixture
def perco_env(tmp_path, monkeypatch):
    return isolate(tmp_path, monkeypatch)


@pytest.fixture
def based(model_folder, perco_env, monkeypatch):
    """A model whose VAE, text encoder, tokenizer and scheduler come from an installed base
    (a models.lock entry added for the test, installed in the test's cache)."""
    base_folder = perco_env / "perco-test-base"
    for component in BASE_COMPONENTS:
        shutil.copytree(model_folder / component, base_folder / component)
    own = perco_env.parent / "own"
    for component in OWN_COMPONENTS:
        shutil.copytree(model_folder / component, own / component)
    (own / "config.json").write_text(json.dumps({"architecture": "perco", "base": "perco-test-base"}))
    register_base(monkeypatch, base_folder)
    return own, base_folder


def register_base(monkeypatch, base_folder) -> None:
    """models.lock plus an entry for the base whose files are those in ``base_folder``."""
    files = tuple(weights.LockedFile(p) for p in weights.model_files(base_folder))
    entry = weights.LockEntry("perco-test-base", "perco-base", "hf-folder", "https://example.invalid/sd", "CC0", files)
    lock = {**weights.read_lock(), entry.name: entry}
    monkeypatch.setattr(weights, "read_lock", lambda: lock)


def manifest(folder, paths) -> str:
    lines = "".join(f"{hashlib.sha256((folder / p).read_bytes()).hexdigest()}  {p}\n" for p in sorted(paths))
    return hashlib.sha256(lines.encode()).hexdigest()


def test_components_come_from_the_folder_or_its_base(based):
    own, base_folder = based
    config = json.loads((own / "config.json").read_text())
    found = perco_weights.component_folders(own, config)
    assert found == {**{c: base_folder / c for c in BASE_COMPONENTS}, **{c: own / c for c in OWN_COMPONENTS}}
    loaded = weights.load_model(str(own))
    base_hash = manifest(base_folder, weights.model_files(base_folder))
    own_hash = manifest(own, weights.model_files(own))
    assert loaded.hash == hashlib.sha256(f"{own_hash}  .\n{base_hash}  perco-test-base\n".encode()).hexdigest()
    assert loaded.model.component("tokenizer").model_max_length == 77  # read from the base
    assert loaded.model.hyper_config["cfg_ss"] == 8  # read from the model's own folder


def test_a_component_missing_from_both_is_named_with_where_it_looked(based, monkeypatch):
    own, base_folder = based
    shutil.rmtree(own / "unet")
    shutil.rmtree(base_folder / "tokenizer")
    register_base(monkeypatch, base_folder)  # a base installed whole that has no tokenizer
    assert weights.status("perco-test-base")["installed"]
    config = json.loads((own / "config.json").read_text())
    with pytest.raises(ModelNotFoundError) as raised:
        perco_weights.component_folders(own, config)
    message = str(raised.value)
    assert "lacks tokenizer, unet" in message
    assert message.endswith(f"(looked in {own} or in its base model perco-test-base ({base_folder}))")


def test_a_model_without_its_base_installed_says_how_to_get_it(based):
    own, base_folder = based
    shutil.rmtree(base_folder)
    with pytest.raises(ModelError, match=r"lacks vae, text_encoder, tokenizer, scheduler \(looked in .* or in its "
                                         r"base model perco-test-base .*get the base with: tcodec models fetch "
                                         r"perco-test-base"):
        weights.load_model(str(own))


def test_loading_a_model_without_its_base_raises_model_not_found(based):
    own, base_folder = based
    shutil.rmtree(base_folder)
    with pytest.raises(ModelNotFoundError):
        weights.load_model(str(own))


def test_a_folder_without_a_component_is_model_not_found(model_folder, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(model_folder, copy, ignore=shutil.ignore_patterns("vae"))
    with pytest.raises(ModelNotFoundError, match=rf"PerCo model in {copy} lacks vae \(looked in {copy}\)$"):
        perco_weights.component_folders(copy, {"architecture": "perco"})


# --- damaged folders ------------------------------------------------------------------


@pytest.fixture
def damaged(model_folder, tmp_path):
    copy = tmp_path / "damaged"
    shutil.copytree(model_folder, copy)
    return copy


def test_truncated_safetensors_is_a_model_error(damaged):
    path = damaged / "hyper_enc" / perco_weights.DIFFUSERS_WEIGHTS
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    model = weights.load_model(str(damaged)).model
    with pytest.raises(ModelError, match=r"hyper_enc/diffusion_pytorch_model.safetensors is not a safetensors file"):
        model.component("hyper_enc")


class _Unpickled:
    """A pickle that leaves a mark when it is loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("component, message", [
    ("hyper_enc", (r"hyper_enc/diffusion_pytorch_model.safetensors is missing \(PerCo's weights are read from "
                   r"safetensors only\)")),
    ("vae", r"PerCo component .*/vae cannot be loaded"),
])
def test_a_pickle_instead_of_safetensors_is_refused_unread(damaged, tmp_path, component, message):
    (damaged / component / perco_weights.DIFFUSERS_WEIGHTS).unlink()
    marker = tmp_path / "unpickled"
    (damaged / component / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"x": _Unpickled(marker)}))
    model = weights.load_model(str(damaged)).model
    with pytest.raises(ModelError, match=message):
        model.component(component)
    assert not marker.exists()


def test_a_hyper_encoder_config_of_no_rate_setting_is_a_model_error(damaged):
    path = damaged / "hyper_enc" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "cfg_ss": 12}))
    with pytest.raises(ModelError, match=r"model damaged: .*hyper_enc/config.json: not a PerCo hyper-encoder config "
                                         r".*'cfg_ss': 12"):
        weights.load_model(str(damaged))


def test_hyper_encoder_weights_that_do_not_fit_its_config_are_a_model_error(damaged):
    path = damaged / "hyper_enc" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "N": 64}))
    model = weights.load_model(str(damaged)).model
    with pytest.raises(ModelError, match=r"the weights in .*hyper_enc do not fit its config.json"):
        model.component("hyper_enc")


def test_an_unreadable_component_config_is_a_model_error(damaged):
    (damaged / "unet" / "config.json").write_text("{not json")
    model = weights.load_model(str(damaged)).model
    with pytest.raises(ModelError, match=r"unet/config.json is not readable JSON"):
        model.component("unet")
