"""`tcodec bench` end to end on tiny images, through a Typer app made here (the real
CLI registers the same function), and the runner's promises: real file sizes, resumable,
deterministic, clear errors."""

import csv
import json
import subprocess
import sys

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from tcodec.bench.command import bench
from tcodec.errors import BackendError, InputError
from tcodec.sample import sample_image

app = typer.Typer()
app.command()(bench)


@app.callback()
def _group() -> None:
    """Makes `bench` a subcommand, as in tcodec's app."""


def invoke(*args):
    return CliRunner().invoke(app, ["bench", *map(str, args)])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, card):
    folder = tmp_path_factory.mktemp("images")
    card.save(folder / "b-card.png")  # 96x64: too small for MS-SSIM
    sample_image(176, 168).save(folder / "a-large.png")
    (folder / "sub").mkdir()
    sample_image(168, 168).convert("L").save(folder / "sub" / "c-gray.png")
    (folder / ".hidden.png").write_bytes(b"not an image, and skipped")
    return folder


QUALITIES = ["-q", "jpeg=30,70", "-q", "webp=20,80"]


@pytest.fixture(scope="module")
def first_run(dataset, tmp_path_factory):
    output = tmp_path_factory.mktemp("out")
    result = invoke(dataset, "-m", "jpeg,webp", *QUALITIES, "-o", output, "--no-plots")
    assert result.exit_code == 0, result.output
    return output, result


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_every_image_codec_and_quality_is_measured_from_real_files(first_run, dataset):
    output, result = first_run
    rows = read_csv(output / "per_image.csv")
    assert [(r["codec"], r["quality"], r["image"]) for r in rows][:3] == [
        ("jpeg", "30", "a-large.png"), ("jpeg", "30", "b-card.png"), ("jpeg", "30", "sub/c-gray.png")]
    assert len(rows) == 3 * 2 * 2
    for row in rows:
        pixels = int(row["width"]) * int(row["height"])
        assert float(row["bpp"]) == pytest.approx(8 * int(row["size_bytes"]) / pixels, abs=1e-6)
        assert float(row["psnr-rgb"]) > 20
        assert row["peak_memory_mib"] == "" or float(row["peak_memory_mib"]) >= 0


def test_tcodec_rows_are_tcz_sizes(first_run, dataset):
    import tcodec

    output, _ = first_run
    row = next(r for r in read_csv(output / "per_image.csv") if r["codec"] == "jpeg" and r["quality"] == "70")
    size = len(tcodec.encode(dataset / row["image"], "jpeg", 70))
    assert int(row["size_bytes"]) == size


def test_ms_ssim_is_unavailable_for_small_images_with_the_reason(first_run):
    pytest.importorskip("pytorch_msssim")
    output, _ = first_run
    rows = read_csv(output / "per_image.csv")
    small = [r for r in rows if r["image"] == "b-card.png"]
    assert all(r["ms-ssim-rgb"] == "" and "96x64" in r["notes"] for r in small)
    assert all(0 < float(r["ms-ssim-rgb"]) <= 1 for r in rows if r["image"] != "b-card.png")


def test_summary_json_is_in_compressai_format(first_run):
    output, _ = first_run
    data = json.loads((output / "webp.json").read_text())
    assert data["name"] == "webp" and "method=6" in data["description"]
    results = data["results"]
    for key in ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"):
        assert len(results[key]) == 2
    assert results["quality"] == [20, 80] and results["bpp"][0] < results["bpp"][1]
    rows = [r for r in read_csv(output / "per_image.csv") if r["codec"] == "webp" and r["quality"] == "20"]
    assert results["bpp"][0] == pytest.approx(sum(float(r["bpp"]) for r in rows) / 3, abs=1e-5)


def test_tables_metadata_and_unavailable_metrics_are_reported(first_run):
    output, result = first_run
    assert "tcodec bench" in result.stdout and "BD-rate" in result.stdout
    assert "not measured: lpips: " in result.stdout
    bd = (output / "bd-rate.md").read_text()
    assert "against jpeg" in bd and "PCHIP" in bd and "| webp |" in bd
    run = json.loads((output / "run.json").read_text())
    assert run["codecs"]["webp"]["settings"]["method"] == 6
    assert "libwebp" in run["codecs"]["webp"]["versions"]
    assert [image["name"] for image in run["images"]] == ["a-large.png", "b-card.png", "sub/c-gray.png"]
    assert "lpips" in run["metrics_not_measured"]


def test_a_second_run_reuses_everything_and_a_new_codec_only_adds(first_run, dataset):
    output, _ = first_run
    before = (output / "per_image.csv").read_text()
    again = invoke(dataset, "-m", "jpeg,webp", *QUALITIES, "-o", output, "--no-plots")
    assert "measured 0, reused 12" in again.stdout
    assert (output / "per_image.csv").read_text() == before
    more = invoke(dataset, "-m", "jpeg,webp,pillow-jpeg", *QUALITIES, "-q", "pillow-jpeg=50", "-o", output,
                  "--no-plots")
    assert "measured 3, reused 12" in more.stdout


def test_limit_takes_the_first_images_in_sorted_order(dataset, tmp_path):
    result = invoke(dataset, "-m", "jpeg", "-q", "50", "--limit", "1", "-o", tmp_path, "--no-plots",
                    "--metrics", "psnr-rgb")
    assert result.exit_code == 0, result.output
    assert [r["image"] for r in read_csv(tmp_path / "per_image.csv")] == ["a-large.png"]


def test_parallel_jobs_give_the_same_sizes_and_pixels(dataset, tmp_path):
    arguments = [dataset, "-m", "jpeg,webp", "-q", "40", "--metrics", "psnr-rgb", "--no-plots"]
    assert invoke(*arguments, "-o", tmp_path / "one").exit_code == 0
    result = invoke(*arguments, "-o", tmp_path / "two", "--jobs", "2")
    assert result.exit_code == 0, result.output

    def measured(folder):
        return [(r["image"], r["codec"], r["size_bytes"], r["psnr-rgb"]) for r in read_csv(folder / "per_image.csv")]

    assert measured(tmp_path / "one") == measured(tmp_path / "two")


def anchor(path, name, bpp, psnr):
    results = {"bpp": bpp, "psnr-rgb": psnr, "ms-ssim-rgb": [0.9] * len(bpp)}
    path.write_text(json.dumps({"name": name, "description": "test", "results": results}))


def test_anchors_are_compared_and_plotted(first_run, dataset, tmp_path):
    pytest.importorskip("matplotlib")
    output, _ = first_run
    anchors = tmp_path / "published"
    anchors.mkdir()
    anchor(anchors / "slow.json", "Slow", [0.5, 1.0, 2.0, 4.0], [20.0, 25.0, 30.0, 35.0])
    anchor(anchors / "webp.json", "Fast", [0.1, 0.3, 1.0], [25.0, 30.0, 40.0])
    result = invoke(dataset, "-m", "jpeg,webp", *QUALITIES, "-o", output, "--anchors", anchors,
                    "--reference", "Slow", "--bd-method", "cubic")
    assert result.exit_code == 0, result.output
    bd = (output / "bd-rate.md").read_text()
    assert "against Slow" in bd and "| published/webp |" in bd and "| jpeg |" in bd
    assert "| webp vs published/webp |" in bd  # each codec against the anchor of its name
    for name in ("rd-psnr.png", "rd-ms-ssim.png", "rd-st-lpips-alex.png"):
        with Image.open(output / name) as plot:
            assert plot.format == "PNG" and plot.width > 300


@pytest.mark.parametrize("make, arguments, error, message", [
    (lambda d: None, [], InputError, "no images"),
    (lambda d: (d / "broken.png").write_bytes(b"\x89PNG broken"), [], InputError, "broken.png"),
    (lambda d: sample_image(8, 8).save(d / "a.png"), ["-m", "jpeg,gif"], BackendError, "unknown codec 'gif'"),
    (lambda d: sample_image(8, 8).save(d / "a.png"), ["-q", "jpeg=0-10"], InputError, "quality for jpeg"),
    (lambda d: sample_image(8, 8).save(d / "a.png"), ["-q", "ten"], InputError, "bad quality"),
    (lambda d: sample_image(8, 8).save(d / "a.png"), ["--metrics", "no-such-metric"], InputError, "unknown metric"),
    (lambda d: sample_image(8, 8).save(d / "a.png"), ["--reference", "bpg", "-q", "50"], InputError, "bpg"),
])
def test_errors_are_one_line_tcodec_errors(tmp_path, make, arguments, error, message):
    folder = tmp_path / "data"
    folder.mkdir()
    make(folder)
    result = invoke(folder, "-m", "jpeg", *arguments, "-o", tmp_path / "out", "--no-plots") \
        if "-m" not in arguments else invoke(folder, *arguments, "-o", tmp_path / "out", "--no-plots")
    assert isinstance(result.exception, error), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)


def test_codec_options_change_settings_and_sizes(dataset, tmp_path):
    arguments = [dataset, "-m", "jpeg,pillow-jpeg", "-q", "60", "--metrics", "psnr-rgb", "--no-plots"]
    assert invoke(*arguments, "-o", tmp_path / "default").exit_code == 0
    result = invoke(*arguments, "-o", tmp_path / "changed", "-O", "jpeg.subsampling=4:4:4",
                    "-O", "pillow-jpeg.optimize=false")
    assert result.exit_code == 0, result.output
    run = json.loads((tmp_path / "changed" / "run.json").read_text())
    assert run["codecs"]["jpeg"]["settings"]["subsampling"] == "4:4:4"
    assert run["codecs"]["pillow-jpeg"]["settings"]["optimize"] is False

    def sizes(folder):
        return [int(r["size_bytes"]) for r in read_csv(folder / "per_image.csv")]

    before, after = sizes(tmp_path / "default"), sizes(tmp_path / "changed")
    # larger files: no chroma subsampling (colour images), standard Huffman tables (all)
    assert all(a <= b for a, b in zip(before, after)) and sum(before) < sum(after)


@pytest.mark.parametrize("option, message", [
    ("webp.method=4", "not in -m"),
    ("jpeg=4", "CODEC.KEY=VALUE"),
    ("jpeg.colour=red", "unknown option 'colour' for jpeg"),
])
def test_bad_codec_options_are_input_errors(dataset, tmp_path, option, message):
    result = invoke(dataset, "-m", "jpeg", "-q", "50", "-O", option, "-o", tmp_path, "--no-plots")
    assert isinstance(result.exception, InputError) and message in str(result.exception)


def test_captions_are_found_by_path_or_file_name(dataset, tmp_path):
    from tcodec.bench.runner import read_image

    captions = {"sub/c-gray.png": "a gray card", "b-card.png": "a test card"}
    assert read_image(dataset / "sub" / "c-gray.png", dataset, captions).caption == "a gray card"
    assert read_image(dataset / "b-card.png", dataset, captions).caption == "a test card"
    assert read_image(dataset / "a-large.png", dataset, captions).caption is None


def test_a_missing_dataset_is_an_input_error(tmp_path):
    result = invoke(tmp_path / "nowhere", "-o", tmp_path / "out")
    assert isinstance(result.exception, InputError) and "no such file or folder" in str(result.exception)


def test_the_command_module_imports_nothing_heavy():
    script = "import sys, tcodec.bench.command; print(' '.join(sys.modules))"
    loaded = set(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                check=True).stdout.split())
    assert not {"torch", "numpy", "matplotlib", "scipy", "pytorch_msssim"} & loaded


def test_identical_images_are_measured_once_and_listed_under_each_name(tmp_path, card):
    folder = tmp_path / "data"
    folder.mkdir()
    card.save(folder / "one.png")
    card.save(folder / "two.png")
    result = invoke(folder, "-m", "jpeg", "-q", "50", "--metrics", "psnr-rgb", "-o", tmp_path / "out", "--no-plots")
    assert result.exit_code == 0, result.output
    rows = read_csv(tmp_path / "out" / "per_image.csv")
    assert [r["image"] for r in rows] == ["one.png", "two.png"] and rows[0]["size_bytes"] == rows[1]["size_bytes"]
    assert len((tmp_path / "out" / "cache.jsonl").read_text().splitlines()) == 1
    assert "measured 1, reused 0" in result.stdout
