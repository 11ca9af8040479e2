"""Integer entropy-parameter networks: exact in float32, the same as their training form."""

import copy
import dataclasses

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from tcodec.errors import ModelError  # noqa: E402
from tcodec.models.integer import (  # noqa: E402
    EXACT_LIMIT,
    FINAL,
    SIGNED,
    calibrate,
    integer_layers,
    integer_network,
)
from tcodec.models.layers import pack  # noqa: E402
from tcodec.models.taco_weights import save_model  # noqa: E402
from tcodec.weights import load_model  # noqa: E402

from tests.models.test_taco import decode, encode, image, text  # noqa: E402
from tests.models.tiny import TINY, tiny_model  # noqa: E402

INTEGER = dataclasses.replace(TINY, integer_bits=10)


def network(seed=0, final=FINAL, quantize_input=True, width=24):
    torch.manual_seed(seed)
    float_network = nn.Sequential(nn.Conv2d(8, width, 5, padding=2), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, 6, 1))
    integer = integer_network(float_network, 10, final, quantize_input=quantize_input)
    inputs = torch.randn(4, 8, 12, 16) * 3
    calibrate([integer], lambda: integer(inputs))
    for layer in integer_layers([integer]):
        layer.freeze()
    return float_network, integer, inputs


def run_exact(integer, x):
    for layer in integer_layers([integer]):
        layer.exact = True
    try:
        with torch.no_grad():
            return integer(x)
    finally:
        for layer in integer_layers([integer]):
            layer.exact = False


def test_the_integer_network_keeps_the_float_networks_parameters():
    float_network, integer, _ = network()
    assert integer[0].weight is float_network[0].weight
    assert set(integer.state_dict()) >= set(float_network.state_dict())
    assert {"0.integer_weight", "0.weight_step", "0.input_step", "2.output_step", "4.integer_bias"} <= set(integer.state_dict())


def test_exact_coding_form_equals_the_training_form():
    _, integer, x = network()
    with torch.no_grad():
        trained = copy.deepcopy(integer).double()(x.double())  # float weights rounded to the grids
    exact = run_exact(integer, x)
    assert exact.dtype == torch.float64
    # the same grids; the two differ only where a float rounding meets a grid point's half
    close = torch.isclose(exact, trained, rtol=1e-6, atol=1e-9)
    assert close.float().mean() > 0.99


def test_hidden_activations_are_integers_within_their_grid():
    _, integer, x = network(final=SIGNED)
    for layer in integer_layers([integer]):
        layer.exact = True
    with torch.no_grad():
        hidden = integer[1](integer[0](x))
        out = integer(x)
    assert hidden.dtype == torch.float32 and torch.equal(hidden, hidden.round())
    assert hidden.min() >= 0 and hidden.max() <= 1023 and hidden.max() > 100  # the grid is used
    assert out.abs().max() <= 511 and out.min() < 0


def test_float32_sums_are_exact_at_the_largest_inputs():
    """The worst case of the bound for output channel 0: every input at the grid's top,
    with the sign of its weight, on a wide layer; float32 gives the integer sums (int64)."""
    _, integer, _ = network(width=240)
    layer = integer[2]  # 3x3 over 240 channels of 10-bit inputs
    weight = layer.integer_weight.long()
    worst = torch.where(weight[:1] >= 0, 1023, -1023).float()  # (1, 240, 3, 3): one window
    exact = (weight * worst.long()).flatten(1).sum(1) + layer.integer_bias.long()
    computed = nn.functional.conv2d(worst, *layer.exact_weights(torch.float32, torch.device("cpu")))  # one window
    assert exact.abs().max() > 2**20  # the sums come near the limit
    assert exact.abs().max() <= EXACT_LIMIT
    assert torch.equal(computed.flatten().double(), exact.double())


@pytest.mark.parametrize("channels_last", [False, True])
def test_float32_convolutions_at_a_kodak_latents_size_give_the_exact_sums(channels_last):
    """Whatever kernel torch picks for this shape (a Winograd one would not be exact), the
    float32 sums equal float64's, which are exact far beyond these magnitudes."""
    _, integer, _ = network(width=240)
    layer = integer[2]
    generator = torch.Generator().manual_seed(3)
    x = torch.randint(0, 1024, (1, 240, 32, 48), generator=generator).float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    float32 = layer.linear(x, *layer.exact_weights(torch.float32, x.device))
    float64 = layer.linear(x.double(), *layer.exact_weights(torch.float64, x.device))
    assert float64.abs().max() > 2**18
    assert torch.equal(float32.double(), float64)


def test_a_layer_beyond_the_exact_range_is_refused():
    _, integer, _ = network()
    layer = integer[2]
    layer.check_exact()
    with torch.no_grad():
        layer.integer_weight.fill_(127)
    with pytest.raises(ValueError, match="exact range"):
        layer.check_exact()
    for bad in (0.0, float("inf"), float("nan")):
        _, integer, _ = network()
        integer[0].input_step[3] = bad
        with pytest.raises(ValueError, match="positive number"):
            integer[0].check_exact()


def test_checkerboard_form_equals_the_dense_layer():
    torch.manual_seed(1)
    layer = integer_network(nn.Conv2d(8, 16, 5, padding=2), 10, SIGNED, quantize_input=True)
    y_hat = torch.randn(1, 8, 12, 16).double() * 4
    anchors = torch.zeros_like(y_hat)
    anchors[..., 0::2, 1::2], anchors[..., 1::2, 0::2] = y_hat[..., 0::2, 1::2], y_hat[..., 1::2, 0::2]
    calibrate([layer], lambda: layer(anchors.float()))
    layer.freeze()
    layer.exact = True
    dense = pack(layer(anchors), anchor=False)
    assert torch.equal(layer.checkerboard(pack(anchors, anchor=True)), dense)
    assert torch.equal(dense, dense.round()) and dense.abs().max() > 50


def test_transposed_layers_equal_their_float_form():
    torch.manual_seed(2)
    for stride, padding, output_padding, kernel in ((2, 2, 1, 5), (1, 1, 0, 3)):
        conv = nn.ConvTranspose2d(6, 10, kernel, stride=stride, padding=padding, output_padding=output_padding)
        layer = integer_network(conv, 10, FINAL, quantize_input=True)
        x = torch.randn(1, 6, 5, 7) * 2
        calibrate([layer], lambda: layer(x))
        layer.freeze()
        with torch.no_grad():
            trained = copy.deepcopy(layer).double()(x.double())
        layer.exact = True
        assert torch.allclose(layer(x.double()), trained, rtol=1e-6, atol=1e-9)


def integer_model(seed=0):
    model = tiny_model(seed, INTEGER).eval()

    def run():
        for quality in (1.0, 4.0):
            model(image(seed, 64, 64), text(seed), quality)
    with torch.no_grad():
        model.calibrate_integer_networks(run)
    return model


def test_entropy_parameters_take_their_producers_grids():
    model = integer_model()
    hyper = model.h_s.increase[-1].output_step
    first = model.entropy_parameters_nonanchor[2].fusion[0].input_step
    c = INTEGER.slices[2]
    assert torch.equal(first[: 2 * c], model.local_context[2].output_step.expand(2 * c))
    assert torch.equal(first[2 * c: 4 * c], model.channel_context[2].fushion[-1].output_step.expand(2 * c))
    assert torch.equal(first[4 * c:], hyper.expand(2 * INTEGER.M))


@pytest.fixture(scope="module")
def integer_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny-integer"
    save_model(integer_model(), folder, "all-minilm-l6-v2", half=True)
    return folder


def test_an_integer_model_codes_and_decodes_exactly(integer_folder):
    model = load_model(str(integer_folder)).model
    assert all(layer.exact for layer in model.integer_layers())
    x, t = image(3), text(3)
    data, _ = encode(model, x, t, quality=3.0)
    x_hat = decode(model, data, (2, 3), quality=3.0)  # every symbol read back, or it raises
    assert x_hat.shape == (1, 3, 128, 192)
    again, _ = encode(model, x, t, quality=3.0)
    assert again == data
    torch.set_num_threads(1)
    try:
        assert encode(model, x, t, quality=3.0)[0] == data  # other sums' order, same bits
    finally:
        torch.set_num_threads(2)


def test_a_saved_integer_model_stores_integers_and_derives_the_float_weights(integer_folder):
    from safetensors.torch import load_file

    state = load_file(integer_folder / "model.safetensors")
    assert "h_s.increase.0.weight" not in state and state["h_s.increase.0.integer_weight"].dtype == torch.int8
    assert "g_s.synthesis_transform.1.weight" in state  # the transforms keep theirs
    model = integer_model()  # the same seed: the weights that were saved
    loaded = load_model(str(integer_folder)).model
    for name in ("h_s.increase.0", "entropy_parameters_nonanchor.4.fusion.4", "local_context.1"):
        original, derived = model.get_submodule(name), loaded.get_submodule(name)
        step = derived.weight_step.view(-1, *[1] * 3) if derived.out_axis == 0 else derived.weight_step.view(1, -1, 1, 1)
        tolerance = step / (derived.input_step.view(1, -1, 1, 1) if derived.out_axis == 0 else derived.input_step.view(-1, 1, 1, 1))
        half = original.weight.abs() * 2**-11  # the model was stored in float16 before freezing
        assert ((derived.weight - original.weight).abs() <= tolerance / 2 * 1.001 + half).all()


def test_float64_arithmetic_as_on_cuda_codes_the_same_bits(integer_folder, monkeypatch):
    """The GPU path (sums in float64, any algorithm, rounded) gives the same stream as the
    CPU's float32 sums: both are the exact integers."""
    from tcodec.models import integer

    model = load_model(str(integer_folder)).model
    x, t = image(4), text(4)
    data, _ = encode(model, x, t, quality=5.5)
    monkeypatch.setattr(integer, "compute_dtype", lambda device: torch.float64)
    assert encode(model, x, t, quality=5.5)[0] == data
    decode(model, data, (2, 3), quality=5.5)


def test_an_integer_model_with_tampered_weights_does_not_load(integer_folder, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "tampered"
    folder.mkdir()
    (folder / "config.json").write_bytes((integer_folder / "config.json").read_bytes())
    state = load_file(integer_folder / "model.safetensors")
    state["h_s.increase.4.integer_weight"].fill_(127)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(ModelError, match="exact range"):
        load_model(str(folder))
