"""The package layout is the architecture: each layer imports only the layers below it,
and no two modules import each other, however lazily."""

from __future__ import annotations

import ast

import networkx as nx
import pytest

from .conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "prmsynth"

#: Bottom to top.  A module may import its own layer's modules and any lower layer.
LAYERS = (
    ("prmsynth._version", "prmsynth._errors"),
    ("prmsynth._values", "prmsynth._io", "prmsynth._sources"),
    ("prmsynth._tree",),
    ("prmsynth._interfaces", "prmsynth._seeds"),
    ("prmsynth.llm",),
    # The answer check: LaTeX text and the checker pool, extraction and normalization,
    # equivalence, then the verifiers (_math, _judge, _critic) and the package.
    ("prmsynth.verify._latex", "prmsynth.verify._pool"),
    ("prmsynth.verify._extract", "prmsynth.verify._normalize"),
    ("prmsynth.verify._equivalence",),
    ("prmsynth.verify",),
    ("prmsynth.search",),
    ("prmsynth.evolve",),
    # Exports: settings, the labelling rule, the builders, the format registry, schemas
    # and records, writing, then the package's face (_formats).
    ("prmsynth.export._serialize", "prmsynth.export._settings"),
    ("prmsynth.export._labels",),
    ("prmsynth.export._builders",),
    ("prmsynth.export._registry",),
    ("prmsynth.export._schema", "prmsynth.export._records"),
    ("prmsynth.export._write",),
    ("prmsynth.export",),
    ("prmsynth.run",),
    ("prmsynth.view",),
    ("prmsynth.publish",),
    ("prmsynth.train",),
    ("prmsynth.cli",),
)
#: Beside the stack: test doubles import only the core; nothing in the library imports them.
ASIDE = {"prmsynth.testing": 3}


def module_name(path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    if module in ASIDE or any(module.startswith(name + ".") for name in ASIDE):
        return ASIDE[next(n for n in ASIDE if module == n or module.startswith(n + "."))]
    for rank, names in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in names):
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def imported_modules(path) -> set[str]:
    """Every prmsynth module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "prmsynth":
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "prmsynth")
    return found


MODULES = {
    module_name(path): path
    for path in sorted(PACKAGE.rglob("*.py"))
    if module_name(path) not in ("prmsynth", "prmsynth.__main__")  # the public face
}


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for module, path in MODULES.items():
        graph.add_node(module)
        for target in imported_modules(path):
            if target != module and target in MODULES:
                graph.add_edge(module, target)
            elif target == "prmsynth":
                graph.add_edge(module, "prmsynth")
    return graph


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_nothing_above_its_layer(module):
    upward = [
        target
        for target in imported_modules(MODULES[module])
        if target == "prmsynth" or layer_of(target) > layer_of(module)
    ]
    assert upward == [], f"{module} (layer {layer_of(module)}) imports up: {upward}"


def test_no_two_modules_import_each_other():
    assert list(nx.simple_cycles(import_graph())) == []


def test_the_library_never_imports_the_command_line_or_the_test_doubles():
    for module, path in MODULES.items():
        if module.startswith(("prmsynth.cli", "prmsynth.testing")):
            continue
        assert not any(
            target.startswith(("prmsynth.cli", "prmsynth.testing"))
            for target in imported_modules(path)
        ), module


def ray_imports(path) -> tuple[int, int]:
    """How many imports of Ray ``path`` has: (at module level, inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def names_ray(node) -> bool:
        if isinstance(node, ast.ImportFrom):
            return node.level == 0 and (node.module or "").split(".")[0] == "ray"
        if isinstance(node, ast.Import):
            return any(alias.name.split(".")[0] == "ray" for alias in node.names)
        return False

    top = sum(names_ray(node) for node in tree.body)
    return top, sum(names_ray(node) for node in ast.walk(tree)) - top


def test_ray_is_imported_only_by_the_ray_executor_and_only_when_it_runs():
    importing = {module: ray_imports(path) for module, path in MODULES.items()}
    importing = {module: counts for module, counts in importing.items() if any(counts)}
    assert set(importing) == {"prmsynth.run._ray"}
    assert importing["prmsynth.run._ray"][0] == 0  # never at import time


#: The train extra: only a function that trains or scores with a local model imports it.
TRAIN_EXTRA = ("torch", "transformers", "accelerate", "gguf", "tokenizers")


def test_no_module_imports_the_train_extra_at_its_top():
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only: imports inside functions are lazy
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            heavy = [name for name in names if name.split(".")[0] in TRAIN_EXTRA]
            assert heavy == [], f"{module} imports {heavy} at its top"


def test_the_tests_mirror_the_package_folders():
    # A subpackage's tests sit in the folder of the same name; the top holds the
    # tests of the top-level modules and of the whole program.
    packages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    folders = {
        path.name
        for path in (REPO_ROOT / "tests").iterdir()
        if path.is_dir() and (path / "__init__.py").is_file()
    }
    assert folders <= packages, f"test folders without a package: {sorted(folders - packages)}"
    for folder in folders:
        assert list((REPO_ROOT / "tests" / folder).glob("test_*.py")), (
            f"tests/{folder} holds no test"
        )
