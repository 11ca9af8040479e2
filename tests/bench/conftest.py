"""Networks of the metrics' real structures with random weights: their weights cannot be
downloaded here, so tests put these in place of tcodec.bench.networks' loaders (or, for
CLIP, save them where the real loader reads them)."""

import json

import pytest



@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One thread, as the bench runs its metrics: on a busy 2-core machine two threads made
    an Inception forward pass 15 times slower."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def random_lpips():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    pytest.importorskip("lpips")
    from tcodec.bench import networks

    torch.manual_seed(0)
    backbone = torchvision.models.alexnet(weights=None).state_dict()  # the file's layout, classifier included
    return networks.build_lpips(backbone, networks.read_state_dict(networks.lpips_linear_file()))


@pytest.fixture(scope="session")
def random_inception():
    torch = pytest.importorskip("torch")
    pytest.importorskip("pytorch_fid")
    from tcodec.bench import networks

    torch.manual_seed(0)
    network = networks.build_inception()
    for module in network.modules():  # He init keeps ReLU activations at the real network's scale
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return network


def write_tiny_clip(folder, image_size: int, patch_size: int, seed: int = 0) -> None:
    """A small CLIP (the real classes, a few narrow layers) saved as its Hugging Face folder
    is, with a letters-only tokenizer: every file models.lock lists for CLIP."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab[letter] = len(vocab)
        vocab[letter + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    tokenizer.save_pretrained(folder)
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
         "pad_token": "<|endoftext|>"}))
    narrow = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = transformers.CLIPConfig(
        text_config={**narrow, "vocab_size": len(vocab), "max_position_embeddings": 77, "bos_token_id": 0,
                     "eos_token_id": 1, "pad_token_id": 1},
        vision_config={**narrow, "image_size": image_size, "patch_size": patch_size}, projection_dim=16)
    torch.manual_seed(seed)
    transformers.CLIPModel(config).save_pretrained(folder)


@pytest.fixture(scope="session")
def clip_cache(tmp_path_factory):
    """A tcodec cache holding tiny random CLIPs under both CLIP names."""
    cache = tmp_path_factory.mktemp("cache")
    write_tiny_clip(cache / "clip-vit-base-patch32", image_size=32, patch_size=8, seed=0)
    write_tiny_clip(cache / "clip-vit-large-patch14-336", image_size=48, patch_size=8, seed=1)
    return cache


@pytest.fixture
def clip_installed(clip_cache, monkeypatch):
    """TCODEC_CACHE is the tiny CLIPs' cache; the loaders' per-process caches are cleared."""
    from tcodec.bench import networks

    monkeypatch.setenv("TCODEC_CACHE", str(clip_cache))
    networks.clip_model.cache_clear()
    networks.clip_vision.cache_clear()
    yield clip_cache
    networks.clip_model.cache_clear()
    networks.clip_vision.cache_clear()
