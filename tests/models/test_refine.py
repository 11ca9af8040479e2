"""Latent refinement: lower real cost, coded and decoded like any latent, deterministic."""

import pytest

torch = pytest.importorskip("torch")  # the learned backends are an optional extra

from tcodec.models.coding import TensorCoder  # noqa: E402
from tcodec.models.refine import Refiner  # noqa: E402
from tcodec.weights import load_model  # noqa: E402

from tests.models.test_taco import image, text  # noqa: E402

QUALITY, LAMBDA = 2.0, 0.01


@pytest.fixture(scope="module")
def setting(tiny_folder):
    model = load_model(str(tiny_folder)).model
    x = image(seed=3)
    with torch.no_grad():
        y = model.scaled(model.analyse(x, text()), QUALITY)
    return model, Refiner(model), x, y, model.gains(QUALITY)[1]


def refine(setting, steps):
    model, refiner, x, y, inverse_gain = setting
    return refiner.refine(x, y, inverse_gain, LAMBDA, steps, size=tuple(x.shape[-2:]))


def cost(setting, y, z):
    model, refiner, x, _, inverse_gain = setting

    def distortion(y_hat, decoder):
        return torch.nn.functional.mse_loss(decoder.g_s(y_hat * inverse_gain), x)
    return refiner.real_cost(y, z, distortion, LAMBDA, x.shape[-2] * x.shape[-1])


def test_refined_latents_cost_less_than_the_analysis_transforms(setting):
    model, _, _, y, _ = setting
    start = cost(setting, y, model.h_a(y))
    y_refined, z_refined = refine(setting, 16)
    assert cost(setting, y_refined, z_refined) < start
    assert not torch.equal(y_refined, y)


def test_no_steps_give_the_start_back(setting):
    model, _, _, y, _ = setting
    y_same, z_same = refine(setting, 0)
    assert torch.equal(y_same, y) and torch.equal(z_same, model.h_a(y))


def test_refinement_is_deterministic(setting):
    first, second = refine(setting, 4), refine(setting, 4)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_refined_latents_code_and_decode_like_any_other(setting):
    model, _, x, _, inverse_gain = setting
    y_refined, z_refined = refine(setting, 8)
    coder = TensorCoder.writer()
    model.code_scaled(y_refined, coder, z_refined)
    reader = TensorCoder.reader(coder.to_bytes())
    size = (x.shape[-2] // 64, x.shape[-1] // 64)
    decoded = model.decompress(reader, size, quality=QUALITY)
    reader.stream.check_exhausted()
    from tcodec.models.refine import coding_parameters

    with torch.no_grad():  # the decoder rebuilds exactly the latents the coder rounded
        medians = model.entropy_bottleneck._get_medians().view(1, -1, 1, 1)
        z_hat = model._dequantize_z(torch.round(z_refined - medians))
        _, means = coding_parameters(model, model.h_s(z_hat), y_refined)
        y_hat = (torch.round(y_refined.double() - means.double()) + means.double()).float()
        expected = model.g_s((y_hat * inverse_gain).contiguous(memory_format=torch.channels_last)).clamp(0, 1)
    assert torch.allclose(decoded, expected, atol=1e-4)


def test_the_coding_model_stays_as_it_was(setting, tiny_folder):
    model, _, x, y, _ = setting
    fresh = load_model(str(tiny_folder)).model
    coders = [TensorCoder.writer(), TensorCoder.writer()]
    model.code_scaled(y, coders[0])
    fresh.code_scaled(y, coders[1])
    assert coders[0].to_bytes() == coders[1].to_bytes()
    assert all(layer.exact for layer in model.integer_layers())


def test_large_images_are_refined_in_windows_and_joined(setting, monkeypatch):
    from tcodec.models import refine as refine_module

    monkeypatch.setattr(refine_module, "WINDOW", 64)
    model, refiner, x, y, inverse_gain = setting
    assert refine_module.windows(128, 192) == [(0, 0, 64, 64), (0, 64, 64, 128), (0, 128, 64, 192),
                                               (64, 0, 128, 64), (64, 64, 128, 128), (64, 128, 128, 192)]
    calls = []
    y_joined, z_joined = refiner.refine(x, y, inverse_gain, LAMBDA, 4, size=tuple(x.shape[-2:]),
                                        progress=lambda: calls.append(1))
    assert len(calls) == 6 * 4
    assert y_joined.shape == y.shape and z_joined.shape == model.h_a(y).shape
    assert cost(setting, y_joined, z_joined) <= cost(setting, y, model.h_a(y))
