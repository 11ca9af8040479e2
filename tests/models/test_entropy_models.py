"""The coding-only priors hold CompressAI's tensors and compute CompressAI's likelihoods."""

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")  # the learned backends are an optional extra
entropy_models = pytest.importorskip("compressai.entropy_models")

from tcodec.models.entropy_models import FactorizedPrior, GaussianPrior  # noqa: E402
from tcodec.models.taco import TacoModel  # noqa: E402

from tests.models.tiny import TINY  # noqa: E402


@pytest.fixture(scope="module")
def trained_bottleneck():
    torch.manual_seed(0)
    bottleneck = entropy_models.EntropyBottleneck(6)
    with torch.no_grad():  # a density that is not the initial one
        for parameter in bottleneck.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    bottleneck.update(force=True)
    return bottleneck


def test_factorized_prior_loads_compressais_state_and_gives_its_likelihoods(trained_bottleneck):
    prior = FactorizedPrior(6)
    prior.load_state_dict(trained_bottleneck.state_dict(), strict=True)
    assert torch.equal(prior._quantized_cdf, trained_bottleneck._quantized_cdf)
    assert torch.equal(prior._get_medians(), trained_bottleneck._get_medians())
    # CompressAI's eval forward rounds z around the medians; a rounded z it keeps
    z = torch.round(4 * torch.randn(2, 6, 5, 7) - prior._get_medians().view(1, 6, 1, 1)) \
        + prior._get_medians().view(1, 6, 1, 1)
    _, expected = trained_bottleneck.eval()(z, training=False)
    assert torch.allclose(prior.likelihood(z), expected, rtol=1e-5, atol=1e-9)

def test_gaussian_prior_loads_compressais_state_and_gives_its_likelihoods():
    conditional = entropy_models.GaussianConditional(None)
    conditional.update_scale_table(torch.exp(torch.linspace(-2, 4, 20)), force=True)
    prior = GaussianPrior()
    prior.load_state_dict(conditional.state_dict(), strict=True)
    assert torch.equal(prior.scale_table, conditional.scale_table)
    y, means = 3 * torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 6)
    scales = torch.rand(1, 4, 6, 6) * 5  # some below the scale bound
    # CompressAI's eval quantises y around the means; y = round(y - mean) + mean it keeps
    y_hat = torch.round(y - means) + means
    _, expected = conditional(y_hat, scales, means, training=False)
    assert torch.allclose(prior.likelihood(y_hat, scales, means), expected, rtol=1e-5, atol=1e-9)


def test_likelihoods_have_gradients_for_refinement():
    prior, conditional = FactorizedPrior(3), GaussianPrior()
    z = torch.zeros(1, 3, 2, 2, requires_grad=True)
    y = torch.full((1, 3, 2, 2), 0.3, requires_grad=True)
    bits = -(prior.likelihood(z + 0.2).log2().sum() + conditional.likelihood(y, torch.ones_like(y), 0 * y).log2().sum())
    bits.backward()
    assert z.grad.abs().sum() > 0 and y.grad.abs().sum() > 0


def test_a_coding_model_loads_a_trainable_models_state_and_codes_the_same(tiny_folder):
    from tcodec.weights import load_model

    coding = load_model(str(tiny_folder)).model
    assert not coding.trainable and isinstance(coding.entropy_bottleneck, FactorizedPrior)
    trainable = TacoModel(TINY)
    trainable.load_state_dict(coding.state_dict(), strict=True)
    assert set(trainable.state_dict()) == set(coding.state_dict())
    with pytest.raises(TypeError, match="trainable"):
        coding.update(force=True)


def test_coding_imports_neither_compressai_nor_transformers(tiny_folder):
    script = f"""
import sys
from tcodec.models.text import text_encoder
from tcodec.weights import load_model
load_model({str(tiny_folder)!r})
text_encoder("all-minilm-l6-v2").encode(["a dog"])
heavy = [name for name in ("compressai", "transformers", "torch_geometric") if name in sys.modules]
assert not heavy, heavy
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
