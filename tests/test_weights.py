"""models.lock, the cache, hashes, loading, and official checkpoints."""

import hashlib
import json
from pathlib import Path

import pytest

from tcodec import weights
from tcodec.errors import InputError, ModelError, ModelNotFoundError


def test_lock_lists_every_model_with_source_and_licence():
    entries = weights.read_lock()
    assert {"all-minilm-l6-v2", "clip-vit-base-patch32", "tcodec-taco-v1"} <= set(entries)
    assert {f"taco-official-{i}" for i in range(1, 7)} <= set(entries)
    for entry in entries.values():
        assert entry.source and entry.license and entry.backend in ("taco", "perco", "perco-base", "text", "metric", "captioner")
        assert entry.kind in ("tcodec", "taco-official", "hf-folder", "file", "components")
        for locked in entry.files:
            assert not locked.sha256 or len(locked.sha256) == 64


def test_official_entries_carry_the_official_configuration():
    for i in range(1, 7):
        entry = weights.lock_entry(f"taco-official-{i}")
        assert entry.config["N"] == 192 and entry.config["M"] == 320
        assert entry.config["slices"] == [16, 16, 32, 64, 192] and entry.text_encoder == "clip-vit-base-patch32"


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TCODEC_CACHE", str(tmp_path / "c"))
    assert weights.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("TCODEC_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert weights.cache_dir() == tmp_path / "x" / "tcodec"


def test_unknown_model():
    with pytest.raises(ModelNotFoundError, match="unknown model 'nope'"):
        weights.lock_entry("nope")


def test_fetch_offline_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("TCODEC_CACHE", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(weights.urllib.request, "urlopen", offline)
    with pytest.raises(ModelError, match="could not download .*clip-vit-base-patch32.*on a machine with a network"):
        weights.fetch("clip-vit-base-patch32")
    with pytest.raises(ModelError, match="tcodec models import taco-official-3 PATH"):
        weights.fetch("taco-official-3")


def test_fetched_file_with_a_wrong_hash_is_refused():
    locked = weights.LockedFile("model.safetensors", 10, "0" * 64)
    with pytest.raises(ModelError, match="has sha256 .* models.lock says 0000"):
        weights._check_file(locked, "1" * 64, 10, "m")


@pytest.fixture
def torch():
    return pytest.importorskip("torch")  # the learned-backend extra


def test_save_and_load_round_trip(tiny_folder, torch):
    loaded = weights.load_model(str(tiny_folder))
    assert loaded.hash == weights.model_hash(tiny_folder) and len(loaded.hash8) == 8
    assert json.loads((tiny_folder / "config.json").read_text())["architecture"] == "taco"
    assert loaded.model.h_s.increase[0].weight.dtype == torch.float64  # parameter nets code in float64


def test_hash_covers_the_weights(tiny_folder, tmp_path, torch):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_folder, copy)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(data))
    assert weights.model_hash(copy) != weights.model_hash(tiny_folder)


def test_weights_that_do_not_fit_the_config_are_a_model_error(tiny_folder, tmp_path, torch):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_folder, copy)
    config = json.loads((copy / "config.json").read_text())
    config["taco"]["N"] = 48
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="damaged or does not fit its config"):
        weights.load_model(str(copy))


def test_missing_model_names_the_place_and_the_command(monkeypatch, tmp_path, torch):
    monkeypatch.setenv("TCODEC_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match=rf"model taco-official-1 is not installed: looked for {tmp_path}.*"
                                                 "tcodec models import taco-official-1 PATH"):
        weights.load_model("taco-official-1")


def official_layout(model, old_names: bool, prefix: str) -> dict:
    """A training checkpoint as effl-lab/TACO saves it."""
    state = {}
    for key, value in model.state_dict().items():
        if old_names and key.startswith("entropy_bottleneck."):
            for new, old in (("matrices.", "_matrix"), ("biases.", "_bias"), ("factors.", "_factor")):
                key = key.replace(f"entropy_bottleneck.{new}", f"entropy_bottleneck.{old}")
        state[prefix + key] = value
    return {"epoch": 49, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}, "best_loss": 1.0}


@pytest.mark.parametrize("old_names, prefix", [(True, "module."), (False, "")])
def test_official_checkpoint_in_the_published_layout_loads_strictly(tmp_path, old_names, prefix, torch):
    from tcodec.models.taco import TacoConfig, TacoModel

    config = weights.lock_entry("taco-official-1").config
    torch.manual_seed(0)
    original = TacoModel(TacoConfig.from_dict(config))  # full size, random weights
    path = tmp_path / "lambda_0.0004.pth.tar"
    torch.save(official_layout(original, old_names, prefix), path)
    from tcodec.models import taco_weights

    converted = taco_weights.convert_official(path, config)
    for key, value in original.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key


def import_random_official(name: str, path, old_names: bool, prefix: str, monkeypatch, torch):
    """Save a randomly initialised model of ``name``'s configuration at ``path`` in the
    official layout, and import it into a cache beside it; the installed folder."""
    from tcodec.models.taco import TacoConfig, TacoModel

    monkeypatch.setenv("TCODEC_CACHE", str(path.parent / "cache"))
    config = weights.lock_entry(name).config
    torch.save(official_layout(TacoModel(TacoConfig.from_dict(config)), old_names, prefix), path)
    return weights.import_file(name, path)


def test_import_pins_converts_and_installs(tmp_path, monkeypatch, torch):
    path = tmp_path / "lambda_0.0008.pth.tar"
    folder = import_random_official("taco-official-2", path, True, "module.", monkeypatch, torch)
    assert weights.status("taco-official-2")["installed"]
    assert weights._pins()["taco-official-2"]["lambda_0.0008.pth.tar"] == weights.sha256_file(path)
    assert weights.load_model("taco-official-2").config["source_sha256"] == weights.sha256_file(path)
    assert folder == tmp_path / "cache" / "taco-official-2"
    other = tmp_path / "other.pth.tar"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    other.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="has sha256"):  # pinned: a different file is refused
        weights.import_file("taco-official-2", other)


def test_import_refuses_non_checkpoints(tmp_path, torch):
    bogus = tmp_path / "x.pth.tar"
    bogus.write_bytes(b"not a checkpoint")
    from tcodec.models import taco_weights

    with pytest.raises(ModelError, match="not a loadable checkpoint"):
        taco_weights.convert_official(bogus, weights.lock_entry("taco-official-1").config)
    with pytest.raises(InputError, match="no such file"):
        weights.import_file("taco-official-1", tmp_path / "missing.pth.tar")


def test_fetch_downloads_pins_and_verify_checks(monkeypatch, tmp_path):
    import io

    monkeypatch.setenv("TCODEC_CACHE", str(tmp_path))
    served = {}

    def fake_urlopen(url, timeout):  # stands in for the network, which this machine lacks
        served[url] = f"contents of {url.rsplit('/', 1)[1]}".encode()
        return io.BytesIO(served[url])

    monkeypatch.setattr(weights.urllib.request, "urlopen", fake_urlopen)
    folder = weights.fetch("clip-vit-base-patch32")
    assert len(served) == len(weights.lock_entry("clip-vit-base-patch32").files)
    assert (folder / "merges.txt").read_bytes() == b"contents of merges.txt"
    assert weights.verify("clip-vit-base-patch32") == []
    (folder / "merges.txt").write_bytes(b"tampered")
    assert any("merges.txt" in problem for problem in weights.verify("clip-vit-base-patch32"))


PACKAGED = sorted(name for name, entry in weights.read_lock().items() if entry.source == "package")


def test_the_default_taco_model_ships_in_the_package():
    from tcodec.backends.taco import DEFAULT_MODEL

    assert DEFAULT_MODEL in PACKAGED


@pytest.mark.parametrize("name", PACKAGED)
def test_the_packaged_weights_are_the_ones_models_lock_pins(name):
    entry = weights.lock_entry(name)
    assert {f.path for f in entry.files} == {"config.json", "model.safetensors"}
    assert all(f.size and len(f.sha256) == 64 for f in entry.files)
    assert weights.verify(name) == []


@pytest.mark.parametrize("name", PACKAGED)
def test_each_packaged_model_stays_within_40_mb(name):
    assert sum(f.size for f in weights.lock_entry(name).files) <= 40 * 2**20


def test_the_packaged_models_together_stay_within_56_mb():
    """Old models stay in the package so that old files decode; what a model shares with
    another (v3's transforms are v4's) is stored once (files stored in pieces)."""
    stored = sum(path.stat().st_size for name in PACKAGED for path in weights.model_folder(name).iterdir()
                 if not path.name.startswith("."))
    assert stored <= 56 * 2**20


def _pieces_folders(tmp_path):
    """A model stored whole (base) and one whose weights are stored in pieces: its first
    and last bytes its own, the middle read from the base's file."""
    import json

    whole = b"HEADER" + bytes(range(256)) * 4 + b"TAIL"
    base, packed = tmp_path / "base", tmp_path / "packed"
    for folder in (base, packed):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    (base / "model.safetensors").write_bytes(b"xx" + whole[6:-4] + b"yy")
    (packed / "model.safetensors.own").write_bytes(b"HEADERTAIL")
    pieces = [["", 0, 6], ["base/model.safetensors", 2, len(whole) - 10], ["", 6, 4]]
    (packed / "model.safetensors.pieces.json").write_text(json.dumps(
        {"size": len(whole), "sha256": hashlib.sha256(whole).hexdigest(), "pieces": pieces}))
    return whole, base, packed


def test_a_file_stored_in_pieces_reads_and_hashes_as_the_whole_file(tmp_path):
    whole, _, packed = _pieces_folders(tmp_path)
    assert weights.read_model_file(packed, "model.safetensors") == whole
    assert weights.model_files(packed) == ["config.json", "model.safetensors"]
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "config.json").write_text("{}")
    (reference / "model.safetensors").write_bytes(whole)
    assert weights.model_hash(packed) == weights.model_hash(reference)


def test_own_bytes_stored_xz_compressed_read_and_hash_as_the_whole_file(tmp_path):
    import lzma

    whole, _, packed = _pieces_folders(tmp_path)
    before = weights.model_hash(packed)
    own = packed / "model.safetensors.own"
    (packed / "model.safetensors.own.xz").write_bytes(lzma.compress(own.read_bytes(), format=lzma.FORMAT_XZ))
    own.unlink()
    assert weights.read_model_file(packed, "model.safetensors") == whole
    assert weights.model_files(packed) == ["config.json", "model.safetensors"]
    assert weights.model_hash(packed) == before


@pytest.mark.parametrize("damage", ["truncated", "not xz", "too large"])
def test_damaged_xz_own_bytes_are_refused_with_the_file_named(tmp_path, damage):
    import lzma

    _, _, packed = _pieces_folders(tmp_path)
    own = packed / "model.safetensors.own"
    content = own.read_bytes() + (bytes(10**6) if damage == "too large" else b"")
    stored = lzma.compress(content, format=lzma.FORMAT_XZ)
    stored = {"truncated": stored[:len(stored) // 2], "not xz": b"plain bytes"}.get(damage, stored)
    (packed / "model.safetensors.own.xz").write_bytes(stored)
    own.unlink()
    with pytest.raises(ModelError, match=r"cannot be read \(.*model.safetensors.own.xz"):
        weights.read_model_file(packed, "model.safetensors")


def _difference_folders(tmp_path):
    """A base stored whole and a model whose middle is a difference from the base's:
    each 16-bit word of the model's middle is the base's plus the own word, modulo 2**16."""
    import struct

    middle = bytes(range(256)) * 4
    base_middle = bytes((b * 7 + 3) % 256 for b in middle)
    words = [(a - b) % 65536 for a, b in zip(struct.unpack("<512H", middle), struct.unpack("<512H", base_middle))]
    whole = b"HEADER" + middle + b"TAIL"
    base, packed = tmp_path / "base", tmp_path / "packed"
    for folder in (base, packed):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    (base / "model.safetensors").write_bytes(b"xx" + base_middle)
    (packed / "model.safetensors.own").write_bytes(b"HEADERTAIL" + struct.pack("<512H", *words))
    pieces = [["", 0, 6], ["", 10, len(middle), "base/model.safetensors", 2], ["", 6, 4]]
    (packed / "model.safetensors.pieces.json").write_text(json.dumps(
        {"size": len(whole), "sha256": hashlib.sha256(whole).hexdigest(), "pieces": pieces}))
    return whole, base, packed


def test_a_difference_piece_adds_its_words_to_the_bases(tmp_path):
    whole, _, packed = _difference_folders(tmp_path)
    assert weights.read_model_file(packed, "model.safetensors") == whole
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "config.json").write_text("{}")
    (reference / "model.safetensors").write_bytes(whole)
    assert weights.model_hash(packed) == weights.model_hash(reference)


def test_a_changed_base_of_a_difference_is_refused_not_misread(tmp_path):
    _, base, packed = _difference_folders(tmp_path)
    data = bytearray((base / "model.safetensors").read_bytes())
    data[100] ^= 1
    (base / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="pieces of .*base/model.safetensors, .* no longer make the file"):
        weights.read_model_file(packed, "model.safetensors")
    (base / "model.safetensors").write_bytes(bytes(data[:500]))  # too short for the piece
    with pytest.raises(ModelError, match="no longer make the file"):
        weights.read_model_file(packed, "model.safetensors")


@pytest.mark.parametrize("entry", [["", 10, 1023, "base/model.safetensors", 2], ["", 10, 1024, "", 2],
                                   ["", 10, 1024, "base/model.safetensors"], ["", 10, 1024, "base/x", "2"]])
def test_a_malformed_difference_piece_is_refused_before_reading(tmp_path, entry):
    _, _, packed = _difference_folders(tmp_path)
    recipe = packed / "model.safetensors.pieces.json"
    raw = json.loads(recipe.read_text())
    raw["pieces"][1] = entry
    raw["size"] = sum(piece[2] for piece in raw["pieces"])
    recipe.write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="not a valid list of pieces"):
        weights.read_model_file(packed, "model.safetensors")


def test_the_pack_tool_stores_a_fine_tuned_tensor_as_its_difference(tmp_path):
    """tools/pack_model.py: a tensor equal to the base's is read from it, one of the same
    name and size with other values is stored as a difference, and the rest as own bytes;
    the pieces make the file again."""
    import importlib.util

    torch = pytest.importorskip("torch")
    from safetensors.torch import save

    spec = importlib.util.spec_from_file_location("pack_model", Path(__file__).parents[1] / "tools" / "pack_model.py")
    pack_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pack_model)
    generator = torch.Generator().manual_seed(0)
    shared, tuned = torch.randn(64, 64, generator=generator), torch.randn(64, 64, generator=generator)
    base = save({"shared": shared, "tuned": tuned.half()})
    data = save({"shared": shared, "tuned": (tuned + 1e-3).half(), "new": torch.ones(8)})
    pieces, own = pack_model.pieces_of(data, "base", base, differences=True)
    assert sorted(len(piece) for piece in pieces if piece[0]) == [3]  # "shared", read from the base
    assert [piece[2] for piece in pieces if len(piece) == 5] == [64 * 64 * 2]  # "tuned"
    for folder, files in (("base", {"model.safetensors": base}),
                          ("packed", {"model.safetensors.own": own, "model.safetensors.pieces.json": json.dumps(
                              {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pieces": pieces})})):
        (tmp_path / folder).mkdir()
        for name, content in files.items():
            (tmp_path / folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    assert weights.read_model_file(tmp_path / "packed", "model.safetensors") == data


def test_a_changed_shared_file_is_refused_not_misread(tmp_path):
    _, base, packed = _pieces_folders(tmp_path)
    data = bytearray((base / "model.safetensors").read_bytes())
    data[10] ^= 1
    (base / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="no longer make the file .* reinstall tcodec"):
        weights.read_model_file(packed, "model.safetensors")
    with pytest.raises(ModelError, match="no longer make the file"):
        weights.model_hash(packed)  # the hash cache notices the base changed, too


def test_a_missing_shared_file_is_named(tmp_path):
    _, base, packed = _pieces_folders(tmp_path)
    (base / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"cannot be read \(.*base/model.safetensors"):
        weights.read_model_file(packed, "model.safetensors")


def test_a_file_both_whole_and_in_pieces_is_refused_not_hashed_another_way(tmp_path):
    whole, _, packed = _pieces_folders(tmp_path)
    (packed / "model.safetensors").write_bytes(whole)
    with pytest.raises(ModelError, match="both"):
        weights.model_hash(packed)
    with pytest.raises(ModelError, match="both model.safetensors and model.safetensors.pieces.json"):
        weights.read_model_file(packed, "model.safetensors")


@pytest.mark.parametrize("change", [{"size": 10**12}, {"size": -1}, {"pieces": [["", 0, 1.5]]},
                                    {"pieces": [["base/model.safetensors", 0, 10**6]] * 4}])
def test_a_pieces_list_that_does_not_add_up_is_refused_before_reading(tmp_path, change):
    _, _, packed = _pieces_folders(tmp_path)
    recipe = packed / "model.safetensors.pieces.json"
    recipe.write_text(json.dumps({**json.loads(recipe.read_text()), **change}))
    with pytest.raises(ModelError, match="not a valid list of pieces"):
        weights.read_model_file(packed, "model.safetensors")


def test_a_damaged_model_does_not_hold_up_finding_another(tmp_path, monkeypatch):
    """status() reports a damaged model instead of raising, so models list/verify and the
    search for a file's model still work for the others."""
    _, base, packed = _pieces_folders(tmp_path)
    (base / "model.safetensors").write_bytes(b"changed")
    monkeypatch.setattr(weights, "model_folder", lambda name: packed)
    monkeypatch.setattr(weights, "lock_entry", lambda name: weights.LockEntry(
        name, "taco", "tcodec", "package", "", (weights.LockedFile("config.json"), weights.LockedFile("model.safetensors"))))
    state = weights.status("packed")
    assert state["installed"] and state["hash"] is None and "no longer make the file" in state["problem"]


@pytest.mark.parametrize("source", ["../base/model.safetensors", "base/../x", ".hidden/model.safetensors", "base"])
def test_a_piece_outside_a_sibling_model_folder_is_refused(tmp_path, source):
    _, _, packed = _pieces_folders(tmp_path)
    recipe = packed / "model.safetensors.pieces.json"
    listed = json.loads(recipe.read_text())
    listed["pieces"][1][0] = source
    recipe.write_text(json.dumps(listed))
    with pytest.raises(ModelError, match="not a valid list of pieces"):
        weights.read_model_file(packed, "model.safetensors")


def test_save_model_half_stores_float16_parameters_and_float32_tables(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    from tests.models.tiny import tiny_model

    from tcodec.models import taco_weights

    model = tiny_model()
    taco_weights.save_model(model, tmp_path, "all-minilm-l6-v2", half=True)
    state = load_file(tmp_path / "model.safetensors")
    parameters = {name for name, _ in model.named_parameters()}
    assert all(state[name].dtype == torch.float16 for name in parameters)
    assert state["gaussian_conditional.scale_table"].dtype == torch.float32
    assert state["entropy_bottleneck._quantized_cdf"].dtype == torch.int32
    loaded = weights.load_model(str(tmp_path))  # float16 files load into the float32 model
    assert loaded.model.g_a.parameters().__next__().dtype == torch.float32


# --- a model of several components, as PerCo's (diffusers folders) will be ----------------


def write_two_component_model(folder, seed: int = 0) -> dict[str, bytes]:
    """A small random model of two components (encoder/, decoder/), each with its config
    and safetensors weights, and a top-level config.json naming its architecture."""
    import numpy as np
    from safetensors.numpy import save

    random = np.random.default_rng(seed)
    files = {"config.json": json.dumps({"architecture": "pair", "components": ["encoder", "decoder"]}).encode()}
    for component, shape in (("encoder", (4, 3)), ("decoder", (3, 4))):
        files[f"{component}/config.json"] = json.dumps({"shape": shape}).encode()
        files[f"{component}/model.safetensors"] = save({"weight": random.standard_normal(shape).astype(np.float32)})
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    return files


def manifest_hash(files: dict[str, bytes]) -> str:
    import hashlib

    lines = "".join(f"{hashlib.sha256(files[path]).hexdigest()}  {path}\n" for path in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


@pytest.fixture
def two_component(tmp_path, monkeypatch):
    """models.lock with one more entry: the two-component model, served from a file:// folder;
    one file without a sha256 (pinned when first fetched or imported)."""
    import hashlib

    source = tmp_path / "published"
    files = write_two_component_model(source)
    locked = tuple(weights.LockedFile(path, len(data), "" if path == "decoder/config.json"
                                      else hashlib.sha256(data).hexdigest()) for path, data in files.items())
    entry = weights.LockEntry("pair-test", "pair", "tcodec", source.as_uri(), "CC0", locked)
    lock = {**weights.read_lock(), entry.name: entry}
    monkeypatch.setattr(weights, "read_lock", lambda: lock)
    monkeypatch.setenv("TCODEC_CACHE", str(tmp_path / "cache"))
    return source, files


def test_a_model_of_several_components_is_hashed_over_its_manifest(tmp_path):
    files = write_two_component_model(tmp_path / "m")
    (tmp_path / "m" / ".model-hash.json").write_text("{}")  # hidden files are not the model's
    assert weights.model_files(tmp_path / "m") == sorted(files)
    assert weights.model_hash(tmp_path / "m") == manifest_hash(files)
    (tmp_path / "m" / "decoder" / "model.safetensors").write_bytes(files["decoder/model.safetensors"][:-1] + b"?")
    assert weights.model_hash(tmp_path / "m") != manifest_hash(files)


def test_fetch_verify_and_status_of_a_model_of_several_components(two_component):
    source, files = two_component
    folder = weights.fetch("pair-test")
    assert {path: (folder / path).read_bytes() for path in files} == files
    assert weights.verify("pair-test") == []
    assert weights.status("pair-test") == {"installed": True, "folder": folder, "hash": manifest_hash(files)}
    assert "decoder/config.json" in weights._pins()["pair-test"]
    (folder / "decoder" / "config.json").write_bytes(b"{}")
    assert ["decoder/config.json of pair-test has sha256 " in p and "it was pinned as" in p
            for p in weights.verify("pair-test")] == [True]


def test_import_of_a_downloaded_folder_of_several_components(two_component, tmp_path):
    source, files = two_component
    folder = weights.import_file("pair-test", source)
    assert weights.status("pair-test")["hash"] == manifest_hash(files)
    assert weights.verify("pair-test") == []
    tampered = tmp_path / "tampered"
    write_two_component_model(tampered, seed=1)
    with pytest.raises(ModelError, match="encoder/model.safetensors of pair-test has sha256"):
        weights.import_file("pair-test", tampered)
    assert (folder / "encoder" / "model.safetensors").read_bytes() == files["encoder/model.safetensors"]
    with pytest.raises(InputError, match="not a folder"):
        weights.import_file("pair-test", source / "config.json")


def test_a_model_of_several_components_loads_through_its_architecture(two_component, monkeypatch):
    import sys
    import types

    from safetensors.numpy import load_file

    source, files = two_component
    architecture = types.ModuleType("pair_architecture")

    class Pair:
        def __init__(self, parts):
            self.parts = parts

        def to(self, device):
            return self

    architecture.load = lambda folder, config: Pair({c: load_file(folder / c / "model.safetensors")["weight"]
                                                     for c in config["components"]})
    monkeypatch.setitem(sys.modules, "pair_architecture", architecture)
    monkeypatch.setitem(weights.ARCHITECTURES, "pair", "pair_architecture")
    weights.fetch("pair-test")
    loaded = weights.load_model("pair-test")
    assert loaded.hash == manifest_hash(files)
    assert loaded.model.parts["encoder"].shape == (4, 3) and loaded.model.parts["decoder"].shape == (3, 4)
    assert weights.find_model(loaded.hash8, "pair") == loaded.folder


def test_the_models_commands_handle_several_components(two_component):
    from typer.testing import CliRunner

    from tcodec.cli import app

    source, files = two_component
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0 and "pair-test" in listed.output and "not installed" in listed.output
    fetched = runner.invoke(app, ["models", "fetch", "pair-test"])
    assert fetched.exit_code == 0, fetched.output
    listed = runner.invoke(app, ["models", "list"])
    assert f"hash {manifest_hash(files)[:16]}" in listed.output
    verified = runner.invoke(app, ["models", "verify", "pair-test"])
    assert verified.exit_code == 0 and "pair-test: ok" in verified.output


def test_an_unreadable_pins_file_is_a_model_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TCODEC_CACHE", str(tmp_path))
    (tmp_path / "pins.json").write_text("{not json")
    with pytest.raises(ModelError, match="pins.json is unreadable"):
        weights._pins()


def test_unknown_architecture_is_a_model_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "nope"}))
    with pytest.raises(ModelError, match="unknown architecture 'nope'"):
        weights.load_model(str(tmp_path))


def test_a_model_card_beside_the_weights_does_not_change_the_model(tiny_folder, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_folder, copy)
    (copy / "MODEL_CARD.md").write_text("how it was trained")
    (copy / "LICENSE").write_text("terms")
    assert weights.model_files(copy) == ["config.json", "model.safetensors"]
    assert weights.model_hash(copy) == weights.model_hash(tiny_folder)


def test_special_files_in_a_model_folder_never_hang_the_hash(tiny_folder, tmp_path):
    import os
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_folder, copy)
    (copy / ".model-hash.json").unlink(missing_ok=True)
    os.mkfifo(copy / ".model-hash.json")  # the hash cache's name
    os.mkfifo(copy / "extra.bin")
    assert weights.model_files(copy) == ["config.json", "model.safetensors"]
    assert weights.model_hash(copy) == weights.model_hash(tiny_folder)
    with pytest.raises(ModelError, match="not a regular file"):
        weights.model_hash(copy, ["config.json", "extra.bin"])


def test_a_download_larger_than_models_lock_says_is_refused_and_leaves_nothing(two_component):
    source, files = two_component
    (source / "encoder" / "model.safetensors").write_bytes(files["encoder/model.safetensors"] + bytes(1000))
    with pytest.raises(ModelError, match="encoder/model.safetensors of pair-test is larger than"):
        weights.fetch("pair-test")
    folder = weights.model_folder("pair-test")
    assert not (folder / "encoder" / "model.safetensors").exists()
    assert not [p for p in folder.rglob("*") if p.name.startswith(".") and p.is_file()]  # no temporary file


def test_an_imported_checkpoint_is_verified_by_its_pinned_model_hash(tmp_path, monkeypatch, torch):
    path = tmp_path / "renamed-by-the-user.pth.tar"
    folder = import_random_official("taco-official-3", path, False, "", monkeypatch, torch)
    assert weights.verify("taco-official-3") == []
    assert "source_file" not in json.loads((folder / "config.json").read_text())  # the name is not the model's
    stored = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**stored, "text_encoder": "other"}))
    assert ["it was pinned as" in problem for problem in weights.verify("taco-official-3")] == [True]


# --- a model of components downloaded by hand (PerCo's), on a base model ------------------

COMPONENT_FILES = {"hyper_enc/config.json": b'{"cfg_ss": 8, "cfg_cs": 256}',
                   "hyper_enc/diffusion_pytorch_model.safetensors": b"hyper-encoder weights",
                   "unet/config.json": b'{"in_channels": 4}',
                   "unet/diffusion_pytorch_model.safetensors": b"U-Net weights"}
BASE_FILES = {"vae/config.json": b'{"latent_channels": 4}', "vae/diffusion_pytorch_model.safetensors": b"VAE weights",
              "tokenizer/vocab.json": b'{"a": 0}'}
DRIVE = "https://drive.example.invalid/drive/folders/abc"


def write_files(folder, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)


def hash_with_base(own: dict[str, bytes], base: dict[str, bytes], base_name: str = "base-test") -> str:
    """The model-version hash of a model with a base, from its definition (weights.model_hash)."""
    return hashlib.sha256(f"{manifest_hash(own)}  .\n{manifest_hash(base)}  {base_name}\n".encode()).hexdigest()


@pytest.fixture
def components(tmp_path, monkeypatch):
    """models.lock with two more entries: a base (hf-folder, installed in the test's cache)
    and a `components` model of it (no sha256 known: pinned on import), downloaded by hand
    into a folder that also holds files the model does not list."""
    monkeypatch.setenv("TCODEC_CACHE", str(tmp_path / "cache"))
    base = weights.LockEntry("base-test", "perco-base", "hf-folder", "https://example.invalid/base", "CC0",
                             tuple(weights.LockedFile(p, len(d), hashlib.sha256(d).hexdigest())
                                   for p, d in BASE_FILES.items()))
    entry = weights.LockEntry("perco-test", "perco", weights.COMPONENTS_KIND, DRIVE, "CC0",
                              tuple(weights.LockedFile(p) for p in COMPONENT_FILES),
                              config={"architecture": "perco", "base": "base-test"})
    lock = {**weights.read_lock(), base.name: base, entry.name: entry}
    monkeypatch.setattr(weights, "read_lock", lambda: lock)
    write_files(tmp_path / "cache" / "base-test", BASE_FILES)
    downloaded = tmp_path / "downloaded"
    write_files(downloaded, {**COMPONENT_FILES, "optimizer.bin": b"not the model's", "unet/extra.txt": b"x"})
    return downloaded


def test_a_components_model_is_not_fetched_but_says_how_to_import_it(components, monkeypatch, capsys):
    from tests.perco_fixtures import run_main

    listed = ", ".join(COMPONENT_FILES)
    with pytest.raises(ModelError, match=rf"perco-test cannot be downloaded automatically from {DRIVE}; download "
                                         rf"{listed} there, then: tcodec models import perco-test PATH"):
        weights.fetch("perco-test")
    code, out, err = run_main(monkeypatch, capsys, "models", "fetch", "perco-test")
    assert (code, out, err.count("\n")) == (4, "", 1) and "tcodec models import perco-test PATH" in err
    assert not weights.status("perco-test")["installed"]
    with pytest.raises(ModelNotFoundError, match=rf"model perco-test is not installed: .*get it with: tcodec models "
                                                 rf"import perco-test PATH \(download it from {DRIVE}\)"):
        weights.load_model("perco-test")


def test_models_import_copies_pins_and_configures_a_components_folder(components, tmp_path, monkeypatch, capsys):
    from tests.perco_fixtures import run_main

    code, out, err = run_main(monkeypatch, capsys, "models", "import", "perco-test", components)
    assert code == 0, err
    folder = tmp_path / "cache" / "perco-test"
    expected = hash_with_base(COMPONENT_FILES, BASE_FILES)
    assert out == f"perco-test: installed in {folder}, model hash {expected[:16]}\n"
    assert weights.model_files(folder) == sorted(["config.json", *COMPONENT_FILES])  # the listed files only
    assert {p: (folder / p).read_bytes() for p in COMPONENT_FILES} == COMPONENT_FILES
    assert json.loads((folder / "config.json").read_text()) == {"architecture": "perco", "base": "base-test"}
    assert weights._pins()["perco-test"] == {p: hashlib.sha256(d).hexdigest() for p, d in COMPONENT_FILES.items()}
    assert weights.status("perco-test") == {"installed": True, "folder": folder, "hash": expected}
    assert weights.verify("perco-test") == []
    code, out, _ = run_main(monkeypatch, capsys, "models", "list")
    assert any(line.startswith("perco-test ") and f"hash {expected[:16]}" in line for line in out.splitlines())
    tampered = tmp_path / "tampered"
    write_files(tampered, {**COMPONENT_FILES, "unet/diffusion_pytorch_model.safetensors": b"other U-Net"})
    with pytest.raises(ModelError, match="unet/diffusion_pytorch_model.safetensors of perco-test has sha256 .* "
                                         "it was pinned as"):
        weights.import_file("perco-test", tampered)


def test_a_components_folder_without_its_config_is_not_installed(components, tmp_path):
    folder = weights.import_file("perco-test", components)
    (folder / "config.json").unlink()  # an import cut short: the config is written last
    assert weights.status("perco-test")["installed"] is False


def test_the_model_hash_covers_the_base(components, tmp_path):
    folder = weights.import_file("perco-test", components)
    before = weights.status("perco-test")["hash"]
    changed = {**BASE_FILES, "vae/diffusion_pytorch_model.safetensors": b"other VAE weights"}
    write_files(tmp_path / "cache" / "base-test", changed)
    after = weights.model_hash(folder, list(COMPONENT_FILES))
    assert after != before and after == hash_with_base(COMPONENT_FILES, changed)
    assert weights.model_hash(folder, list(COMPONENT_FILES)) != manifest_hash(COMPONENT_FILES)  # not its own alone


def test_without_its_base_a_model_names_the_base_and_how_to_fetch_it(components, tmp_path):
    import shutil

    folder = weights.import_file("perco-test", components)
    shutil.rmtree(tmp_path / "cache" / "base-test")
    message = (rf"takes components from model base-test, which is not installed \(looked in "
               rf"{tmp_path / 'cache' / 'base-test'}\); get it with: tcodec models fetch base-test")
    with pytest.raises(ModelNotFoundError, match=message):
        weights.model_hash(folder)
    state = weights.status("perco-test")
    assert state["installed"] and state["hash"] is None and "tcodec models fetch base-test" in state["problem"]
    pytest.importorskip("torch")  # the perco architecture's loader
    with pytest.raises(ModelError, match=r"model perco-test: PerCo model in .* lacks vae, text_encoder, tokenizer, "
                                         r"scheduler .*get the base with: tcodec models fetch base-test"):
        weights.load_model("perco-test")


def test_importing_a_model_before_its_base_is_not_a_crash(components, tmp_path, monkeypatch, capsys):
    import shutil

    from tests.perco_fixtures import run_main

    shutil.rmtree(tmp_path / "cache" / "base-test")
    code, out, err = run_main(monkeypatch, capsys, "models", "import", "perco-test", components)
    assert code == 0 and "perco-test: installed in" in out and "base-test" in out + err
