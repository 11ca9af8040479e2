"""Text encoders: MiniLM from its package, and the CLIP code path with a tiny random CLIP."""

import json

import pytest

torch = pytest.importorskip("torch")  # the learned backends are an optional extra

from tcodec.models.text import MAX_TOKENS, text_encoder  # noqa: E402


def test_minilm_gives_38_token_states_of_width_384():
    encoder = text_encoder("all-minilm-l6-v2")
    states = encoder.encode(["a man riding a wave on top of a surfboard", None, ""])
    assert states.shape == (3, MAX_TOKENS, 384) and states.dtype == torch.float32
    assert torch.equal(states[1], states[2])  # no caption is the empty string, a defined input
    assert not torch.equal(states[0], states[1])
    assert torch.equal(encoder.encode(["a dog"]), encoder.encode(["a dog"]))


def test_clip_path_with_a_tiny_random_clip(tmp_path):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{c: 2 + i for i, c in enumerate(letters)},
             **{c + "</w>": 28 + i for i, c in enumerate(letters)}}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt")).save_pretrained(tmp_path)
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=512, intermediate_size=64, num_hidden_layers=1,
                            num_attention_heads=8, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                            pad_token_id=1)
    torch.manual_seed(0)
    CLIPTextModel(config).save_pretrained(tmp_path)
    states = text_encoder("clip-vit-base-patch32", str(tmp_path)).encode(["a cat", ""])
    assert states.shape == (2, MAX_TOKENS, 512)
    assert not torch.equal(states[0], states[1])


def test_missing_clip_names_the_model_the_folder_and_the_command(tmp_path):
    from tcodec.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match=rf"clip-vit-base-patch32 could not be loaded from {tmp_path}.*"
                                                 "tcodec models fetch clip-vit-base-patch32"):
        text_encoder("clip-vit-base-patch32", str(tmp_path)).encode(["x"])
