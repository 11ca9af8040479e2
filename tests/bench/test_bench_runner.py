"""The runner's dataset scope: FID, KID and CMMD per codec and quality over all images of a
run, from features stored beside the cache, with the samples behind each number."""

import math

import pytest

from tcodec.bench.cache import FeatureStore, ResultCache
from tcodec.bench.runner import BenchConfig, execute, plan, prepare
from tcodec.sample import sample_image

pytest.importorskip("pytorch_fid")


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    sample_image(64, 64).save(folder / "a.png")
    sample_image(72, 64).save(folder / "b.png")
    return folder


@pytest.fixture
def random_weights(monkeypatch, random_inception):
    """The Inception's weights count as installed (their hash names the features' folder),
    and its loader gives the random network."""
    from tcodec import weights
    from tcodec.bench import networks

    real_status = weights.status
    monkeypatch.setattr(weights, "status", lambda name: {"installed": True, "folder": None, "hash": "cd" * 32}
                        if name == "inception-v3-fid" else real_status(name))
    monkeypatch.setattr(networks, "inception_network", lambda: random_inception)


def run_bench(dataset, output, metrics=("psnr-rgb", "fid", "kid")):
    config = BenchConfig(dataset=dataset, codecs=("jpeg",), qualities={"jpeg": (10, 90)}, output=output,
                         metrics=metrics)
    run = prepare(config)
    cache = ResultCache(output / "cache.jsonl")
    return execute(run, cache), cache


def test_fid_and_kid_are_scored_per_point_over_all_patches_and_reused(dataset, tmp_path, random_weights,
                                                                     monkeypatch):
    from tcodec.bench import distances
    from tcodec.bench.curves import compressai_results, summarize
    from tcodec.bench.report import dataset_metadata, summary_rows

    monkeypatch.setattr(distances, "PATCH", 32)  # 64x64: 4 patches + 1 shifted
    run, cache = run_bench(dataset, tmp_path / "out")
    assert run.failures == [] and run.dataset_unavailable == {}
    low, high = run.dataset_scores[("jpeg", 10)], run.dataset_scores[("jpeg", 90)]
    assert low["fid"].samples == high["fid"].samples == 2 * 5 and low["fid"].images == 2
    assert math.isfinite(low["fid"].value) and low["fid"].value > high["fid"].value > 0
    assert low["kid"].details["subset_size"] == 10 and low["kid"].value > high["kid"].value
    record = run.records[0]
    assert record["features"] == {"inception-v3-fid-pool3-patches256": 5}
    assert "fid+kid" in record["metric_seconds"] and "fid" not in record["metrics"]
    folder = FeatureStore.beside(cache.path) / f"inception-v3-fid-pool3-patches256-{'cd' * 8}"
    assert len(list(folder.glob("reference-*.npy"))) == 2 and len(list(folder.glob("*.npy"))) == 2 + 4

    summary = summarize(run.records, ["jpeg"], run.dataset_scores)
    point = summary["jpeg"][0]
    assert dict(point.others)["fid"] == low["fid"].value and dict(point.samples) == {"fid": 10, "kid": 10}
    results = compressai_results("jpeg", "", summary["jpeg"])["results"]
    assert results["fid"] == [low["fid"].value, high["fid"].value] and results["fid-samples"] == [10, 10]
    assert summary_rows(summary, ("fid",))[0][6] == f"{low['fid'].value:.4f} (10)"
    scores = dataset_metadata(run)["scores"]
    assert {"codec": "jpeg", "quality": 10, "metric": "kid", "samples": 10, "images": 2} .items() <= scores[1].items()

    again, _ = run_bench(dataset, tmp_path / "out")  # features and results come from the cache
    assert again.measured == 0 and again.reused == 4
    assert again.dataset_scores[("jpeg", 10)]["fid"].value == pytest.approx(low["fid"].value, rel=1e-12)


def test_lost_features_are_measured_again(dataset, tmp_path, random_weights, monkeypatch):
    from tcodec.bench import distances

    monkeypatch.setattr(distances, "PATCH", 32)
    run, cache = run_bench(dataset, tmp_path / "out", ("fid",))
    store = FeatureStore.beside(cache.path) / f"inception-v3-fid-pool3-patches256-{'cd' * 8}"
    (store / f"{plan(run)[0].key}.npy").unlink()
    again, _ = run_bench(dataset, tmp_path / "out", ("fid",))
    assert again.measured == 1 and again.reused == 3
    before = run.dataset_scores[("jpeg", 10)]["fid"].value
    assert again.dataset_scores[("jpeg", 10)]["fid"].value == pytest.approx(before)


def test_too_few_patches_are_reported_per_point_with_the_reason(dataset, tmp_path, random_weights):
    run, _ = run_bench(dataset, tmp_path / "out")  # 256x256 patches: none fits in 64x64 images
    assert run.dataset_scores == {}
    assert run.dataset_unavailable[("jpeg", 10)]["fid"] == ("only 0 256x256 patches (needs at least 2 in each set); "
                                                           "from 0 of 2 images")
    from tcodec.bench.report import dataset_reasons

    assert dataset_reasons(run)[0].startswith("fid at jpeg q10: only 0 256x256 patches")


def test_without_weights_dataset_metrics_are_not_measured_at_all(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("TCODEC_CACHE", str(tmp_path / "empty-cache"))
    run, _ = run_bench(dataset, tmp_path / "out")
    assert "tcodec models fetch inception-v3-fid" in run.unavailable_metrics["fid"]
    assert run.dataset_scores == {} and run.dataset_unavailable == {} and "features" not in run.records[0]


def test_a_caption_metric_is_measured_again_when_the_caption_changes(dataset, tmp_path, clip_installed):
    def caption_run(caption):
        config = BenchConfig(dataset=dataset, codecs=("jpeg",), qualities={"jpeg": (50,)}, output=tmp_path / "out",
                             metrics=("clip-score",), captions={"a.png": caption, "b.png": caption})
        cache = ResultCache(tmp_path / "out" / "cache.jsonl")
        return execute(prepare(config), cache)

    first = caption_run("a red card")
    assert first.measured == 2 and first.records[0]["metric_caption"] == "a red card"
    assert caption_run("a red card").measured == 0
    changed = caption_run("a blue card")
    assert changed.measured == 2 and changed.records[0]["metric_caption"] == "a blue card"


def test_the_command_writes_and_plots_dataset_metrics_with_their_samples(dataset, tmp_path, random_weights,
                                                                        monkeypatch, capsys):
    import json

    from tcodec.bench import distances
    from tcodec.bench.command import run_bench as command_run

    monkeypatch.setattr(distances, "PATCH", 32)
    output = tmp_path / "out"
    config = BenchConfig(dataset=dataset, codecs=("jpeg",), qualities={"jpeg": (10, 90)}, output=output,
                         metrics=("psnr-rgb", "fid"))
    assert command_run(config, None, None, "pchip", None, plots=True) == 0
    printed = capsys.readouterr().out
    results = json.loads((output / "jpeg.json").read_text())["results"]
    assert f"{results['fid'][0]:.4f} (10)" in printed and "dataset-scope metrics" in printed
    assert results["fid-samples"] == [10, 10] and results["fid"][0] > results["fid"][1]
    run = json.loads((output / "run.json").read_text())
    assert [s["samples"] for s in run["dataset_metrics"]["scores"]] == [10, 10]
    assert run["metric_versions"]["fid"]["inception-v3-fid"] == "model hash " + "cd" * 8
    assert "## Dataset-scope metrics" in (output / "summary.md").read_text()
    assert (output / "rd-fid.png").is_file()
