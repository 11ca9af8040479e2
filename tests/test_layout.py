"""Boundaries the layout promises: the container, CLI and jpeg path never import torch;
only tcodec/entropy.py imports constriction."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tcodec"


def modules_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_import_tcodec_and_cli_stay_light():
    loaded = modules_after("import tcodec, tcodec.cli, tcodec.container")
    assert not {"torch", "numpy", "constriction"} & loaded


def test_the_jpeg_path_never_imports_torch():
    code = (
        "import tcodec\nfrom tcodec.sample import sample_image\n"
        "data = tcodec.encode(sample_image(32, 32), 'jpeg', 80)\ntcodec.decode(data)\ntcodec.read_info(data)"
    )
    assert "torch" not in modules_after(code)


def test_only_entropy_imports_constriction():
    importers = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(name.split(".")[0] == "constriction" for name in names):
                importers.append(path.relative_to(PACKAGE).as_posix())
    assert set(importers) <= {"entropy.py"}
