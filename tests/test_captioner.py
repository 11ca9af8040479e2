"""tcodec.captioner and ``encode --caption auto``: a tiny random BLIP-2 (transformers' real
classes, a few narrow layers) saved in the layout of the Hub folder models.lock lists, and
installed where the weights manager looks for it."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from tcodec import captioner, weights
from tcodec.errors import ModelError, ModelNotFoundError
from tcodec.images import load_image

from tests.conftest import run_cli

NAME = captioner.DEFAULT_CAPTIONER
SPECIALS = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}  # OPT's; "</s>" starts and ends its text
QUERIES = 8  # the tiny model's Q-Former queries (BLIP-2 has 32)


def byte_level_char(byte: int) -> str:
    """The character GPT-2's byte-level BPE writes for a byte (its bytes_to_unicode)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    if byte in printable:
        return chr(byte)
    return chr(256 + [b for b in range(256) if b not in printable].index(byte))


def write_tiny_blip2(folder, seed: int = 0, names_image_token: bool = False) -> None:
    """Every file models.lock lists for the captioner, as the Hub folder has them: the model
    in two safetensors shards, an OPT tokenizer (GPT-2 byte-level BPE: vocab.json,
    merges.txt) of letters and space-letters, the BLIP image processor at 32x32 pixels.
    ``names_image_token``: the config names the <image> token's id (the processor adds it
    to the tokenizer) as configs do since transformers put the image queries in the token
    sequence; else it is a config from before."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    folder.mkdir(parents=True, exist_ok=True)
    space = byte_level_char(ord(" "))
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {**SPECIALS, space: len(SPECIALS)}
    for letter in letters:
        vocab[letter] = len(vocab)
    for letter in letters:
        vocab[space + letter] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{space} {letter}\n" for letter in letters))
    tokens = {"bos_token": "</s>", "eos_token": "</s>", "unk_token": "</s>", "pad_token": "<pad>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(tokens))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {**tokens, "tokenizer_class": "GPT2Tokenizer", "add_bos_token": True, "add_prefix_space": False,
         "errors": "replace"}))
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "BlipImageProcessor", "processor_class": "Blip2Processor", "do_convert_rgb": True,
         "do_resize": True, "size": {"height": 32, "width": 32}, "resample": 3, "do_rescale": True,
         "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
         "image_std": [0.26862954, 0.26130258, 0.27577711]}))
    narrow = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = transformers.Blip2Config(
        vision_config={**narrow, "image_size": 32, "patch_size": 8},
        qformer_config={**narrow, "encoder_hidden_size": 32, "vocab_size": 64},
        # one more token than the vocabulary: <image>, which the processor adds
        text_config={"model_type": "opt", "hidden_size": 32, "ffn_dim": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "word_embed_proj_dim": 32, "vocab_size": len(vocab) + 1,
                     "max_position_embeddings": 64, "bos_token_id": 2, "eos_token_id": 2, "pad_token_id": 1},
        num_query_tokens=QUERIES, image_token_index=len(vocab) if names_image_token else None)
    torch.manual_seed(seed)
    model = transformers.Blip2ForConditionalGeneration(config)
    with torch.no_grad():
        # OPT's last layer norm gives states of mean 0 plus its bias: with a bias of ones,
        # every special token's and <image>'s logit is -32 (their rows, tied to the input
        # embeddings, are -1), so the captions are letters and run to the length limit
        model.language_model.model.decoder.final_layer_norm.bias.fill_(1)
        unwritten = [*SPECIALS.values(), len(vocab)]
        model.language_model.get_input_embeddings().weight[unwritten] = -1
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    model.save_pretrained(folder, max_shard_size=int(size * 0.6))  # two shards, as the real model's
    (folder / "generation_config.json").unlink(missing_ok=True)  # not listed: greedy whatever it says
    listed = {f.path for f in weights.lock_entry(NAME).files}
    assert {p.name for p in folder.iterdir()} == listed


@pytest.fixture(scope="session")
def blip2_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    write_tiny_blip2(cache / NAME)
    return cache


@pytest.fixture
def use_cache(monkeypatch):
    """Point TCODEC_CACHE (this process and the CLI's) at a folder; one captioner per test."""
    def use(cache):
        monkeypatch.setenv("TCODEC_CACHE", str(cache))
        captioner.get_captioner.cache_clear()
        return cache

    yield use
    captioner.get_captioner.cache_clear()


@pytest.fixture
def installed(blip2_cache, use_cache):
    return use_cache(blip2_cache)


@pytest.fixture
def generations(monkeypatch):
    """The token ids each BLIP-2 generate call returned."""
    transformers = pytest.importorskip("transformers")
    generate = transformers.Blip2ForConditionalGeneration.generate
    seen = []

    def recorded(self, *args, **kwargs):
        seen.append(generate(self, *args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(transformers.Blip2ForConditionalGeneration, "generate", recorded)
    return seen


def test_importing_the_captioner_imports_no_torch():
    script = "import sys, tcodec.captioner\nprint(' '.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert not {"torch", "transformers"} & set(loaded)


def test_a_caption_is_the_greedy_decoding_of_at_most_32_tokens(installed, card, generations):
    transformers = pytest.importorskip("transformers")

    text = captioner.caption(card, device="cpu")
    assert isinstance(text, str) and text
    tokenizer = transformers.AutoTokenizer.from_pretrained(installed / NAME, local_files_only=True)
    [ids] = generations[0].tolist()
    # what the language model wrote: not the image queries' <image> (past the vocabulary) nor "</s>"
    words = [i for i in ids if i < len(tokenizer) and i not in tokenizer.all_special_ids]
    # the random model never says "</s>": the limit is what ends the caption
    assert len(words) == captioner.MAX_NEW_TOKENS
    assert text == tokenizer.decode(words, skip_special_tokens=True).strip()


def test_the_same_image_gets_the_same_caption(installed, card):
    first = captioner.caption(card, device="cpu")
    assert captioner.caption(card, device="cpu") == first
    captioner.get_captioner.cache_clear()  # loaded again from its files
    assert captioner.caption(card, device="cpu") == first
    others = [card.convert("L"), card.rotate(90), card.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    assert {captioner.caption(image, device="cpu") for image in others} - {first}  # it does look at the pixels


def test_a_config_naming_the_image_token_captions_alike(tmp_path, use_cache, card, installed):
    before = captioner.caption(card, device="cpu")
    write_tiny_blip2(tmp_path / NAME, names_image_token=True)
    use_cache(tmp_path)
    assert captioner.caption(card, device="cpu") == before


def test_encode_caption_auto_uses_the_generated_caption(installed, tmp_path, card):
    photos = tmp_path / "photos"
    photos.mkdir()
    card.save(photos / "card.png")
    card.rotate(90).save(photos / "door.png")
    (tmp_path / "captions.jsonl").write_text(json.dumps({"file": "door.png", "caption": "a red door"}) + "\n")
    expected = captioner.caption(load_image(photos / "card.png").image)  # what the command reads and codes

    result = run_cli("encode", photos, "-o", tmp_path / "out", "-m", "jpeg", "--caption", "auto",
                     "--captions", tmp_path / "captions.jsonl", "--store-caption")
    assert result.returncode == 0, result.stderr
    assert f'tcodec: info: {photos / "card.png"}: caption "{expected}"' in result.stderr.decode().splitlines()
    assert "door.png: caption" not in result.stderr.decode()  # the file captions it: nothing generated
    info = run_cli("info", "--json", tmp_path / "out" / "card.tcz", tmp_path / "out" / "door.tcz")
    assert [json.loads(line)["caption"] for line in info.stdout.decode().splitlines()] == [expected, "a red door"]


def test_missing_weights_fail_before_any_image_is_read(tmp_path, use_cache):
    cache = use_cache(tmp_path / "empty-cache")
    result = run_cli("encode", tmp_path / "no-such-image.png", "-m", "jpeg", "--caption", "auto")
    lines = result.stderr.decode().splitlines()
    assert result.returncode == ModelNotFoundError.exit_code == 4 and len(lines) == 1
    assert lines[0] == (
        f"tcodec: error: captioner {NAME} is not installed: looked for {cache / NAME / 'config.json'} and 8 more "
        "of its files; pass a caption (--caption/--captions/--sidecar-captions) or get the captioner with: "
        f"tcodec models fetch {NAME}")
    # without --caption auto the same command stops at the image instead
    assert run_cli("encode", tmp_path / "no-such-image.png", "-m", "jpeg").returncode == 2


def test_the_word_auto_as_a_caption_comes_from_a_captions_file(tmp_path, use_cache, card_png):
    use_cache(tmp_path / "empty-cache")  # no captioner needed
    (tmp_path / "captions.jsonl").write_text(json.dumps({"file": "card.png", "caption": "auto"}) + "\n")
    result = run_cli("encode", card_png, "-m", "jpeg", "--captions", tmp_path / "captions.jsonl")
    assert result.returncode == 0, result.stderr
    info = run_cli("info", "--json", card_png.with_suffix(".tcz"))
    assert json.loads(info.stdout)["caption"] == "auto"


@pytest.mark.parametrize("layout", ["pickles only", "pickles under the safetensors names"])
def test_pickled_weights_are_refused_unread(tmp_path, use_cache, card, monkeypatch, layout):
    torch = pytest.importorskip("torch")
    folder = tmp_path / NAME
    write_tiny_blip2(folder)
    from safetensors.torch import load_file

    state = {}
    for shard in sorted(folder.glob("*.safetensors")):
        state.update(load_file(shard))
        shard.unlink()
    if layout == "pickles only":
        (folder / "model.safetensors.index.json").unlink()
        torch.save(state, folder / "pytorch_model.bin")
    else:
        for index in (1, 2):
            torch.save(state, folder / f"model-0000{index}-of-00002.safetensors")
    unpickled = []
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: unpickled.append(args))
    use_cache(tmp_path)
    with pytest.raises(ModelError) as refused:
        captioner.caption(card, device="cpu")
    message = str(refused.value)
    assert "\n" not in message and f"tcodec models fetch {NAME}" in message
    if layout == "pickles only":
        assert isinstance(refused.value, ModelNotFoundError) and "model.safetensors.index.json" in message
    assert not unpickled
