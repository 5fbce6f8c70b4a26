"""The tree is the architecture: dependencies point down the flow, and no module imports one that imports it back.

Reads every ``import`` in the package (module level, lazy inside functions, and under TYPE_CHECKING alike), so
a cycle hidden behind a function-level import fails here too.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sketchlvm"

# Lower ranks may not import higher ones; equal ranks only within one subpackage. The data flows:
#   strokes -> preprocess -> runtime/model -> gallery -> search -> webapp, and
#   datasets -> (sampler, losses, trainer: training) -> checkpoint (model) -> evaluation.
RANKS = {
    "config": 0,
    "device": 1,
    "hub": 1,
    "preprocess": 2,
    "runtime": 3,
    "datasets": 3,
    "arguments": 4,
    "model": 5,
    "gallery": 6,
    "evaluation": 6,
    "search": 7,
    "training": 7,
    "webapp": 8,
    "cluster": 8,
    "cli": 9,
    "__main__": 10,
    "__init__": 10,
}
MAX_TOP_LEVEL_MODULES = 10


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every sketchlvm module ``path`` imports, as dotted names (relative imports resolved)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("sketchlvm"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("sketchlvm"):
                found.add(base)
                # ``from sketchlvm.x import y`` imports the module sketchlvm.x.y when y is one
                found.update(f"{base}.{a.name}" for a in node.names if _exists(f"{base}.{a.name}"))
    found.discard(name)
    return {m for m in found if _exists(m)}


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@functools.cache
def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_at_most_ten_modules_at_the_top_of_the_package():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_every_subpackage_says_what_it_owns_and_may_import():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "import" in doc, f"{init.relative_to(PACKAGE.parent)} has no docstring saying what it may import"


def test_every_area_has_a_rank():
    areas = {_area(m) for m in _graph()}
    assert areas <= set(RANKS), sorted(areas - set(RANKS))


@pytest.mark.parametrize("module", sorted(_graph()))
def test_dependencies_point_down_the_flow(module):
    mine = _area(module)
    for target in sorted(_graph()[module]):
        theirs = _area(target)
        if theirs == mine or target == "sketchlvm":
            continue
        assert RANKS[theirs] < RANKS[mine], f"{module} (rank {RANKS[mine]}) imports {target} (rank {RANKS[theirs]})"


def test_no_import_cycles_even_lazy_ones():
    graph = _graph()
    # A package's __init__ that re-exports its modules is not a back edge for them.
    edges = {m: {t for t in ts if not (m.startswith(t + ".") and t != "sketchlvm")} for m, ts in graph.items()}
    edges = {m: {t for t in ts if t != "sketchlvm"} for m, ts in edges.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


LAYOUT_DOC = PACKAGE.parent / "docs" / "layout.md"
BLOCKED = ("torch", "torchvision", "open_clip")


def _layout_doc() -> dict[str, str]:
    """Module path (relative to sketchlvm/) -> its line, from the tree in docs/layout.md."""
    block = LAYOUT_DOC.read_text().split("```")[1]
    found, folders = {}, []
    for line in block.splitlines():
        entry = line.split("  ", 1)[0] if not line.startswith("  ") else line.strip().split(" ", 1)[0]
        depth = (len(line) - len(line.lstrip())) // 2
        if not line.startswith("  ") or not entry:
            continue  # the repository's own top level (app.py, docs/, ...)
        folders = folders[: depth - 1]
        if entry.endswith("/") and "," not in entry:
            folders.append(entry.rstrip("/"))
        elif entry.endswith(".py"):
            found["/".join([*folders, entry])] = line
    return found


def _package_modules() -> set[str]:
    return {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
            if p.name != "__init__.py" or p.parent == PACKAGE}


def test_docs_layout_names_every_module_and_no_other():
    documented = set(_layout_doc())
    modules = _package_modules()
    assert not modules - documented, f"docs/layout.md leaves out {sorted(modules - documented)}"
    assert not documented - modules, f"docs/layout.md names modules that are gone: {sorted(documented - modules)}"


def test_no_two_modules_share_a_name():
    names: dict[str, list[str]] = {}
    for module in _package_modules():
        if not module.endswith(("__init__.py", "__main__.py", "cli.py")):
            names.setdefault(Path(module).name, []).append(module)
    assert not [m for m in names.values() if len(m) > 1], [m for m in names.values() if len(m) > 1]


def test_export_and_serving_modules_are_named_apart():
    """Torch-side export modules have ``export`` in their name; torch-free serving ones ``folder`` and no ``export``."""
    torch_free = {m for m, line in _layout_doc().items() if "(no torch)" in line}
    for module in _package_modules():
        stem = Path(module).stem
        if "export" in stem:
            assert module not in torch_free, f"{module} exports with torch, yet is marked (no torch)"
        if stem.startswith("folder_") and "export" not in stem:
            assert module in torch_free, f"{module} serves an export folder but is not marked (no torch)"


def test_modules_marked_torch_free_import_without_torch():
    """What the serving install imports, imported here with torch, torchvision and open_clip made unimportable."""
    torch_free = sorted("sketchlvm." + m[: -len(".py")].replace("/", ".").removesuffix(".__init__")
                        for m, line in _layout_doc().items() if "(no torch)" in line)
    assert len(torch_free) > 20, torch_free
    script = (
        "import sys, importlib\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {BLOCKED!r}:\n"
        "            raise ImportError(f'{name} is blocked: this module must import without torch')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for name in {torch_free!r}:\n"
        "    importlib.import_module(name)\n"
        f"leaked = sorted(m for m in sys.modules if m.split('.')[0] in {BLOCKED!r})\n"
        "assert not leaked, leaked\n"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], cwd=PACKAGE.parent, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_tests_are_arranged_by_subpackage_and_every_folder_is_on_the_path():
    """Test modules share helpers across folders by plain imports, so each folder is on pytest's path (pyproject),
    and no two test files share a name (pytest imports them by basename)."""
    import tomllib

    tests = PACKAGE.parent / "tests"
    folders = sorted(p.name for p in tests.iterdir() if p.is_dir() and any(p.glob("test_*.py")))
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert set(folders) - {"bench"} <= subpackages, f"test folders that name no subpackage: {set(folders) - subpackages}"
    paths = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["pythonpath"]
    assert {f"tests/{f}" for f in folders} <= set(paths), sorted({f"tests/{f}" for f in folders} - set(paths))
    names = [p.name for p in tests.rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})


def test_no_private_name_is_imported_across_areas():
    """A package offers what another needs under a public name (``gallery`` gives ``cluster`` its writers):
    ``from sketchlvm.<area>... import _name`` only within the same area."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        area = _area(_module_name(path))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("sketchlvm."):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private and _area(node.module) != area:
                    found.append(f"{_module_name(path)}: from {node.module} import {', '.join(private)}")
    assert found == []
