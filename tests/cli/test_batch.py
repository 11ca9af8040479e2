from pathlib import Path

from tcodec.cli.batch import FileResult, Job, Summary, plan, run
from tcodec.images import IMAGE_SUFFIXES
from tcodec.errors import InputError


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_plan_mirrors_sorted_and_skips_hidden(tmp_path):
    for name in ["b.png", "a/z.JPG", "a/y.tif", ".secret/x.png", ".tmp.png", "readme.md"]:
        touch(tmp_path / "in" / name)
    jobs, conflicts = plan(tmp_path / "in", tmp_path / "out", IMAGE_SUFFIXES, ".tcz")
    assert [j.target.relative_to(tmp_path / "out").as_posix() for j in jobs] == ["a/y.tcz", "a/z.tcz", "b.tcz"]
    assert conflicts == []


def test_plan_reports_outputs_claimed_twice(tmp_path):
    for name in ["p.png", "p.jpg"]:
        touch(tmp_path / "in" / name)
    jobs, conflicts = plan(tmp_path / "in", tmp_path / "out", IMAGE_SUFFIXES, ".tcz")
    assert [j.source.name for j in jobs] == ["p.jpg"]
    assert len(conflicts) == 1 and "p.png" in conflicts[0] and "same output" in conflicts[0]


def test_run_counts_and_reports(tmp_path):
    jobs = [Job(tmp_path / f"{i}.png", tmp_path / f"{i}.tcz") for i in range(4)]
    (tmp_path / "3.tcz").write_bytes(b"exists")
    messages = []

    def process(job):
        if job.source.name == "1.png":
            raise InputError("broken")
        return FileResult(100, 10, 40, ("a note",))

    summary = run(jobs, process, n_jobs=2, force=False, report=lambda kind, text: messages.append((kind, text)),
                  label=lambda error, source: InputError(f"{source}: {error}"))
    assert (summary.done, summary.skipped, summary.failed) == (2, 1, 1)
    assert ("error", f"{tmp_path / '1.png'}: broken") in messages
    assert sum(kind == "warning" for kind, _ in messages) == 2
    assert summary.describe("encoded", "output") == (
        "encoded 2 files, skipped 1 (output exists; --force overwrites), 1 failed; 200 B -> 20 B, 2.000 bpp")


def test_summary_sizes_use_units():
    summary = Summary()
    summary.add(FileResult(3_500_000, 250_000, 1_000_000))
    assert summary.describe("decoded", "input") == "decoded 1 file; 3.5 MB -> 250.0 kB, 28.000 bpp"


def test_an_output_another_run_made_meanwhile_counts_as_skipped(tmp_path):
    from tcodec.errors import OutputExistsError

    jobs = [Job(tmp_path / "a.png", tmp_path / "a.tcz")]

    def process(job):
        raise OutputExistsError(f"{job.target}: already exists")

    messages = []
    summary = run(jobs, process, n_jobs=1, force=False, report=lambda kind, text: messages.append(text),
                  label=lambda error, source: error)
    assert (summary.done, summary.skipped, summary.failed, messages) == (0, 1, 0, [])
