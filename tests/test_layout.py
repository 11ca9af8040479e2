"""Boundaries the layout promises: the container, CLI and jpeg path never import torch;
a command does not import pydantic (typer 0.29's parameter validation does); only
tcodec/coding/entropy.py imports constriction."""

import ast
import subprocess
import sys
from pathlib import Path

import tcodec
from tcodec.sample import sample_image

PACKAGE = Path(__file__).resolve().parent.parent / "tcodec"


def modules_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_import_tcodec_and_cli_stay_light():
    loaded = modules_after("import tcodec, tcodec.cli, tcodec.format.container")
    assert not {"torch", "numpy", "constriction"} & loaded


def test_the_jpeg_path_never_imports_torch():
    code = (
        "import tcodec\nfrom tcodec.sample import sample_image\n"
        "data = tcodec.encode(sample_image(32, 32), 'jpeg', 80)\ntcodec.decode(data)\ntcodec.read_info(data)"
    )
    assert "torch" not in modules_after(code)


def test_a_command_does_not_import_pydantic(tmp_path):
    path = tmp_path / "a.tcz"
    path.write_bytes(tcodec.encode(sample_image(32, 32), "jpeg", 80))
    script = ("import sys, tcodec.cli\n"
              f"tcodec.cli.app(['info', {str(path)!r}], standalone_mode=False)\n"
              "print('modules:', ' '.join(sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    shown, _, modules = result.stdout.partition("modules:")
    assert "jpeg" in shown  # the command ran
    assert "pydantic" not in modules.split()


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
    assert set(importers) <= {"coding/entropy.py"}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere in it, deferred imports too),
    leaving out its own parent packages (importing a module imports those anyway)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("tcodec", *path.relative_to(PACKAGE).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], *filter(None, [base])])
                targets |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names}
        edges = set()
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                edges.add(target)
        graph[name] = edges
    return graph


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    assert "tcodec.weights" in graph["tcodec.models.text"]  # the graph sees deferred imports

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for following in graph[todo.pop()] - seen:
                if following == goal:
                    return True
                seen.add(following)
                todo.append(following)
        return False

    cycles = sorted(f"{a} -> {b} -> ... -> {a}" for a in graph for b in graph[a] if reaches(b, a))
    assert cycles == []


def test_only_the_command_line_imports_the_cli_package():
    """tcodec.cli is the command (importing it builds the Typer app): the library, the bench's
    machinery and training must not need it."""
    graph = import_graph()
    users = sorted(name for name, imported in graph.items()
                   if any(t == "tcodec.cli" or t.startswith("tcodec.cli.") for t in imported)
                   and not name.startswith("tcodec.cli"))
    assert users == ["tcodec.__main__"]
