"""The taco backend through the real container: bytes on disk, fresh-process decode."""

import os
import subprocess
import sys

import pytest
from PIL import Image

torch = pytest.importorskip("torch")  # the learned backends are an optional extra

import tcodec  # noqa: E402
from tcodec.format.container import unpack  # noqa: E402
from tcodec.errors import InputError, ModelMismatchError, ModelNotFoundError  # noqa: E402
from tcodec.models.taco_weights import save_model  # noqa: E402
from tcodec.weights import model_hash  # noqa: E402
from tcodec.cli.demo import psnr  # noqa: E402
from tests.conftest import run_cli  # noqa: E402
from tests.models.tiny import TINY, tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def models_env(tiny_folder):
    os.environ["TCODEC_MODELS"] = str(tiny_folder)
    yield tiny_folder
    os.environ.pop("TCODEC_MODELS", None)


def test_round_trip_through_the_container(models_env, card):
    data = tcodec.encode(card, "taco", 2.5, caption="a test card", options={"model": str(models_env)})
    info = unpack(data)
    assert (info.backend, info.quality, info.entropy_coder) == ("taco", 2.5, "constriction-range")
    assert info.model_hash.hex() == model_hash(models_env)[:16]
    assert info.caption is None  # TACO's decoder does not need it: stored only when asked
    decoded = tcodec.decode(data)
    assert decoded.size == card.size and decoded.mode == "RGB"


def test_caption_is_stored_when_asked(models_env, card):
    data = tcodec.encode(card, "taco", 2, caption="kept", store_caption=True, options={"model": str(models_env)})
    assert tcodec.read_info(data).caption == "kept"


def test_grayscale_comes_back_grayscale(models_env, card):
    data = tcodec.encode(card.convert("L"), "taco", 2, options={"model": str(models_env)})
    assert tcodec.decode(data).mode == "L"


def test_fresh_process_decodes_identical_pixels_with_1_or_2_threads(models_env, card, tmp_path):
    data = tcodec.encode(card, "taco", 3, caption="a card", options={"model": str(models_env)})
    assert_fresh_processes_decode_the_same(data, tmp_path / "card.tcz", models_env)


def assert_fresh_processes_decode_the_same(data: bytes, path, models_env) -> None:
    """A new process with 1 thread and one with 2 decode ``data`` to this process's pixels."""
    path.write_bytes(data)
    expected = tcodec.decode(data).tobytes()
    script = ("import sys, torch, tcodec\ntorch.set_num_threads(int(sys.argv[2]))\n"
              "sys.stdout.buffer.write(tcodec.decode(sys.argv[1]).tobytes())")
    for threads in ("1", "2"):
        result = subprocess.run([sys.executable, "-c", script, str(path), threads], capture_output=True,
                                env={**os.environ, "TCODEC_MODELS": str(models_env)}, timeout=300)
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        assert result.stdout == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
@pytest.mark.parametrize("encode_on, decode_on", [("cpu", "cuda"), ("cuda", "cpu")])
def test_files_cross_between_cpu_and_cuda(models_env, card, encode_on, decode_on):
    """The range decode must be exact across devices (a misread bit wrecks the image);
    float32 synthesis may move a level, as between two CPUs."""
    import numpy as np

    data = tcodec.encode(card, "taco", 2.5, caption="a card", device=encode_on, options={"model": str(models_env)})
    here, there = (np.asarray(tcodec.decode(data, device=d), dtype=np.int16) for d in (encode_on, decode_on))
    assert np.abs(here - there).max() <= 1


def test_encoding_twice_gives_the_same_bytes(models_env, card):
    options = {"model": str(models_env)}
    assert tcodec.encode(card, "taco", 2, caption="x", options=options) == \
        tcodec.encode(card, "taco", 2, caption="x", options=options)


def test_a_file_whose_model_is_not_installed_says_so(models_env, card, tmp_path):
    other = tmp_path / "other"
    save_model(tiny_model(seed=1), other, "all-minilm-l6-v2")
    data = tcodec.encode(card, "taco", 2, options={"model": str(other)})
    with pytest.raises(ModelNotFoundError, match=f"no installed taco model has hash {unpack(data).model_hash.hex()}"):
        tcodec.decode(data)


def test_quality_outside_the_models_rates(models_env, card):
    with pytest.raises(InputError, match="has qualities 1 to 4"):
        tcodec.encode(card, "taco", 6, options={"model": str(models_env)})


def test_official_family_takes_integer_qualities(card):
    with pytest.raises(InputError, match="taco-official has qualities 1 to 6"):
        tcodec.encode(card, "taco", 2.5, options={"model": "taco-official"})


def test_missing_official_weights_say_how_to_get_them(card, tmp_path, monkeypatch):
    monkeypatch.setenv("TCODEC_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match=r"model taco-official-2 is not installed: looked for .*"
                                                 r"get it with: tcodec models import taco-official-2 PATH \(download it from https:"):
        tcodec.encode(card, "taco", 2, options={"model": "taco-official"})


def test_the_packaged_model_is_trained_and_needs_no_download(card_png, tmp_path, monkeypatch):
    monkeypatch.setenv("TCODEC_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("TCODEC_MODELS", raising=False)
    files = {q: tmp_path / f"q{q}.tcz" for q in (1, 8)}
    for q, out in files.items():
        result = run_cli("encode", card_png, "-m", "taco", "-q", q, "-o", out, "--caption", "a colourful test card")
        assert result.returncode == 0, result.stderr
        assert run_cli("decode", out).returncode == 0
    card = Image.open(card_png).convert("RGB")
    quality = {q: psnr(card, Image.open(out.with_suffix(".png"))) for q, out in files.items()}
    assert files[1].stat().st_size < files[8].stat().st_size
    assert quality[8] > quality[1] > 17  # untrained weights of this architecture give 5 dB


def test_cli_round_trip(models_env, card_png, tmp_path):
    out = tmp_path / "card.tcz"
    result = run_cli("encode", card_png, "-m", "taco", "-q", "2", "-O", f"model={models_env}", "-o", out,
                     "--caption", "a card", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    decoded = run_cli("decode", out, "-o", tmp_path / "back.png")
    assert decoded.returncode == 0, decoded.stderr


def test_decoding_order_in_a_batch_does_not_matter(models_env, card):
    options = {"model": str(models_env)}
    first = tcodec.encode(card, "taco", 1.5, options=options)
    second = tcodec.encode(card.rotate(180), "taco", 3.5, caption="upside down", options=options)
    forward = [tcodec.decode(first).tobytes(), tcodec.decode(second).tobytes()]
    backward = [tcodec.decode(second).tobytes(), tcodec.decode(first).tobytes()]
    assert forward == backward[::-1]


def _repacked(data: bytes, **change) -> bytes:
    from tcodec.format.container import Container, pack

    fields = {**unpack(data).__dict__, **change}
    fields.pop("layout")
    return pack(Container(**fields))


def test_headers_a_taco_decoder_cannot_honour_are_format_errors(models_env, card):
    from tcodec.errors import FormatError

    data = tcodec.encode(card, "taco", 2, options={"model": str(models_env)})
    for change, message in [({"width": 16385, "height": 16000}, "up to 64 tiles of 2048x2048"),
                            ({"streams": unpack(data).streams * 2}, "holds 1 range-coded stream"),
                            ({"entropy_coder": "constriction-ans"}, "holds 1 range-coded stream"),
                            ({"model_hash": None}, "carries no model hash"),
                            ({"quality": 7}, "outside 1..4")]:
        with pytest.raises(FormatError, match=message):
            tcodec.decode(_repacked(data, **change), limits=tcodec.Limits(max_pixels=1 << 28))


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiling as for a large photo, scaled down: 64x64 tiles above 4096 pixels."""
    from tcodec.backends import taco

    monkeypatch.setattr(taco, "WHOLE_PIXELS", 64 * 64)
    monkeypatch.setattr(taco, "TILE", 64)
    return taco


def test_a_large_image_is_coded_in_independent_tiles(models_env, small_tiles):
    from tcodec.sample import sample_image

    image = sample_image(160, 100)
    options = {"model": str(models_env)}
    data = tcodec.encode(image, "taco", 2, caption="a card", options=options)
    boxes = small_tiles.tiles_of(160, 100)
    assert boxes[:4] == [(0, 0, 64, 64), (64, 0, 128, 64), (128, 0, 160, 64), (0, 64, 64, 100)]
    assert len(unpack(data).streams) == len(boxes) == 6
    decoded = tcodec.decode(data)
    assert decoded.size == image.size
    for box, stream in zip(boxes, unpack(data).streams):  # each tile is the crop coded on its own
        alone = tcodec.encode(image.crop(box), "taco", 2, caption="a card", options=options)
        assert unpack(alone).streams == (stream,)
        assert tcodec.decode(alone).tobytes() == decoded.crop(box).tobytes()


def test_tiled_files_are_checked_and_searched(models_env, small_tiles, monkeypatch):
    from tcodec.errors import FormatError
    from tcodec.sample import sample_image

    image = sample_image(160, 100)
    options = {"model": str(models_env)}
    data = tcodec.encode(image, "taco", 2, options=options)
    with pytest.raises(FormatError, match="160x100 taco file holds 6 range-coded stream"):
        tcodec.decode(_repacked(data, streams=unpack(data).streams[:5]))
    budget = len(data) + 40
    searched = tcodec.encode(image, "taco", max_bytes=budget, options=options)
    assert len(searched) <= budget and len(unpack(searched).streams) == 6
    monkeypatch.setattr(small_tiles, "MAX_TILES", 5)
    with pytest.raises(InputError, match="up to 5 tiles of 64x64 pixels; 160x100 needs 6"):
        tcodec.encode(image, "taco", 2, options=options)


def test_explicit_model_must_match_the_file(models_env, card, tmp_path):
    other = tmp_path / "other"
    save_model(tiny_model(seed=2), other, "all-minilm-l6-v2")
    data = tcodec.encode(card, "taco", 2, options={"model": str(models_env)})
    with pytest.raises(ModelMismatchError, match=f"encoded with model {unpack(data).model_hash.hex()}"):
        tcodec.decode(data, options={"model": str(other)})
    assert tcodec.decode(data, options={"model": str(models_env)}).size == card.size


def test_a_stale_models_path_entry_is_skipped(models_env, card, monkeypatch, tmp_path):
    data = tcodec.encode(card, "taco", 2, options={"model": str(models_env)})
    monkeypatch.setenv("TCODEC_MODELS", os.pathsep.join([str(tmp_path / "gone"), str(models_env)]))
    assert tcodec.decode(data).size == card.size


def test_max_bytes_searches_fractional_qualities(models_env, card):
    options = {"model": str(models_env)}
    top = TINY.rates
    low, high = (len(tcodec.encode(card, "taco", q, options=options)) for q in (1, top))
    budget = (low + high) // 2
    data = tcodec.encode(card, "taco", max_bytes=budget, options=options)
    quality = unpack(data).quality
    assert len(data) <= budget and 1 < quality < top
    assert data == tcodec.encode(card, "taco", quality, options=options)  # search reuses no stale state
    assert len(tcodec.encode(card, "taco", round(quality + 0.01, 2), options=options)) > budget
    assert tcodec.decode(data).size == card.size


def test_official_family_searches_whole_checkpoints(card, tmp_path, monkeypatch):
    monkeypatch.setenv("TCODEC_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="taco-official-6"):  # tries the top checkpoint first
        tcodec.encode(card, "taco", max_bytes=10_000, options={"model": "taco-official"})


def test_an_empty_stream_is_refused_before_torch_is_imported(models_env, card, tmp_path):
    from tcodec.format.container import Container, pack

    header = unpack(tcodec.encode(card, "taco", 2, options={"model": str(models_env)}))
    path = tmp_path / "empty.tcz"
    path.write_bytes(pack(Container("taco", 2, 4096, 4096, "RGB", (b"",), "constriction-range", header.model_hash)))
    script = ("import sys, tcodec\ntry:\n    tcodec.decode(sys.argv[1])\nexcept tcodec.FormatError as error:\n"
              "    print(error)\nprint('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120)
    assert result.stdout.splitlines() == [
        "taco stream 0 is 0 bytes, not a whole number of 32-bit words (at least one); the file is corrupt", "False"]


def test_a_stream_too_short_for_the_claimed_size_is_refused_before_decoding(models_env, card, monkeypatch):
    from tcodec.errors import FormatError
    from tcodec.models.taco import TacoModel

    data = tcodec.encode(card, "taco", 1, options={"model": str(models_env)})
    calls = []
    monkeypatch.setattr(TacoModel, "decompress", lambda self, *args, **kwargs: calls.append(args))
    with pytest.raises(FormatError, match="too short for the image the header claims"):
        tcodec.decode(_repacked(data, width=4096, height=4096, streams=(b"\0\0\0\1",)))
    assert calls == []


def test_a_stream_that_runs_out_is_refused_where_it_does(models_env, card, monkeypatch):
    """A small image's stream under a header claiming a large one: its words end long
    before the symbols do, and decoding stops there, before the synthesis runs."""
    from tcodec.errors import FormatError
    from tcodec.models.taco import TacoModel

    data = tcodec.encode(card, "taco", 3, options={"model": str(models_env)})
    synthesised = []
    real_synthesis = TacoModel.decompress

    def spy(self, coder, z_size, quality=None):
        hook = self.g_s.register_forward_pre_hook(lambda module, args: synthesised.append(args[0].shape))
        try:
            return real_synthesis(self, coder, z_size, quality)
        finally:
            hook.remove()

    monkeypatch.setattr(TacoModel, "decompress", spy)
    stream = unpack(data).streams[0]
    tall = _repacked(data, width=1024, height=1024, streams=(stream * 40,))
    with pytest.raises(FormatError, match="latent stream (ends before|is corrupt)"):
        tcodec.decode(tall)
    assert synthesised == []
    assert tcodec.decode(data).size == card.size and len(synthesised) == 1


def test_valid_streams_never_trip_the_length_checks(models_env):
    """Flat images cost the fewest bits: the bound must still hold for them."""
    for colour in ("black", "white", (128, 128, 128)):
        for size in ((64, 64), (200, 130)):
            image = Image.new("RGB", size, colour)
            for quality in (1, 4):
                data = tcodec.encode(image, "taco", quality, options={"model": str(models_env)})
                assert tcodec.decode(data).size == size


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(width=st.integers(1, 3000), height=st.integers(1, 3000), words=st.binary(min_size=4, max_size=256))
def test_no_taco_file_under_300_bytes_makes_the_decoder_work_beyond_its_bound(models_env, width, height, words):
    """Whatever a file of B bytes claims, the pixels the decoder works on (tile area fed to
    the synthesis) stay within (8·B + 128) / (1.297 · b_min), the bound formats/tcz.md states."""
    from tcodec.backends.taco import _load
    from tcodec.format.container import Container, pack
    from tcodec.errors import FormatError
    from tcodec.models.coding import cdf_tables

    loaded = _load(str(models_env), torch.device("cpu"))
    stream = words[: len(words) // 4 * 4]
    header = unpack(tcodec.encode(Image.new("RGB", (8, 8)), "taco", 1, options={"model": str(models_env)}))
    data = pack(Container("taco", 1, width, height, "RGB", (stream,), "constriction-range", header.model_hash))
    assert len(data) < 300
    model = loaded.model
    b_min = min(cdf_tables(model.entropy_bottleneck).min_symbol_bits,
                cdf_tables(model.gaussian_conditional).min_symbol_bits)
    per_pixel = model.config.N / 64**2 + sum(model.config.slices) / 16**2
    try:
        tcodec.decode(data)
    except FormatError:
        return
    padded = -(-width // 64) * 64 * -(-height // 64) * 64
    assert padded * per_pixel * b_min <= 8 * len(stream) + 128


@pytest.mark.parametrize("options, message", [
    ({"tune": "ssim"}, r"-O tune=ssim: choose psnr, perceptual, ssimulacra2"),
    ({"tune": "perceptual", "model": "tcodec-taco-v4"}, r"give -O model or -O tune, not both"),
])
def test_a_tune_that_cannot_be_honoured_is_an_input_error(card, options, message):
    with pytest.raises(InputError, match=message):
        tcodec.encode(card, "taco", 3, options=options)


@pytest.mark.parametrize("tune", ["perceptual", "ssimulacra2"])
def test_a_tune_encodes_with_its_model_and_decodes_by_its_hash(card, monkeypatch, tune):
    from tcodec.backends.taco import DEFAULT_MODEL, TUNINGS
    from tcodec.weights import model_folder

    monkeypatch.delenv("TCODEC_MODELS", raising=False)
    tuned = tcodec.encode(card, "taco", 3, caption="a test card", options={"tune": tune})
    psnr_tuned = tcodec.encode(card, "taco", 3, caption="a test card", options={"tune": "psnr"})
    assert unpack(tuned).model_hash == bytes.fromhex(model_hash(model_folder(TUNINGS[tune]))[:16])
    assert psnr_tuned == tcodec.encode(card, "taco", 3, caption="a test card", options={"model": DEFAULT_MODEL})
    assert unpack(tuned).streams != unpack(psnr_tuned).streams  # its own encoder
    assert tcodec.decode(tuned).size == card.size


def test_p2_codes_v4s_stream_and_decodes_it_with_its_own_decoder(card, monkeypatch):
    import numpy as np

    from tcodec.weights import model_folder

    monkeypatch.delenv("TCODEC_MODELS", raising=False)
    p2 = tcodec.encode(card, "taco", 3, caption="a test card", options={"model": "tcodec-taco-p2"})
    v4 = tcodec.encode(card, "taco", 3, caption="a test card", options={"model": "tcodec-taco-v4"})
    assert unpack(p2).model_hash == bytes.fromhex(model_hash(model_folder("tcodec-taco-p2"))[:16])
    assert unpack(p2).streams == unpack(v4).streams
    pixels = [np.asarray(tcodec.decode(data), dtype=np.int16) for data in (p2, v4)]
    assert pixels[0].shape == pixels[1].shape and not np.array_equal(*pixels)


def test_a_refined_file_decodes_with_the_plain_decoder_in_fresh_processes(models_env, card, tmp_path):
    options = {"model": str(models_env)}
    plain = tcodec.encode(card, "taco", 3, options=options)
    refined = tcodec.encode(card, "taco", 3, options={**options, "effort": "1"})
    assert refined != plain

    def header(data):
        info = unpack(data)
        return info.quality, info.width, info.height, info.model_hash, len(info.streams)
    assert header(refined) == header(plain)  # the same format: only the coded latents differ
    assert tcodec.encode(card, "taco", 3, options={**options, "effort": "1"}) == refined
    assert_fresh_processes_decode_the_same(refined, tmp_path / "refined.tcz", models_env)


@pytest.mark.parametrize("options, message", [
    ({"effort": "9"}, r"-O effort=9: choose 0 to 5, or max"),
    ({"effort": "-1"}, r"-O effort=-1: choose 0 to 5, or max"),
    ({"effort": "fast"}, r"-O effort=fast: choose"),
    ({"effort": "1", "tune": "perceptual"}, r"neither models.lock nor its config.json gives one for tcodec-taco-p5"),
    ({"effort": "1", "model": "tcodec-taco-p1"}, r"neither models.lock nor its config.json gives one for tcodec-taco-p1"),
    ({"effort": "1", "model": "taco-official"}, r"not taco-official"),
])
def test_an_effort_that_cannot_be_honoured_is_an_input_error(card, options, message):
    with pytest.raises(InputError, match=message):
        tcodec.encode(card, "taco", 3, options=options)


def test_effort_max_is_the_top_level_and_settings_record_the_level():
    from tcodec.backends.taco import EFFORT_STEPS, TacoBackend

    top = len(EFFORT_STEPS) - 1
    assert TacoBackend().settings({"effort": "max"})["effort"] == top
    assert TacoBackend().settings({"effort": "2"})["effort"] == 2
    assert "effort" not in TacoBackend().settings({})


def test_a_budget_holds_for_the_refined_file(models_env, card):
    options = {"model": str(models_env), "effort": "1"}
    budget = len(tcodec.encode(card, "taco", 2.5, options={"model": str(models_env)}))
    data = tcodec.encode(card, "taco", max_bytes=budget, options=options)
    assert len(data) <= budget


def test_tiles_are_refined_one_by_one(models_env, small_tiles):
    from tcodec.sample import sample_image

    image = sample_image(160, 100)
    options = {"model": str(models_env), "effort": "1"}
    data = tcodec.encode(image, "taco", 2, options=options)
    assert len(unpack(data).streams) == 6
    assert tcodec.decode(data).size == image.size
