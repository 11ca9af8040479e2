"""The training command on a handful of generated images: runs, checkpoints, resumes, exports."""

import json
import math

import pytest

torch = pytest.importorskip("torch")

from tcodec.training import taco as train  # noqa: E402
from tcodec.errors import InputError  # noqa: E402
from tcodec.sample import sample_image  # noqa: E402
from tcodec.weights import load_model  # noqa: E402

CONFIG = """
text_encoder = "all-minilm-l6-v2"
[model]
N = 32
M = 40
slices = [8, 8, 8, 8, 8]
text_dim = 384
residual_blocks = 1
context_channels = [32, 24]
rates = 4
[train]
data = ["images"]
checkpoint = "run/model.safetensors"
iterations = {iterations}
batch = 2
crop = 64
short_side = [96, 128]
warmup = 2
save_every = 2
log_every = 1
bf16 = false
threads = 1
"""


def write_run(tmp_path, iterations):
    images = tmp_path / "images" / "coco"
    images.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        sample_image(160, 128).rotate(90 * i).save(images / f"{i}.jpg", quality=95)
    (images / "captions.jsonl").write_text(json.dumps({"file": "0.jpg", "captions": ["a test card"]}) + "\n")
    config = tmp_path / "run.toml"
    config.write_text(CONFIG.replace("{iterations}", str(iterations)))
    return config


def train_branch(tmp_path, keys: str):
    """Train run.toml for 2 steps, then a branch of it with ``keys`` for 2 more; the
    weights before and after the branch."""
    from safetensors.torch import load_file

    train.train(tmp_path / "run.toml")
    branch = tmp_path / "branch.toml"
    branch.write_text('base = "run.toml"\n[train]\ncheckpoint = "branch/model.safetensors"\n'
                      'init = "run/model.safetensors"\niterations = 4\n' + keys)
    train.train(branch)
    return load_file(tmp_path / "run" / "model.safetensors"), load_file(tmp_path / "branch" / "model.safetensors")


def test_trains_checkpoints_resumes_and_exports(tmp_path):
    config = write_run(tmp_path, 2)
    train.train(config)
    checkpoint = tmp_path / "run" / "model.safetensors"
    assert json.loads(checkpoint.with_suffix(".json").read_text()) == {"iteration": 2}
    log = checkpoint.with_suffix(".log.csv").read_text().splitlines()
    assert log[0].startswith("iteration,loss,bpp") and len(log) == 3
    write_run(tmp_path, 3)
    train.train(config)  # resumes at 2 and runs one more
    assert json.loads(checkpoint.with_suffix(".json").read_text()) == {"iteration": 3}
    folder = train.export(config, "tiny-trained", tmp_path / "exported")
    loaded = load_model(str(folder))
    assert loaded.config["trained_iterations"] == 3 and loaded.model.config.rates == 4


def test_a_branch_starts_from_init_and_leaves_it_alone(tmp_path):
    config = write_run(tmp_path, 2)
    train.train(config)
    main = tmp_path / "run" / "model.safetensors"
    before = main.read_bytes()
    branch = tmp_path / "branch.toml"
    branch.write_text('base = "run.toml"\n[train]\ncheckpoint = "branch/model.safetensors"\n'
                      'init = "run/model.safetensors"\niterations = 3\nlr = 1e-5\n')
    train.train(branch)
    assert json.loads((tmp_path / "branch" / "model.json").read_text()) == {"iteration": 3}
    assert main.read_bytes() == before
    assert len((tmp_path / "branch" / "model.log.csv").read_text().splitlines()) == 2  # one step: 2 -> 3


def test_a_branch_of_a_branch_inherits_from_both(tmp_path):
    config = write_run(tmp_path, 2)
    (tmp_path / "branch.toml").write_text('base = "run.toml"\n[train]\nlr = 1e-5\nbatch = 4\n')
    (tmp_path / "leaf.toml").write_text('base = "branch.toml"\n[train]\nbatch = 6\n')
    model, _, recipe = train.load_config(tmp_path / "leaf.toml")
    assert (recipe.lr, recipe.batch, recipe.crop, model.rates) == (1e-5, 6, 64, 4)
    assert recipe.checkpoint == str((tmp_path / "run" / "model.safetensors").resolve())
    assert train.load_config(config)[2].batch == 2


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_a_frozen_text_adapter_stays_as_it_was(tmp_path, device):
    from tcodec.models.layers import Extractor, Injector
    from tcodec.models.taco import TacoModel

    config = write_run(tmp_path, 2)
    before, after = train_branch(tmp_path, f'freeze_text_adapter = true\ndevice = "{device}"\n')
    model = TacoModel(train.load_config(config)[0])
    adapter = {f"{name}.{key}" for name, module in model.named_modules() if isinstance(module, (Injector, Extractor))
               for key, _ in module.named_parameters()}
    assert adapter and all(torch.equal(before[key], after[key]) for key in adapter)
    assert not torch.equal(before["h_s.increase.0.weight"], after["h_s.increase.0.weight"])  # the rest trains


def test_refuses_kodak(tmp_path):
    kodak = tmp_path / "kodak"
    kodak.mkdir()
    sample_image(64, 64).save(kodak / "kodim01.png")
    with pytest.raises(InputError, match="refusing to train on Kodak"):
        train.find_images([str(kodak)])


def test_lambda_spans_the_configured_ends():
    import torch

    recipe = train.Recipe(data=[], checkpoint="", iterations=10, lambdas=(0.001, 0.1))
    values = train.lambda_of(torch.tensor([1.0, 4.0, 7.0]), recipe, rates=7)
    assert torch.allclose(values, torch.tensor([0.001, 0.01, 0.1]), rtol=1e-5)


def test_the_ssimulacra2_weight_follows_lambda_by_its_exponent():
    import torch

    lambdas = torch.tensor([0.0003, 0.0012, 0.0932])
    constant = train.Recipe(data=[], checkpoint="", iterations=10, lambdas=(0.0003, 0.0932), ssimulacra2=2.0)
    assert torch.equal(train.ssimulacra2_weight(lambdas, constant), torch.full((3,), 2.0))
    root = train.Recipe(data=[], checkpoint="", iterations=10, lambdas=(0.0003, 0.0932), ssimulacra2=2.0,
                       ssimulacra2_lambda_exponent=0.5)
    weights = train.ssimulacra2_weight(lambdas, root)
    assert weights[2] == pytest.approx(2.0) and weights[1] == pytest.approx(2 * weights[0])


def test_learning_rate_schedule_and_resume_ramp():
    recipe = train.Recipe(data=[], checkpoint="", iterations=1000, lr=1e-3, warmup=100, resume_warmup=10,
                          decay_from=0.8)
    assert train.learning_rate(0, recipe) == pytest.approx(1e-5)
    assert train.learning_rate(500, recipe) == pytest.approx(1e-3)
    assert train.learning_rate(999, recipe) == pytest.approx(1e-4, rel=0.01)
    # resumed late in the decay: ramps up to the scheduled value, never above it
    scheduled = train.learning_rate(950, recipe)
    assert train.learning_rate(950, recipe, started_at=950) == pytest.approx(scheduled / 10)
    assert train.learning_rate(959, recipe, started_at=950) == pytest.approx(train.learning_rate(959, recipe))


def test_a_branch_may_change_the_model_table_too(tmp_path):
    write_run(tmp_path, 2)
    (tmp_path / "branch.toml").write_text('base = "run.toml"\n[model]\nscale_table = [0.11, 64.0, 160]\n'
                                          '[train]\nlr = 1e-5\n')
    model, _, recipe = train.load_config(tmp_path / "branch.toml")
    base_model, _, _ = train.load_config(tmp_path / "run.toml")
    assert model.scale_table == (0.11, 64.0, 160) and base_model.scale_table == (0.11, 256.0, 64)
    assert (model.rates, model.N, recipe.lr) == (base_model.rates, base_model.N, 1e-5)


def test_the_parameter_networks_stage_makes_an_integer_model_that_codes(tmp_path):
    """From a float checkpoint: grids calibrated, only the parameter networks learn (for
    rate), then a resume keeps the grids, and the export codes with exact integers."""
    from safetensors.torch import load_file

    from tcodec.models.coding import TensorCoder

    write_run(tmp_path, 2)
    train.train(tmp_path / "run.toml")
    stage = tmp_path / "integer.toml"
    stage.write_text('base = "run.toml"\n[model]\ninteger_bits = 10\n[train]\nstage = "parameter_networks"\n'
                     'checkpoint = "integer/model.safetensors"\ninit = "run/model.safetensors"\n'
                     'iterations = 4\nlatent_crops = 6\nlr = 1e-3\n')
    train.train(stage)
    before, after = load_file(tmp_path / "run" / "model.safetensors"), load_file(tmp_path / "integer" / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(("g_a.", "g_s.", "h_a.", "rate_")))
    assert not torch.equal(before["h_s.increase.0.weight"], after["h_s.increase.0.weight"])
    assert after["h_s.increase.2.input_step"][0] == after["h_s.increase.0.output_step"]  # calibrated, linked
    grids = {k: v for k, v in after.items() if k.endswith("_step") and "weight" not in k}
    stage.write_text(stage.read_text().replace("iterations = 4", "iterations = 6"))
    train.train(stage)  # resumes its own checkpoint: the grids stay
    resumed = load_file(tmp_path / "integer" / "model.safetensors")
    assert all(torch.equal(resumed[k], v) for k, v in grids.items())
    assert json.loads((tmp_path / "integer" / "model.json").read_text()) == {"iteration": 6}

    loaded = load_model(str(train.export(stage, "tiny-integer", tmp_path / "exported"))).model
    coder = TensorCoder.writer()
    x = torch.rand(1, 3, 64, 128)
    loaded.compress(x, torch.zeros(1, 4, 384), coder, quality=2.0)
    reader = TensorCoder.reader(coder.to_bytes())
    assert loaded.decompress(reader, (1, 2), quality=2.0).shape == (1, 3, 64, 128)
    reader.stream.check_exhausted()


def test_an_unknown_stage_is_refused(tmp_path):
    write_run(tmp_path, 2)
    (tmp_path / "odd.toml").write_text('base = "run.toml"\n[train]\nstage = "decoder"\n')
    with pytest.raises(InputError, match="unknown stage"):
        train.train(tmp_path / "odd.toml")


def test_the_parameter_networks_stage_with_no_steps_saves_the_calibrated_grids(tmp_path):
    from safetensors.torch import load_file

    write_run(tmp_path, 2)
    train.train(tmp_path / "run.toml")
    (tmp_path / "grids.toml").write_text('base = "run.toml"\n[model]\ninteger_bits = 10\n[train]\n'
                                         'stage = "parameter_networks"\ncheckpoint = "grids/model.safetensors"\n'
                                         'init = "run/model.safetensors"\niterations = 2\nlatent_crops = 4\n')
    train.train(tmp_path / "grids.toml")
    before, after = load_file(tmp_path / "run" / "model.safetensors"), load_file(tmp_path / "grids" / "model.safetensors")
    assert json.loads((tmp_path / "grids" / "model.json").read_text()) == {"iteration": 2}
    assert all(torch.equal(before[k], after[k]) for k in before)  # no step taken
    assert after["h_s.increase.0.output_step"] != 1  # calibrated


def test_a_perceptual_branch_trains_with_st_lpips_and_keeps_frozen_parts(tmp_path):
    pytest.importorskip("stlpips_pytorch")
    write_run(tmp_path, 2)
    before, after = train_branch(tmp_path, 'perceptual = 3.5\nfrozen = ["h_s.", "entropy_parameters_anchor."]\n')
    frozen = [key for key in before if key.startswith(("h_s.", "entropy_parameters_anchor."))]
    assert frozen and all(torch.equal(before[key], after[key]) for key in frozen)
    synthesis = [key for key in before if key.startswith("g_s.")]
    assert not all(torch.equal(before[key], after[key]) for key in synthesis)  # the rest trains
    distances = log_column(tmp_path / "branch" / "model.log.csv", "st_lpips_alex")
    assert len(distances) == 2 and all(0 < d < 1 for d in distances)


def log_column(path, name: str) -> list[float]:
    header, *lines = path.read_text().splitlines()
    column = header.split(",").index(name)
    return [float(line.split(",")[column]) for line in lines]


DECODER_ONLY = ["g_a.", "h_a.", "h_s.", "local_context.", "channel_context.", "entropy_parameters_anchor.",
                "entropy_parameters_nonanchor.", "entropy_bottleneck.", "rate_log_gain"]


def test_a_decoder_branch_trains_for_ssimulacra2_and_leaves_the_encoder_and_tables_alone(tmp_path):
    write_run(tmp_path, 2)
    before, after = train_branch(tmp_path, f"ssimulacra2 = 1.0\nfrozen = {json.dumps(DECODER_ONLY)}\n")
    encoder_side = [key for key in before if not key.startswith(("g_s.", "rate_log_inverse_gain"))]
    # z's quantiles too: they are fitted by the aux loss only while z's prior learns
    assert any(key.endswith("quantiles") for key in encoder_side)
    assert all(torch.equal(before[key], after[key]) for key in encoder_side)
    assert not all(torch.equal(before[key], after[key]) for key in before if key.startswith("g_s."))
    scores = log_column(tmp_path / "branch" / "model.log.csv", "ssimulacra2")
    assert len(scores) == 2 and all(math.isfinite(s) and s < 100 for s in scores)
    assert all(math.isnan(d) for d in log_column(tmp_path / "branch" / "model.log.csv", "st_lpips_alex"))
    # the loss is not rate + λ·MSE alone, so -O effort gets no λ from this model
    train.export(tmp_path / "branch.toml", "branch-model", tmp_path / "exported")
    assert "lambdas" not in json.loads((tmp_path / "exported" / "config.json").read_text())


def test_holdout_leaves_every_nth_image_out_of_training(tmp_path):
    write_run(tmp_path, 2)
    folders = [str(tmp_path / "images")]
    everything = train.find_images(folders)
    assert train.held_out(folders, 2) == everything[::2]
    assert train.find_images(folders, 2) == everything[1::2]
    assert train.held_out(folders, 0) == [] and train.find_images(folders, 0) == everything


def test_a_frozen_prefix_that_names_nothing_is_refused(tmp_path):
    write_run(tmp_path, 2)
    with pytest.raises(InputError, match="frozen = 'g_x.' names no parameter"):
        train_branch(tmp_path, 'frozen = ["g_x."]\n')
