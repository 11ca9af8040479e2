import contextlib
import io
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings
from PIL import Image

from tcodec.sample import sample_image

ROOT = Path(__file__).resolve().parent.parent

# Property tests run the same examples on every run and machine: tests stay deterministic.
settings.register_profile("tcodec", derandomize=True, database=None)
settings.load_profile("tcodec")


@pytest.fixture(scope="session")
def card() -> Image.Image:
    """A small RGB picture with edges, gradients and colour (the built-in test card)."""
    return sample_image(96, 64)


@pytest.fixture
def card_png(tmp_path, card) -> Path:
    path = tmp_path / "card.png"
    card.save(path)
    return path


def image_bytes(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def run_cli(*args, input: bytes | None = None, cwd=None) -> subprocess.CompletedProcess:
    """Run the real `tcodec` command in a fresh process (real exit codes, stdin, stdout)."""
    return subprocess.run(
        [sys.executable, "-m", "tcodec", *map(str, args)],
        input=input if input is not None else b"",
        capture_output=True,
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """A randomly initialised small TACO (the real structure) saved as a model folder."""
    pytest.importorskip("torch")  # the learned backends are an optional extra
    from tcodec.models.taco_weights import save_model
    from tests.models.tiny import tiny_model

    folder = tmp_path_factory.mktemp("models") / "tiny-taco"
    save_model(tiny_model(), folder, "all-minilm-l6-v2", lambdas=[0.002, 0.05])  # as an export writes them
    return folder


@contextlib.contextmanager
def time_limit(seconds: int, what: str = "a Ray call"):
    """Fail (not hang) when the block runs longer than ``seconds`` (main thread, Unix)."""
    def expired(signum, frame):
        raise TimeoutError(f"{what} took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def ray_address():
    """One local Ray instance (2 CPUs) shared by every test that needs one: this process is
    its driver (the Dataset API tests), CLI runs join it with --ray-address."""
    ray = pytest.importorskip("ray")  # the Ray engine is an optional extra
    pytest.importorskip("ray.data")
    with time_limit(120, "starting Ray"):
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
