import pytest

torch = pytest.importorskip("torch")  # the learned backends are an optional extra

from tcodec.models.coding import TensorCoder
from tcodec.models.taco import TacoConfig, TacoModel
from tcodec.weights import load_model

from tests.models.tiny import TINY, tiny_model


def image(seed=0, height=128, width=192):
    torch.manual_seed(seed)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, height // 16, width // 16), (height, width),
                                             mode="bilinear", align_corners=False)
    return (smooth + 0.05 * torch.rand(1, 3, height, width)).clamp(0, 1)


def text(seed=0):
    torch.manual_seed(seed)
    return torch.randn(1, 38, TINY.text_dim)


def encode(model, x, t, quality=2.0):
    coder = TensorCoder.writer()
    model.compress(x, t, coder, quality=quality)
    return coder.to_bytes(), coder.stream.ideal_bits


def decode(model, data, size, quality=2.0):
    coder = TensorCoder.reader(data)
    x_hat = model.decompress(coder, size, quality=quality)
    coder.stream.check_exhausted()
    return x_hat


@pytest.fixture(scope="module")
def coding_model(tiny_folder):
    return load_model(str(tiny_folder)).model


def test_official_configuration_has_the_official_layout_and_size():
    model = TacoModel(TacoConfig())
    keys = set(model.state_dict())
    assert {"g_a.analysis_transform.17.conv_a.0.conv.0.weight", "g_s.synthesis_transform.14.weight",
            "h_a.reduction.4.weight", "h_s.increase.4.weight", "local_context.4.weight",
            "channel_context.4.fushion.4.weight", "entropy_parameters_anchor.0.fusion.0.weight",
            "entropy_parameters_nonanchor.4.fusion.4.bias", "entropy_bottleneck.quantiles",
            "gaussian_conditional.scale_table", "g_a.analysis_transform.8.gamma",
            "g_a.analysis_transform.14.cross_attn.in_proj_weight"} <= keys
    assert not any(k.startswith("channel_context.0") for k in keys)
    # ELIC + text adapter; with CLIP's 63.2M text model this is the paper's 101.8M
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(38.58e6, rel=0.001)


def test_slices_must_add_up_to_m():
    with pytest.raises(ValueError, match="must add up to M"):
        TacoConfig(M=100, slices=(10, 20))


def test_decoder_rebuilds_what_the_encoder_quantised(coding_model):
    x, t = image(), text()
    data, _ = encode(coding_model, x, t)
    x_hat = decode(coding_model, data, (2, 3))
    reference = tiny_model().eval()
    with torch.no_grad():
        expected = reference(x, t, quality=2.0)["x_hat"].clamp(0, 1)
    # forward() quantises in float32, coding in float64: the same symbols, tiny float noise
    assert (x_hat - expected).abs().max() < 1e-4


def test_coded_size_is_within_one_percent_of_the_ideal(coding_model):
    data, ideal_bits = encode(coding_model, image(), text())
    assert ideal_bits / 8 <= len(data) <= ideal_bits / 8 * 1.01 + 8


def test_encoding_is_deterministic_across_thread_counts(coding_model):
    x, t = image(1), text(1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, _ = encode(coding_model, x, t)
        torch.set_num_threads(2)
        two, _ = encode(coding_model, x, t)
    finally:
        torch.set_num_threads(threads)
    assert one == two == encode(coding_model, x, t)[0]


def test_quality_changes_the_rate(coding_model):
    x, t = image(2), text(2)
    sizes = [len(encode(coding_model, x, t, quality=q)[0]) for q in (1.0, 2.5, 4.0)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_fractional_quality_interpolates_the_gains():
    model = tiny_model()
    low, _ = model.gains(2.0)
    high, _ = model.gains(3.0)
    middle, _ = model.gains(2.5)
    assert torch.allclose(middle, (low * high).sqrt(), rtol=1e-5)


def test_the_caption_reaches_the_encoder(coding_model):
    x = image(3)
    assert encode(coding_model, x, text(3))[0] != encode(coding_model, x, text(4))[0]


def test_forward_gives_likelihoods_for_training():
    model = tiny_model().train()
    out = model(image(), text(), quality=torch.tensor([1.0]))
    assert out["x_hat"].shape == (1, 3, 128, 192)
    assert out["likelihoods"]["y"].shape == (1, TINY.M, 8, 12)
    (out["x_hat"].mean() - out["likelihoods"]["y"].log().mean()).backward()
    assert model.g_a.analysis_transform[0].weight.grad is not None


@pytest.mark.parametrize("table", [(0.11, 256.0, 64), (0.11, 64.0, 160)])
def test_scale_indexes_are_compressais_build_indexes(table):
    from dataclasses import replace

    from tcodec.models.taco import scale_indexes

    model = TacoModel(replace(TINY, scale_table=table))
    model.update(force=True)
    entries = model.gaussian_conditional.scale_table.double()
    assert len(entries) == table[2] and entries[-1] == pytest.approx(table[1], rel=1e-6)
    torch.manual_seed(0)
    scales = torch.cat([torch.exp(torch.empty(10_000, dtype=torch.float64).uniform_(-4, 7)),
                        entries, entries.nextafter(torch.tensor(0.0, dtype=torch.float64)), torch.zeros(3)])
    expected = model.gaussian_conditional.build_indexes(scales)
    assert torch.equal(scale_indexes(model.gaussian_conditional, scales), expected)


def test_the_scale_table_of_the_config_is_the_one_frozen_and_coded_with(tmp_path):
    from dataclasses import replace

    from tcodec.models.taco_weights import save_model

    config = replace(TINY, scale_table=(0.11, 64.0, 160))
    assert TacoConfig.from_dict(config.to_dict()) == config
    assert TacoConfig.from_dict({k: v for k, v in TINY.to_dict().items() if k != "scale_table"}) == TINY
    model = tiny_model(config=config)
    save_model(model.eval(), tmp_path, "all-minilm-l6-v2")
    loaded = load_model(str(tmp_path)).model
    assert loaded.config.scale_table == (0.11, 64.0, 160)
    assert loaded.gaussian_conditional._quantized_cdf.shape[0] == 160
    x, t = image(2), text(2)
    data, _ = encode(loaded, x, t)
    reference = tiny_model(config=config).eval()
    with torch.no_grad():
        expected = reference(x, t, quality=2.0)["x_hat"].clamp(0, 1)
    assert (decode(loaded, data, (2, 3)) - expected).abs().max() < 1e-4
