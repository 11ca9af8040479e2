"""The perco backend: working sizes, the payload, and .tcz files made and decoded with a
tiny random PerCo model (the real layout) through the API and the `tcodec` command.

Decoding runs the U-Net at a ~512x512 working size whatever the image's, so decodes here
take one DDIM step (``-O steps=1``), mostly without guidance, and share one file."""

import dataclasses
import json
import math
import os
import subprocess
import sys
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

torch = pytest.importorskip("torch")  # the learned backends are an optional extra
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import tcodec  # noqa: E402
from tcodec.backends import perco  # noqa: E402
from tcodec.backends.perco import (  # noqa: E402
    DEFAULT_SEED,
    RATE_SETTINGS,
    Sampling,
    default_sampling,
    grid_shape,
    pack_payload,
    unpack_payload,
    working_size,
)
from tcodec.coding import captions  # noqa: E402
from tcodec.coding.entropy import encode_uniform  # noqa: E402
from tcodec.errors import FormatError, ModelMismatchError, TcodecWarning  # noqa: E402
from tcodec.format.container import pack, unpack  # noqa: E402
from tcodec.sample import sample_image  # noqa: E402
from tcodec.weights import model_hash  # noqa: E402
from tests.perco_fixtures import isolate, run_main, tiny_perco  # noqa: E402

CAPTION = "a red barn with a pond in the background"
FAST = {"steps": "1", "guidance": "0"}  # one DDIM step, no classifier-free guidance: the cheapest decode
Q1 = RATE_SETTINGS[0]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No installed models (an empty cache, no TCODEC_MODELS) unless a test adds them."""
    return isolate(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_perco(tmp_path_factory)


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    return tiny_perco(tmp_path_factory, seed=1)


@pytest.fixture(scope="module")
def barn(model, tmp_path_factory):
    """A 768x512 image, its file at quality 1 (default sampling settings), the warnings that
    encode gave, and the file decoded with FAST."""
    image = sample_image(768, 512)
    png = tmp_path_factory.mktemp("barn") / "barn.png"
    image.save(png)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = tcodec.encode(image, "perco", 1, caption=CAPTION, device="cpu", options={"model": str(model)})
    decoded = decode(data, model)
    return {"image": image, "png": png, "data": data, "warnings": caught, "decoded": decoded}


def decode(data: bytes, model, **options) -> Image.Image:
    return tcodec.decode(data, device="cpu", options={"model": str(model), **FAST, **options})


def stream_of(data: bytes) -> bytes:
    (stream,) = unpack(data).streams
    return stream


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value >> 7 else 0))
        value >>= 7
        if not value:
            return bytes(out)


# --- working size, grid, rate settings -------------------------------------------------------


@pytest.mark.parametrize("size, expected", [
    ((768, 512), (640, 448)), ((512, 512), (512, 512)), ((1, 1), (512, 512)), ((65535, 1), (4096, 64)),
    ((1, 65535), (64, 4096)), ((100, 37), (832, 320)), ((1920, 1080), (704, 384)), ((4000, 3000), (576, 448)),
    ((256, 256), (512, 512)), ((64, 4096), (64, 4096)),
])
def test_working_size(size, expected):
    assert working_size(*size) == expected


@settings(max_examples=300)
@given(st.integers(1, 65535), st.integers(1, 65535))
def test_working_size_keeps_the_aspect_within_rounding_at_about_512_squared(width, height):
    scale = 512 / math.sqrt(width * height)
    for side, ideal in zip(working_size(width, height), (width * scale, height * scale)):
        assert side % 64 == 0 and 64 <= side <= 4096
        if 32 <= ideal <= 4096:  # not clamped: the nearest multiple of 64
            assert abs(side - ideal) <= 32
        else:
            assert side == (64 if ideal < 32 else 4096)
    if 1 / 4 <= width / height <= 4:  # both sides within 1/8 of their ideal: the area near 512²
        w, h = working_size(width, height)
        assert (7 / 8) ** 2 <= w * h / 512**2 <= (9 / 8) ** 2


@pytest.mark.parametrize("quality, expected", [(1, (7, 10)), (3, (14, 20)), (4, (28, 40)), (7, (56, 80))])
def test_grid_shape(quality, expected):
    assert grid_shape(768, 512, RATE_SETTINGS[quality - 1]) == expected


@settings(max_examples=100)
@given(st.integers(1, 65535), st.integers(1, 65535), st.sampled_from(RATE_SETTINGS))
def test_every_grid_divides_the_working_size(width, height, setting):
    rows, columns = grid_shape(width, height, setting)
    assert (columns * setting.cell, rows * setting.cell) == working_size(width, height)


def test_rate_settings_are_perco_sds():
    assert [(s.grid, s.codebook) for s in RATE_SETTINGS] == [(8, 256), (8, 1024), (16, 1024), (32, 256),
                                                            (32, 8196), (64, 64), (64, 256)]
    for setting in RATE_SETTINGS:  # the nominal rate at 512x512
        assert abs(setting.grid**2 * math.log2(setting.codebook) / 512**2 - setting.bpp) < 1e-4
    assert [s.default_steps for s in RATE_SETTINGS] == [20, 20, 20, 20, 5, 5, 5]
    assert perco.RELEASED_MODELS == {1: "perco-sd-0.0019", 4: "perco-sd-0.0313", 7: "perco-sd-0.1250"}


# --- the payload -------------------------------------------------------------------------


@st.composite
def payloads(draw):
    setting = draw(st.sampled_from(RATE_SETTINGS))
    default = default_sampling(setting)
    sampling = Sampling(
        draw(st.one_of(st.just(default.steps), st.integers(1, 250))),
        draw(st.one_of(st.just(default.guidance), st.integers(0, 0xFFFF).map(lambda k: k / 100))),
        draw(st.one_of(st.just(default.seed), st.integers(0, 2**64 - 1))),
    )
    indices = draw(st.lists(st.integers(0, setting.codebook - 1), max_size=300))
    return sampling, setting, indices


@settings(max_examples=200)
@given(payloads())
def test_payload_round_trip(payload):
    sampling, setting, indices = payload
    stream = pack_payload(sampling, setting, indices)
    assert unpack_payload(stream, setting, len(indices)) == (sampling, indices)
    default = default_sampling(setting)
    flags = (sampling.seed != default.seed) | (sampling.steps != default.steps) << 1 \
        | (sampling.guidance != default.guidance) << 2
    fields = (varint(sampling.seed) if flags & 1 else b"") + (bytes([sampling.steps]) if flags & 2 else b"") \
        + (round(sampling.guidance * 100).to_bytes(2, "little") if flags & 4 else b"")
    assert stream == bytes([flags]) + fields + encode_uniform(indices, setting.codebook)


def test_default_settings_are_one_zero_byte_before_the_indices():
    indices = [5, 255, 0, 17] * 10
    assert pack_payload(default_sampling(Q1), Q1, indices) == b"\x00" + encode_uniform(indices, 256)
    assert default_sampling(Q1) == Sampling(20, 3.0, DEFAULT_SEED)


INDICES = encode_uniform(list(range(70)), 256)


@pytest.mark.parametrize("stream, message", [
    (b"", "the perco stream is empty"),
    (b"\x08" + INDICES, "unknown perco flags 0x08"),
    (b"\x81" + INDICES, "unknown perco flags 0x81"),
    (b"\x01", "seed is truncated"),
    (b"\x01\x80", "seed is truncated"),
    (b"\x01" + b"\xff" * 10 + b"\x01", "seed is truncated or not a valid 64-bit varint"),  # 11 bytes: overlong
    (b"\x01" + b"\xff" * 9 + b"\x02", "not a valid 64-bit varint"),  # 10 bytes, but above 2^64 - 1
    (b"\x01\x85\x00" + INDICES, "not a valid 64-bit varint"),  # 5 in two bytes: not minimal
    (b"\x01\x80\x80\x00" + INDICES, "not a valid 64-bit varint"),
    (b"\x02", "step count is missing or out of range"),
    (b"\x02\x00" + INDICES, "step count is missing or out of range"),
    (b"\x02\xfb" + INDICES, "step count is missing or out of range"),  # 251
    (b"\x04", "ends inside its guidance scale"),
    (b"\x04\x2c", "ends inside its guidance scale"),
    (b"\x07\x05\x01\x2c", "ends inside its guidance scale"),
    (b"\x00" + INDICES + b"\x00", "bytes its indices do not account for"),
    (b"\x00" + INDICES + b"\x01", "corrupt"),
    (b"\x00" + INDICES[:-1] + bytes([INDICES[-1] ^ 0x40]) + b"\x12", "corrupt"),
])
def test_every_malformed_stream_is_a_format_error(stream, message):
    with pytest.raises(FormatError, match=message):
        unpack_payload(stream, Q1, 70)


def test_the_largest_seed_and_boundary_settings_are_read_back():
    for sampling in (Sampling(1, 0.0, 2**64 - 1), Sampling(250, 655.35, 0), Sampling(20, 3.01, DEFAULT_SEED + 1)):
        stream = pack_payload(sampling, Q1, [1, 2, 3])
        assert unpack_payload(stream, Q1, 3) == (sampling, [1, 2, 3])
    assert pack_payload(Sampling(20, 3.0, 2**64 - 1), Q1, [])[:11] == b"\x01" + b"\xff" * 9 + b"\x01"


# --- files through the API -------------------------------------------------------------


def test_round_trip_through_the_api(barn, model):
    info = tcodec.read_info(barn["data"])
    assert (info.backend, info.quality, info.width, info.height, info.mode) == ("perco", 1, 768, 512, "RGB")
    assert info.entropy_coder == "constriction-range"
    assert info.model_hash.hex() == model_hash(model)[:16]
    assert info.caption == CAPTION  # stored without being asked: the decoder needs it
    assert barn["decoded"].size == (768, 512) and barn["decoded"].mode == "RGB"
    assert not [w for w in barn["warnings"] if issubclass(w.category, TcodecWarning)]  # 42 tokens: no warning


def test_a_byte_budget_searches_the_qualities_that_have_a_model(barn, model):
    from tcodec.errors import InputError, ModelNotFoundError

    size = len(barn["data"])
    budgeted = tcodec.encode(barn["image"], "perco", caption=CAPTION, device="cpu", max_bytes=size,
                             options={"model": str(model)})
    assert budgeted == barn["data"]  # the model's one quality fits
    with pytest.raises(InputError, match="budget|smallest"):
        tcodec.encode(barn["image"], "perco", caption=CAPTION, device="cpu", max_bytes=size - 1,
                      options={"model": str(model)})
    with pytest.raises(ModelNotFoundError, match="perco-sd-0.0019 is not installed"):  # none installed
        tcodec.encode(barn["image"], "perco", caption=CAPTION, device="cpu", max_bytes=10_000)


def test_grayscale_is_coded_from_its_rgb_and_comes_back_grayscale(barn, model):
    gray = barn["image"].convert("L")
    data = tcodec.encode(gray, "perco", 1, caption=CAPTION, device="cpu", options={"model": str(model)})
    info = tcodec.read_info(data)
    assert (info.mode, info.width, info.height) == ("L", 768, 512)
    assert stream_of(data) != stream_of(barn["data"])  # other pixels, other indices
    rgb = tcodec.encode(gray.convert("RGB"), "perco", 1, caption=CAPTION, device="cpu", options={"model": str(model)})
    assert stream_of(data) == stream_of(rgb)  # the encoder sees it as RGB


def test_the_file_is_header_caption_one_flag_byte_and_70_index_bytes(barn, model, monkeypatch, capsys):
    _, coded = captions.encode(CAPTION)
    header = 3 + 1 + 1 + 1 + 2 + len(varint(767)) + len(varint(511)) + 1 + 1 + 8  # magic ... model hash
    caption = 1 + len(varint(len(coded))) + len(coded)
    framing = 1 + 1 + 4  # stream count, stream length, CRC-32
    rows, columns = grid_shape(768, 512, Q1)
    assert (header, rows * columns * math.log2(Q1.codebook) / 8) == (22, 70)
    assert len(barn["data"]) == header + caption + 1 + 70 + framing
    stream = stream_of(barn["data"])
    assert stream[0] == 0  # default sampling settings: nothing stored but the flags byte
    code, out, err = run_main(monkeypatch, capsys, "info", "--json", _saved(barn))
    assert code == 0, err
    fields = json.loads(out)
    assert fields["size_bytes"] == len(barn["data"])
    assert fields["size_bytes"] == (fields["header_bytes"] + fields["caption_bytes"] + sum(fields["stream_bytes"])
                                    + fields["framing_bytes"])
    assert (fields["header_bytes"], fields["caption_bytes"], fields["stream_bytes"], fields["framing_bytes"]) \
        == (header, caption, [71], framing)
    assert fields["caption"] == CAPTION and fields["backend"] == "perco"
    # what the payload holds, read without a model or torch
    assert {k: fields[k] for k in ("working_size", "grid", "codebook", "steps", "guidance", "seed")} == {
        "working_size": "640x448", "grid": "7x10", "codebook": 256, "steps": 20, "guidance": 3.0,
        "seed": DEFAULT_SEED}


def test_info_refuses_a_perco_file_whose_payload_is_corrupt(barn, tmp_path, monkeypatch, capsys):
    container = unpack(barn["data"])
    bad = tmp_path / "bad.tcz"
    bad.write_bytes(pack(dataclasses.replace(container, streams=(b"\x80" + container.streams[0][1:],))))
    code, _, err = run_main(monkeypatch, capsys, "info", bad)
    assert (code, err.count("\n")) == (3, 1) and "unknown perco flags" in err


def _saved(barn) -> str:
    path = barn["png"].with_suffix(".tcz")
    path.write_bytes(barn["data"])
    return str(path)


def test_the_same_file_decodes_to_the_same_pixels_twice(barn, model):
    assert decode(barn["data"], model).tobytes() == barn["decoded"].tobytes()


@pytest.fixture(scope="module")
def fresh(barn, model, tmp_path_factory):
    """New processes, one with 1 torch thread and one with 2, each encoding the barn image
    and decoding the barn file (FAST): {threads: (file bytes, pixels)}."""
    tcz = barn["png"].with_suffix(".fresh.tcz")
    tcz.write_bytes(barn["data"])
    script = ("import sys, torch, tcodec\n"
              "torch.set_num_threads(int(sys.argv[1]))\n"
              "assert torch.get_num_threads() == int(sys.argv[1])\n"
              "png, tcz, model, caption = sys.argv[2:6]\n"
              "data = tcodec.encode(png, 'perco', 1, caption=caption, device='cpu', options={'model': model})\n"
              "pixels = tcodec.decode(tcz, device='cpu', options={'model': model, 'steps': '1', 'guidance': '0'})\n"
              "sys.stdout.buffer.write(len(data).to_bytes(4, 'little') + data + pixels.tobytes())\n")
    env = {**os.environ, "TCODEC_CACHE": str(tmp_path_factory.mktemp("empty-cache"))}
    env.pop("TCODEC_MODELS", None)
    runs = {threads: subprocess.Popen([sys.executable, "-c", script, str(threads), str(barn["png"]), str(tcz),
                                       str(model), CAPTION], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            for threads in (1, 2)}  # side by side: two cores, half the wait
    results = {}
    for threads, run in runs.items():
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err.decode()[-2000:]
        size = int.from_bytes(out[:4], "little")
        results[threads] = out[4:4 + size], out[4 + size:]
    return results


def test_fresh_processes_encode_the_same_bytes_with_1_or_2_threads(barn, fresh):
    for threads, (data, _) in fresh.items():
        assert data == barn["data"], f"{threads} thread(s): other indices"


def test_fresh_processes_decode_nearly_the_same_pixels_with_1_or_2_threads(barn, fresh):
    """The decoder keeps oneDNN's float32 convolutions (the encoder does not), whose sums
    depend on the thread count in the last bits: a pixel may round the other way, no more."""
    import numpy as np

    reference = np.frombuffer(barn["decoded"].tobytes(), dtype=np.uint8).astype(np.int16)
    for threads, (_, pixels) in fresh.items():
        difference = np.abs(np.frombuffer(pixels, dtype=np.uint8).astype(np.int16) - reference)
        assert difference.max() <= 2 and (difference > 0).mean() < 1e-3, f"{threads} thread(s)"


def test_a_folder_converts_with_two_jobs_in_a_fresh_process(model, tmp_path):
    """-j 2 runs two threads in one process: the first use of diffusers' and transformers'
    classes, and the model's components, must load once and safely from both."""
    source, coded, back = tmp_path / "in", tmp_path / "coded", tmp_path / "back"
    (source / "sub").mkdir(parents=True)
    sample_image(96, 64).save(source / "a.png")
    sample_image(40, 90).convert("L").save(source / "sub" / "b.png")
    for image in ("a", "sub/b"):
        (source / f"{image}.txt").write_text(f"caption of {image}")
    env = {**os.environ, "TCODEC_CACHE": str(tmp_path / "cache")}
    env.pop("TCODEC_MODELS", None)
    for command in (["encode", source, "-o", coded, "-m", "perco", "--sidecar-captions"],
                    ["decode", coded, "-o", back, "-O", "steps=1"]):
        done = subprocess.run([sys.executable, "-m", "tcodec", *map(str, command), "-O", f"model={model}",
                               "-j", "2", "--device", "cpu"], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    for image, size, mode in (("a", (96, 64), "RGB"), ("sub/b", (40, 90), "L")):
        decoded = Image.open(back / f"{image}.png")
        assert (decoded.size, decoded.mode) == (size, mode)
        assert tcodec.read_info(coded / f"{image}.tcz").caption == f"caption of {image}"
        alone = tcodec.decode(coded / f"{image}.tcz", device="cpu", options={"model": str(model), "steps": "1"})
        assert decoded.tobytes() == alone.tobytes()


def test_sampling_settings_are_stored_used_and_overridable(barn, model):
    data = tcodec.encode(barn["image"], "perco", 1, caption=CAPTION, device="cpu",
                         options={"model": str(model), "seed": "5", "steps": "1", "guidance": "2.5"})
    stream, plain = stream_of(data), stream_of(barn["data"])
    assert stream[:5] == bytes([0x07, 5, 1]) + (250).to_bytes(2, "little")  # seed varint, steps, guidance
    assert stream[5:] == plain[1:]  # the same indices
    stored = tcodec.decode(data, device="cpu", options={"model": str(model)})  # the file's settings
    assert stored.tobytes() == decode(barn["data"], model, seed="5", guidance="2.5").tobytes()
    # each setting overridden at decode: back to the plain file's pixels
    assert decode(data, model, seed=str(DEFAULT_SEED)).tobytes() == barn["decoded"].tobytes()
    # and each one matters
    other_seed = decode(barn["data"], model, seed="5")
    assert other_seed.tobytes() != barn["decoded"].tobytes()
    assert other_seed.tobytes() != stored.tobytes()  # guidance 2.5 against none
    # (the steps: the file's 1 is used, else it would decode with the default 20, not as the plain file with
    # -O steps=1; and every decode here overrides the plain file's 20)


def test_a_caption_longer_than_the_text_encoder_reads_warns_and_is_kept_whole(model):
    caption = " ".join(["a barn"] * 50)  # 250 characters, 252 tokens of the tiny tokenizer
    with pytest.warns(TcodecWarning, match="the caption is 252 tokens; the text encoder reads the first 77 "
                                           r"\(the file keeps it whole\)"):
        data = tcodec.encode(sample_image(64, 64), "perco", 1, caption=caption, device="cpu",
                             options={"model": str(model)})
    assert tcodec.read_info(data).caption == caption


def test_a_file_of_another_model_is_a_mismatch(barn, other_model):
    with pytest.raises(ModelMismatchError, match=f"encoded with model {model_hash_of(barn)}, but "
                                                 f"{other_model.name} is {model_hash(other_model)[:16]}"):
        decode(barn["data"], other_model)


def model_hash_of(barn) -> str:
    return unpack(barn["data"]).model_hash.hex()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_encodes_the_same_indices_as_the_cpu(barn, model):
    data = tcodec.encode(barn["image"], "perco", 1, caption=CAPTION, device="cuda", options={"model": str(model)})
    assert data == barn["data"]
    decoded = tcodec.decode(data, device="cuda", options={"model": str(model), **FAST})
    assert decoded.size == (768, 512) and decoded.mode == "RGB"


# --- the command -------------------------------------------------------------------------


def test_cli_round_trip_grayscale_odd_size_with_a_stored_seed_found_by_hash(model, tmp_path, monkeypatch, capsys):
    png, tcz, out = tmp_path / "odd.png", tmp_path / "odd.tcz", tmp_path / "odd-decoded.png"
    sample_image(100, 37).convert("L").save(png)
    code, _, err = run_main(monkeypatch, capsys, "encode", png, "-m", "perco", "-q", "1", "-O", f"model={model}",
                            "-O", "seed=300", "--caption", "a wide card", "--device", "cpu", "-o", tcz)
    assert code == 0, err
    assert stream_of(tcz.read_bytes())[:3] == b"\x01" + varint(300)  # only the seed stored, two bytes
    info = tcodec.read_info(tcz)
    assert (info.caption, info.mode, info.width, info.height) == ("a wide card", "L", 100, 37)
    monkeypatch.setenv("TCODEC_MODELS", str(model))  # the model is found by the file's hash
    code, _, err = run_main(monkeypatch, capsys, "decode", tcz, "-O", "steps=1", "-O", "guidance=0",
                            "--device", "cpu", "-o", out)
    assert code == 0, err
    with Image.open(out) as decoded:
        assert decoded.size == (100, 37) and decoded.mode == "L"


def test_cli_keeps_the_caption_and_refuses_not_to(barn, model, tmp_path, monkeypatch, capsys):
    small = tmp_path / "small.png"
    sample_image(64, 64).save(small)
    common = ("encode", small, "-m", "perco", "-O", f"model={model}", "--caption", "kept", "--device", "cpu")
    code, _, err = run_main(monkeypatch, capsys, *common, "-o", tmp_path / "kept.tcz")  # no --store-caption
    assert code == 0, err
    assert tcodec.read_info(tmp_path / "kept.tcz").caption == "kept"
    code, _, err = run_main(monkeypatch, capsys, *common, "--no-store-caption", "-o", tmp_path / "no.tcz")
    assert code == 2 and err.count("\n") == 1 and "perco always stores the caption: its decoder needs it" in err
    assert not (tmp_path / "no.tcz").exists()


BAD_OPTIONS = ["steps=0", "steps=251", "steps=x", "steps=1.5", "steps=", "steps=\u00b2", "guidance=-1",
               "guidance=1.234", "guidance=nan", "guidance=inf", "guidance=655.36", "guidance=lots",
               "seed=-1", f"seed={2**64}", "seed=", "seed=0x10", "seed=\u00b9", "colour=red"]


@pytest.mark.parametrize("option", BAD_OPTIONS)
def test_bad_option_values_at_encode_are_one_line_exit_2(model, tmp_path, monkeypatch, capsys, option):
    png = tmp_path / "i.png"
    sample_image(16, 16).save(png)
    code, _, err = run_main(monkeypatch, capsys, "encode", png, "-m", "perco", "-O", f"model={model}",
                            "-O", option, "--caption", "x", "-o", tmp_path / "i.tcz")
    assert (code, err.count("\n")) == (2, 1), err
    assert err.startswith("tcodec: error: ")
    assert f"-O {option}: choose" in err or "unknown option 'colour' for perco (known: model, steps, guidance, " \
                                            "seed)" in err


@pytest.mark.parametrize("option", BAD_OPTIONS)
def test_bad_option_values_at_decode_are_one_line_exit_2(barn, model, monkeypatch, capsys, option):
    code, _, err = run_main(monkeypatch, capsys, "decode", _saved(barn), "-O", f"model={model}",
                            "-O", option, "-o", barn["png"].with_suffix(".bad.png"))
    assert (code, err.count("\n")) == (2, 1), err
    assert "-O " + option + ": choose" in err or "unknown option 'colour' for perco" in err


def test_a_quality_the_model_does_not_code_names_the_one_it_does(model, tmp_path, monkeypatch, capsys):
    png = tmp_path / "i.png"
    sample_image(16, 16).save(png)
    code, _, err = run_main(monkeypatch, capsys, "encode", png, "-m", "perco", "-q", "7", "-O", f"model={model}",
                            "--caption", "x", "--device", "cpu", "-o", tmp_path / "i.tcz")
    assert (code, err.count("\n")) == (2, 1), err
    assert f"model {model.name} codes quality 1 (0.0019 bpp: grid 8, 256 codes), not quality 7 " \
           "(0.1250 bpp: grid 64, 256 codes); use -q 1" in err


def test_a_quality_without_a_released_model(tmp_path, monkeypatch, capsys):
    png = tmp_path / "i.png"
    sample_image(16, 16).save(png)
    code, _, err = run_main(monkeypatch, capsys, "encode", png, "-m", "perco", "-q", "2", "--caption", "x",
                            "-o", tmp_path / "i.tcz")
    assert (code, err.count("\n")) == (2, 1), err
    assert "no PerCo (SD) model was released for quality 2 (0.0024 bpp: grid 8, 1024 codes) (released: " \
           "quality 1, quality 4, quality 7); give -O model=FOLDER" in err


def test_the_released_model_not_installed_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    png = tmp_path / "i.png"
    sample_image(16, 16).save(png)
    code, _, err = run_main(monkeypatch, capsys, "encode", png, "-m", "perco", "--caption", "x",
                            "-o", tmp_path / "i.tcz")
    assert (code, err.count("\n")) == (4, 1), err
    assert "perco-sd-0.0019" in err and "tcodec models import perco-sd-0.0019 PATH" in err


def test_no_caption_is_refused(model, tmp_path, monkeypatch, capsys):
    png = tmp_path / "i.png"
    sample_image(16, 16).save(png)
    code, _, err = run_main(monkeypatch, capsys, "encode", png, "-m", "perco", "-O", f"model={model}",
                            "-o", tmp_path / "i.tcz")
    assert (code, err.count("\n")) == (2, 1) and "perco needs a caption: its decoder is conditioned on it" in err
    assert not (tmp_path / "i.tcz").exists()


def test_decoding_with_another_model_is_exit_4(barn, model, other_model, monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "decode", _saved(barn), "-O", f"model={other_model}",
                            "-o", barn["png"].with_suffix(".other.png"))
    assert (code, err.count("\n")) == (4, 1), err
    assert f"this file was encoded with model {model_hash(model)[:16]}, but {other_model.name} is " \
           f"{model_hash(other_model)[:16]}" in err


def test_decoding_without_the_model_installed_names_its_hash(barn, monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "decode", _saved(barn),
                            "-o", barn["png"].with_suffix(".none.png"))
    assert (code, err.count("\n")) == (4, 1), err
    assert f"no installed perco model has hash {model_hash_of(barn)}" in err


def _corrupt(data: bytes, **changes) -> bytes:
    container = unpack(data)
    stream = container.streams[0]
    if "stream" in changes:
        changes["streams"] = (changes.pop("stream")(stream),)
    return pack(dataclasses.replace(container, **changes))


CORRUPTIONS = {
    "junk after the indices": ({"stream": lambda s: s + b"\x00"}, "bytes its indices do not account for"),
    "unknown flags": ({"stream": lambda s: bytes([0x10]) + s[1:]}, "unknown perco flags 0x10"),
    "truncated seed": ({"stream": lambda s: b"\x01\xff"}, "seed is truncated"),
    "steps 0": ({"stream": lambda s: b"\x02\x00" + s[1:]}, "step count is missing or out of range"),
    "empty stream": ({"stream": lambda s: b""}, "the perco stream is empty"),
    "two streams": ({"streams": (b"\x00", b"\x00")}, "a perco file holds one range-coded stream"),
    "fractional quality": ({"quality": 1.5}, "perco quality 1.5 is not one of 1..7"),
    "quality 8": ({"quality": 8}, "perco quality 8 is not one of 1..7"),
    "no model hash": ({"model_hash": None}, "carries no model hash"),
    "no caption": ({"coded_caption": None}, "carries no caption"),
    "the wrong entropy coder": ({"entropy_coder": "constriction-ans"}, "one range-coded stream"),
}


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_a_corrupt_file_is_exit_3_before_any_model_loads(barn, tmp_path, monkeypatch, capsys, name):
    changes, message = CORRUPTIONS[name]
    path = tmp_path / "corrupt.tcz"
    path.write_bytes(_corrupt(barn["data"], **changes))

    def no_model(*args, **kwargs):
        raise AssertionError("a model was looked for")

    monkeypatch.setattr(perco, "_load", no_model)
    monkeypatch.setattr("tcodec.weights.find_model", no_model)
    code, _, err = run_main(monkeypatch, capsys, "decode", path, "-o", tmp_path / "out.png")
    assert (code, err.count("\n")) == (3, 1), err
    assert message in err
    assert not (tmp_path / "out.png").exists()


def test_a_corrupt_file_fails_in_a_fresh_process_without_importing_torch(barn, tmp_path, isolated):
    path = tmp_path / "junk.tcz"
    path.write_bytes(_corrupt(barn["data"], stream=lambda s: s + b"\xff"))
    script = ("import sys, tcodec.cli\n"
              "sys.argv = ['tcodec', 'decode', sys.argv[1], '-o', sys.argv[2]]\n"
              "try:\n    tcodec.cli.main()\nexcept SystemExit as stop:\n"
              "    print(stop.code, 'torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "out.png")],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "TCODEC_CACHE": str(isolated), "TCODEC_MODELS": ""}, check=False)
    assert result.stdout.split() == ["3", "False"], result.stderr
    assert "the file is corrupt" in result.stderr and result.stderr.count("\n") == 1


def _truncate_hyper_encoder_weights(folder):
    weights_file = folder / "hyper_enc" / "diffusion_pytorch_model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:1000])


def _no_rate_setting(folder):
    config = folder / "hyper_enc" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "cfg_cs": 512}))


@pytest.mark.parametrize("damage, message", [
    (_truncate_hyper_encoder_weights, "hyper_enc/diffusion_pytorch_model.safetensors is not a safetensors file"),
    (_no_rate_setting, "has a hyper-encoder of grid 8 and 512 codes, none of PerCo (SD)'s rate settings"),
])
def test_a_damaged_model_is_exit_4(model, tmp_path, monkeypatch, capsys, damage, message):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(model, damaged)
    damage(damaged)
    png = tmp_path / "i.png"
    sample_image(16, 16).save(png)
    code, _, err = run_main(monkeypatch, capsys, "encode", png, "-m", "perco", "-O", f"model={damaged}",
                            "--caption", "x", "--device", "cpu", "-o", tmp_path / "i.tcz")
    assert (code, err.count("\n")) == (4, 1), err
    assert message in err


def test_backends_lists_perco(monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "backends")
    assert code == 0, err
    lines = out.splitlines()
    start = lines.index("perco: quality 1-7 (default 1), caption: decoder")
    listed = [line.split("=")[0].strip() for line in lines[start + 1:start + 5]]
    assert listed == ["-O model", "-O steps", "-O guidance", "-O seed"]
