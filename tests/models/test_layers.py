"""The checkerboard packing and the faster forms of layers equal what they replace."""

import pytest

torch = pytest.importorskip("torch")

from tcodec.models.layers import (  # noqa: E402
    Extractor,
    Injector,
    PhaseTransposedConv,
    ResidualBottleneck,
    StrideOneTransposedConv,
    checkerboard,
    checkerboard_context,
    deconv,
    pack,
    run_layer,
    unpack_into,
)


def latent(channels=3, height=8, width=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, channels, height, width, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("anchor", [True, False])
def test_pack_keeps_the_masked_positions_in_raster_order(anchor):
    """Coding order: channel by channel, the pass's positions in raster order (as boolean
    masking gives them), which is what files made before packing hold."""
    x = latent()
    masks = dict(zip((True, False), checkerboard(8, 12)))
    packed = pack(x, anchor)
    assert packed.shape == (1, 3, 8, 6)
    assert torch.equal(packed.flatten(), x[..., masks[anchor][0, 0]].flatten())


def test_unpack_into_puts_both_passes_back():
    x = latent()
    rebuilt = unpack_into(unpack_into(torch.full_like(x, float("nan")), pack(x, True), True), pack(x, False), False)
    assert torch.equal(rebuilt, x)


@pytest.mark.parametrize("height, width", [(8, 12), (2, 2), (4, 16)])
def test_checkerboard_context_equals_the_dense_convolution(height, width):
    conv = torch.nn.Conv2d(3, 5, 5, padding=2).double()
    x = latent(height=height, width=width)
    anchor, _ = checkerboard(height, width)
    dense = pack(conv(torch.where(anchor, x, 0.0)), anchor=False)
    assert torch.allclose(checkerboard_context(conv, pack(x, anchor=True)), dense, rtol=0, atol=1e-12)


def test_checkerboard_context_refuses_other_kernels():
    with pytest.raises(ValueError, match="5x5"):
        checkerboard_context(torch.nn.Conv2d(3, 5, 3, padding=1), latent(height=4, width=4)[..., :2])


def test_stride_one_transposed_conv_equals_torchs():
    layer = deconv(4, 6, kernel_size=3, stride=1).double()
    assert isinstance(layer, StrideOneTransposedConv)
    x = latent(channels=4)
    reference = torch.nn.functional.conv_transpose2d(x, layer.weight, layer.bias, padding=1)
    assert torch.allclose(layer(x), reference, rtol=0, atol=1e-12)
    assert type(deconv(4, 6)) is torch.nn.ConvTranspose2d  # stride 2 keeps torch's own


def test_extractor_without_gradients_equals_its_training_form():
    """Coding runs the folded attention (no keys or values of the image tokens); it must
    give what the layers as trained give, for any normalisation and biases."""
    torch.manual_seed(0)
    extractor = Extractor(16, 32, heads=4).double().eval()
    for parameter in (extractor.image_norm.weight, extractor.image_norm.bias, extractor.cross_attn.in_proj_bias,
                      extractor.cross_attn.out_proj.bias):
        torch.nn.init.normal_(parameter, 0.5, 0.3)
    text = torch.randn(2, 5, 32, dtype=torch.float64)
    image = (torch.randn(2, 16, 6, 10, dtype=torch.float64) * 3 + 1).contiguous(memory_format=torch.channels_last)
    trained_form = extractor(text, image)  # gradients enabled: the layers as they are
    with torch.no_grad():
        folded = extractor(text, image)
    assert torch.allclose(folded, trained_form, rtol=0, atol=1e-12)


@pytest.mark.parametrize("height, rows", [(10, 4), (10, 32), (9, 3), (1, 4), (6, 1)])
def test_residual_block_in_bands_equals_its_forward(height, rows):
    """Bands of any height, the last one short, one band, one-row bands: the same values,
    written over the input."""
    torch.manual_seed(0)
    block = ResidualBottleneck(8).double()
    x = latent(channels=8, height=height, width=7)
    expected = block(x.clone())
    with torch.no_grad():
        out = block.add_in_bands_(x, rows=rows)
    assert out is x
    assert torch.allclose(out, expected, rtol=0, atol=1e-12)


def test_run_layer_bands_residual_blocks_only_without_gradients():
    torch.manual_seed(0)
    block = ResidualBottleneck(8)
    x = torch.randn(1, 8, 40, 6).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = block(x)
        assert run_layer(block, x) is x  # inference: added into the activation
    assert torch.allclose(x, expected, rtol=0, atol=1e-5)
    y = torch.randn(1, 8, 40, 6, requires_grad=True)
    out = run_layer(block, y)  # training: a new tensor, gradients flow
    out.sum().backward()
    assert out is not y and y.grad is not None


@pytest.mark.parametrize("height, width", [(5, 7), (1, 1), (8, 3)])
def test_phase_transposed_conv_equals_the_transposed_conv(height, width):
    torch.manual_seed(0)
    layer = PhaseTransposedConv(6, 3).double()
    reference = deconv(6, 3).double()
    reference.load_state_dict(layer.state_dict())  # the same weights under the same names
    x = latent(channels=6, height=height, width=width)
    with torch.no_grad():
        phased = layer(x)
    assert phased.shape == (1, 3, 2 * height, 2 * width)
    assert torch.allclose(phased, reference(x), rtol=0, atol=1e-12)
    layer(x).sum().backward()  # with gradients: torch's transposed convolution, as trained
    assert layer.weight.grad is not None


def test_injector_without_gradients_equals_its_training_form():
    torch.manual_seed(0)
    injector = Injector(16, 32, heads=4).double()
    torch.nn.init.normal_(injector.gamma, 0.5, 0.3)
    image = torch.randn(2, 16, 6, 10, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    text = torch.randn(2, 5, 32, dtype=torch.float64)
    trained_form = injector(image, text)
    with torch.no_grad():
        assert torch.equal(injector(image, text), trained_form)


def test_attention_block_is_compressais():
    compressai_layers = pytest.importorskip("compressai.layers")
    from tcodec.models.layers import AttentionBlock

    torch.manual_seed(0)
    reference = compressai_layers.AttentionBlock(16).eval()
    block = AttentionBlock(16).eval()
    block.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 16, 9, 11)
    with torch.no_grad():
        assert torch.equal(block(x), reference(x))
