"""The metric networks' loaders: weight files checked and read as tensors only, the real
structures built around them (random weights here), CLIP from its Hugging Face folder."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tcodec.bench import networks  # noqa: E402
from tcodec.bench.networks import NetworkUnavailable  # noqa: E402


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TCODEC_CACHE", str(tmp_path))
    return tmp_path


def test_missing_weights_name_the_fetch_command(cache):
    with pytest.raises(NetworkUnavailable, match="inception-v3-fid are not on this machine .*tcodec models fetch "
                                                 "inception-v3-fid"):
        networks.weight_file("inception-v3-fid")


def test_a_file_whose_sha256_does_not_begin_as_its_name_says_is_refused(cache):
    (cache / "lpips-alex").mkdir()
    (cache / "lpips-alex" / "alexnet-owt-7be5be79.pth").write_bytes(b"not torchvision's alexnet")
    with pytest.raises(NetworkUnavailable, match="says it starts with 7be5be79.*tcodec models fetch lpips-alex"):
        networks.weight_file("lpips-alex")


def test_a_file_unlike_its_pin_is_refused(cache):
    (cache / "inception-v3-fid").mkdir()
    path = cache / "inception-v3-fid" / "pt_inception-2015-12-05-6726825d.pth"
    path.write_bytes(b"weights")
    assert networks.weight_file("inception-v3-fid") == path  # nothing pinned yet: accepted
    pins = {"inception-v3-fid": {"pt_inception-2015-12-05-6726825d.pth": "0" * 64}}
    (cache / "pins.json").write_text(json.dumps(pins))
    with pytest.raises(NetworkUnavailable, match="has sha256 .* it was pinned as 0000"):
        networks.weight_file("inception-v3-fid")


class Gadget:
    """Not a tensor: torch.load(weights_only=True) must refuse to rebuild it."""


def test_weights_are_read_as_tensors_only(tmp_path):
    tensors = tmp_path / "tensors.pth"
    torch.save({"w": torch.ones(2)}, tensors)
    assert torch.equal(networks.read_state_dict(tensors)["w"], torch.ones(2))
    pickled = tmp_path / "pickled.pth"
    torch.save({"w": Gadget()}, pickled)
    with pytest.raises(NetworkUnavailable, match="is not a file of tensors"):
        networks.read_state_dict(pickled)
    listed = tmp_path / "list.pth"
    torch.save([torch.ones(2)], listed)
    with pytest.raises(NetworkUnavailable, match="not a state dict"):
        networks.read_state_dict(listed)


def test_lpips_takes_torchvisions_alexnet_layout_and_refuses_others():
    torchvision = pytest.importorskip("torchvision")
    pytest.importorskip("lpips")
    linear = networks.read_state_dict(networks.lpips_linear_file())
    backbone = torchvision.models.alexnet(weights=None).state_dict()
    network = networks.build_lpips(backbone, linear)
    assert torch.equal(getattr(network.net.slice2, "3").weight, backbone["features.3.weight"])
    assert torch.equal(network.lin4.model[1].weight, linear["lin4.model.1.weight"])
    with pytest.raises(NetworkUnavailable, match="do not fit LPIPS"):
        networks.build_lpips({**backbone, "features.3.weight": torch.zeros(1)}, linear)
    with pytest.raises(NetworkUnavailable, match="do not fit LPIPS.*linear layers"):
        networks.build_lpips(backbone, {"lin0.model.1.weight": linear["lin0.model.1.weight"]})


def test_lpips_linear_layers_are_the_wheels_pinned_file():
    pytest.importorskip("lpips")
    from tcodec import weights

    assert weights.verify("lpips-alex-linear") == []
    assert networks.lpips_linear_file().name == "alex.pth"


def test_the_fid_inception_is_pytorch_fids(random_inception, monkeypatch):
    """The same weights give the same features as pytorch-fid's own InceptionV3 (whose
    download is replaced by these weights)."""
    from pytorch_fid import inception

    state = random_inception.state_dict()
    monkeypatch.setattr(inception, "load_state_dict_from_url", lambda *args, **kwargs: state)
    theirs = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    images = np.random.default_rng(0).integers(0, 256, (2, 80, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)[0].flatten(1).double().numpy()
    assert np.allclose(networks.inception_features(random_inception, images), expected, rtol=1e-4, atol=1e-5)
    assert networks.build_inception(state).state_dict().keys() == state.keys()
    with pytest.raises(NetworkUnavailable, match="do not fit the FID Inception-v3"):
        networks.build_inception({k: v for k, v in state.items() if not k.startswith("fc.")})


def test_clip_loads_from_its_folder_and_both_towers_agree(clip_installed):
    model, tokenizer = networks.clip_model()
    image = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    pixels = networks.clip_pixels([image], model.config.vision_config.image_size, square_crop=False)
    embedding = networks.clip_image_embeddings(model, pixels)
    assert embedding.shape == (1, 16) and np.linalg.norm(embedding) == pytest.approx(1)
    text = networks.clip_text_embeddings(model, tokenizer, ["a cat", "x" * 500])  # cut at 77 tokens
    assert text.shape == (2, 16)
    with torch.no_grad():  # transformers' own forward gives the same cosine
        tokens = tokenizer(["a cat"], return_tensors="pt")
        output = model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], pixel_values=pixels)
    cosine = float(output.logits_per_image[0, 0] / model.logit_scale.exp())
    assert float(embedding[0] @ text[0]) == pytest.approx(cosine, abs=1e-5)
    vision = networks.clip_vision("clip-vit-base-patch32")  # the image tower alone, from the whole model
    assert np.allclose(networks.clip_image_embeddings(vision, pixels), embedding, atol=1e-6)


def test_clip_input_is_preprocessed_as_transformers_does():
    transformers = pytest.importorskip("transformers")
    from PIL import Image

    image = np.random.default_rng(2).integers(0, 256, (90, 130, 3), dtype=np.uint8)
    processor = transformers.CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    expected = processor(images=[Image.fromarray(image)], return_tensors="pt")["pixel_values"]
    ours = networks.clip_pixels([image], 64, square_crop=False)
    assert ours.shape == expected.shape == (1, 3, 64, 64)
    assert float((ours - expected).abs().mean()) < 2e-3  # bicubic rounding, a level here and there
    square = networks.clip_pixels([np.full((90, 130, 3), 200, np.uint8)], 48, square_crop=True)
    mean, std = torch.tensor(networks.CLIP_MEAN), torch.tensor(networks.CLIP_STD)
    assert torch.allclose(square[0, :, 0, 0], (200 / 255 - mean) / std, atol=1e-5)


def test_a_missing_clip_folder_is_unavailable_with_the_command(cache):
    networks.clip_model.cache_clear()
    with pytest.raises(NetworkUnavailable, match="tcodec models fetch clip-vit-base-patch32"):
        networks.clip_model()
    networks.clip_model.cache_clear()
