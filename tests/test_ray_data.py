"""tcodec.ray_data: the actor pool's sizing (no Ray needed) and the Dataset API on the
shared local Ray instance (tests/conftest.py), every Ray call under a time limit."""

import numpy as np
import pytest
from PIL import Image

import tcodec
from tcodec.errors import InputError
from tcodec.ray_data import actor_plan
from tests.conftest import image_bytes, time_limit

# Ray Data's own context copies its deprecated settings (use_polars, ...) and says so
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated.*:DeprecationWarning")


@pytest.mark.parametrize("node_cpus", [[1], [2], [4], [0, 8, 8], [2, 32], [96], [3, 5, 7]])
@pytest.mark.parametrize("workers", [None, 1, 2, 3, 16, 200])
def test_actors_fit_and_always_leave_cpus_to_ray_data(node_cpus, workers):
    plan = actor_plan(node_cpus, 0, workers=workers)
    assert plan.size == (workers or max(1, int(sum(node_cpus))))
    assert 0 <= plan.num_cpus <= 1 and plan.num_gpus == 0 and plan.threads >= 1
    nodes = sum(cpus >= 1 for cpus in node_cpus)
    # free CPUs adding up to one per node: some node can start a 1-CPU read, however actors are placed
    assert sum(node_cpus) - plan.size * plan.num_cpus >= nodes - 1e-6
    if plan.num_cpus:  # and each actor finds a node (a claim of 0 always does): the pool can start
        assert sum(int(max(0, cpus - 1) / plan.num_cpus + 1e-9) for cpus in node_cpus) >= plan.size


def test_two_cpus_give_two_one_thread_actors_or_one_of_two_threads():
    assert actor_plan([2], 0) == actor_plan([2], 0, workers=2)
    two, one = actor_plan([2], 0), actor_plan([2], 0, workers=1)
    assert (two.size, two.threads, two.num_cpus) == (2, 1, 0.5)
    assert (one.size, one.threads, one.num_cpus) == (1, 2, 1.0)


def test_gpu_actors():
    plan = actor_plan([8, 8], 2, device="cuda")
    assert (plan.size, plan.num_gpus, plan.threads) == (2, 1.0, 1) and plan.num_cpus <= 1
    assert actor_plan([8], 1, workers=4, device="cuda").num_gpus == 0.25
    with pytest.raises(InputError, match="no GPU"):
        actor_plan([8], 0, device="cuda")


@pytest.fixture(scope="module")
def images(card):
    return [image_bytes(card.rotate(30 * i), "PNG") for i in range(5)] + [image_bytes(card.convert("L"), "JPEG")]


def test_encode_and_decode_datasets_give_the_library_bytes_and_pixels(ray_address, images):
    import ray

    from tcodec.ray_data import decode_dataset, encode_dataset

    captions = ["a card", None, "", "turned", None, "gray"]
    rows = [{"name": f"{i}.png", "bytes": data, "caption": c} for i, (data, c) in enumerate(zip(images, captions))]
    with time_limit(180):
        encoded = encode_dataset(ray.data.from_items(rows), column="bytes", caption_column="caption",
                                 backend="jpeg", quality=60, workers=2).materialize()
        decoded = decode_dataset(encoded.drop_columns(["bytes"]), workers=1).materialize()
        again = encode_dataset(decoded.drop_columns(["tcz"]), column="image", output_column="again",
                               backend="jpeg", quality=90, workers=1).take_all()  # pixel arrays in
    by_name = {row["name"]: row for row in decoded.take_all()}
    for i, (data, caption) in enumerate(zip(images, captions)):
        expected = tcodec.encode(data, "jpeg", 60, caption=caption)
        assert by_name[f"{i}.png"]["tcz"] == expected
        assert np.array_equal(by_name[f"{i}.png"]["image"], np.asarray(tcodec.decode(expected)))
    for row in again:
        assert row["again"] == tcodec.encode(Image.fromarray(by_name[row["name"]]["image"]), "jpeg", 90)


def test_files_read_by_ray_data_tasks_do_not_starve_the_actors(ray_address, images, tmp_path):
    """Read tasks ahead of two actors on two CPUs: the pool leaves them a CPU (issue 20's
    stall), and paths work as a column too; a failing row can be kept with its message."""
    import ray

    from tcodec.ray_data import encode_dataset

    for i, data in enumerate(images):
        (tmp_path / f"{i}.png").write_bytes(data)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with time_limit(180):
        files = ray.data.read_binary_files(str(tmp_path), include_paths=True)
        rows = encode_dataset(files, column="path", backend="jpeg", quality=50, workers=2,
                              on_error="record").take_all()
    by_path = {row["path"].rsplit("/", 1)[1]: row for row in rows}
    assert by_path["bad.png"]["tcz"] is None and "not an image" in by_path["bad.png"]["tcodec_error"]
    for i, data in enumerate(images):
        assert by_path[f"{i}.png"]["tcz"] == tcodec.encode(data, "jpeg", 50)


def test_bad_settings_fail_before_any_row(ray_address):
    import ray

    from tcodec.ray_data import encode_dataset

    with pytest.raises(InputError):
        encode_dataset(ray.data.from_items([{"image": b""}]), backend="jpeg", quality=500)
    with pytest.raises(InputError, match="on_error"):
        encode_dataset(ray.data.from_items([{"image": b""}]), on_error="ignore")
