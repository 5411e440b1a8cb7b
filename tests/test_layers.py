"""The layering in docs/architecture.md, read off the code: every import of a project module
(module-level or inside a function) points down (`ragqa` on top, then `app`, then `ingest` and
`rag`, then `llm`), and no set of modules imports itself round in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGES = ("ragqa", "app", "ingest", "rag", "llm")
#: What each package may import besides itself. `rag` reaches into `llm` only for the generator
#: protocol and its message types (and llm's error class, which the edges turn into messages).
ALLOWED = {
    "ragqa": {"app", "ingest", "rag", "llm"},
    "app": {"ingest", "rag", "llm"},
    "ingest": {"rag"},
    "rag": {"llm"},
    "llm": set(),
}
RAG_MAY_USE_FROM_LLM = {"llm.generator", "llm.errors"}


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules `path` imports, anywhere in the file (lazy imports count)."""
    out: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from a import b` imports a.b when that is a module, else a.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a non-module attribute
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = project_modules(root)
    known = set(modules)
    return {name: imports_of(path, name, known) for name, path in modules.items()}


def against_the_layers(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for source, targets in graph.items():
        top = source.split(".")[0]
        for target in sorted(targets):
            other = target.split(".")[0]
            if other == top:
                continue
            if other not in ALLOWED[top]:
                bad.append(f"{source} -> {target}")
            elif top == "rag" and other == "llm" and target not in RAG_MAY_USE_FROM_LLM:
                bad.append(f"{source} -> {target} (rag uses only llm's generator protocol and errors)")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_against_the_layers() -> None:
    assert against_the_layers(import_graph()) == []


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_a_package_importing_its_parent_package_only_at_its_init_is_not_a_cycle() -> None:
    # `ragqa.cli` is a package whose __init__ re-exports `ragqa.cli.main`: an edge, not a cycle.
    graph = import_graph()
    assert "ragqa.cli.main" in graph["ragqa.cli"]


@pytest.mark.parametrize("layout, bad, cyclic", [
    ({"rag/a.py": "from rag import b\n", "rag/b.py": "def f():\n    from rag.a import x\n"}, [], [["rag.a", "rag.b"]]),
    ({"rag/a.py": "from ragqa import wiring\n", "ragqa/wiring.py": ""}, ["rag.a -> ragqa.wiring"], []),
    ({"rag/a.py": "from llm.native import N\n", "llm/native.py": ""}, ["rag.a -> llm.native (rag uses only llm's "
                                                                       "generator protocol and errors)"], []),
    ({"app/a.py": "import ragqa.wiring\n", "ragqa/wiring.py": ""}, ["app.a -> ragqa.wiring"], []),
    ({"ingest/a.py": "from llm import errors\n", "llm/errors.py": ""}, ["ingest.a -> llm.errors"], []),
    ({"ragqa/a.py": "from rag.b import y\n", "rag/b.py": "from .c import z\n", "rag/c.py": ""}, [], []),
])
def test_the_walk_finds_lazy_cycles_and_upward_imports(tmp_path: Path, layout: dict[str, str], bad: list[str],
                                                       cyclic: list[list[str]]) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    for rel, text in layout.items():
        (tmp_path / rel).write_text(text)
    graph = import_graph(tmp_path)
    assert against_the_layers(graph) == bad
    assert cycles(graph) == cyclic
