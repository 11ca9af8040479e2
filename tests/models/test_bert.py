"""tcodec's BERT forward and tokenisation against transformers', on the shipped MiniLM."""

import pytest

torch = pytest.importorskip("torch")  # the learned backends are an optional extra
transformers = pytest.importorskip("transformers")

from tcodec.models.bert import load_bert, tokenize  # noqa: E402
from tcodec.models.text import MAX_TOKENS, minilm_folder  # noqa: E402

CAPTIONS = ["", "a man riding a wave on top of a surfboard", "word " * 60, "Ünïcode café: “quotes” & emoji 🐕"]


@pytest.fixture(scope="module")
def references():
    folder = minilm_folder()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(folder, local_files_only=True).eval()
    return tokenizer, model


def test_tokens_are_transformers(references):
    tokenizer, _ = references
    expected = tokenizer(CAPTIONS, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
    tokens = tokenize(load_bert(minilm_folder())[0], CAPTIONS, MAX_TOKENS)
    for name, values in tokens.items():
        assert torch.equal(values, expected[name]), name
    assert tokens["attention_mask"][0].sum() == 2 and tokens["attention_mask"][2].sum() == MAX_TOKENS


def test_token_states_are_transformers(references):
    tokenizer, model = references
    expected_tokens = tokenizer(CAPTIONS, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                                return_tensors="pt")
    bert_tokenizer, encoder = load_bert(minilm_folder())
    with torch.no_grad():
        expected = model(**expected_tokens).last_hidden_state
        states = encoder(**tokenize(bert_tokenizer, CAPTIONS, MAX_TOKENS))
    assert torch.allclose(states, expected, rtol=0, atol=1e-5)
