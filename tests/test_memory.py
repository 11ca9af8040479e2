"""tcodec.memory: the allocator setting the CLI makes, and handing memory back."""

import subprocess
import sys

import pytest

import tcodec.cli
from tcodec import memory

pytestmark = pytest.mark.skipif(memory._GLIBC is None, reason="not glibc")

# Allocates, touches and frees a 24 MiB block twice; prints the pages faulted in on
# the second time (calloc zero-fills what it reuses, so every page is touched each time).
REUSE = """
import resource, sys
from tcodec.memory import keep_freed_memory
if sys.argv[1] == "kept":
    assert keep_freed_memory()
faults = []
for _ in range(2):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = bytearray(24 << 20)
    block[::4096] = b"x" * len(block[::4096])
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del block
print(faults[1])
"""


def pages_faulted(setting: str) -> int:
    result = subprocess.run([sys.executable, "-c", REUSE, setting], capture_output=True, text=True, check=True)
    return int(result.stdout)


def test_kept_memory_is_reused_without_page_faults():
    assert pages_faulted("kept") < 100  # the block's 6,144 pages come back from the heap


def test_by_default_a_big_block_is_handed_back_and_faulted_in_again():
    assert pages_faulted("default") > 3000


def test_the_cli_keeps_freed_memory(monkeypatch):
    calls = []
    monkeypatch.setattr(tcodec.cli, "keep_freed_memory", lambda: calls.append(True))
    monkeypatch.setattr(sys, "argv", ["tcodec", "--version"])
    # main() also lifts Pillow's bomb limit and takes SIGTERM: keep both as they were
    monkeypatch.setattr(tcodec.cli, "_lift_pillow_bomb_limit", lambda: None)
    monkeypatch.setattr(tcodec.cli.signal, "signal", lambda *args: None)
    with pytest.raises(SystemExit) as exit_info:
        tcodec.cli.main()
    assert exit_info.value.code in (0, None) and calls == [True]
