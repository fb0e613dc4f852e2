"""The package's shape, as the architecture promises it: stages import only earlier stages, no import cycle (imports
inside functions included), and no module too long to read in one sitting."""

import ast
from pathlib import Path

import autopipe

PACKAGE = Path(autopipe.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every autopipe module `path` imports, anywhere in the file (inside a function or for type checkers too)."""
    this = _module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name == "autopipe" or name.startswith("autopipe.")}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among modules (a package's __init__ importing its own modules is not one), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for child in sorted(graph[node]):
            if node.startswith(child + "."):  # a module reaching its own package's __init__
                continue
            if state.get(child) == 1:
                return stack[stack.index(child):] + [child]
            if child not in state and (found := visit(child)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_import_graph_sees_relative_and_late_imports():
    graph = _graph()
    assert "autopipe.pipeline" in graph["autopipe.cli"]  # imported inside a command function
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package():
    assert _cycle(_graph()) is None


def test_predict_evaluate_and_models_never_import_train():
    graph = _graph()
    offenders = {name: sorted(m for m in imported if m.startswith("autopipe.train"))
                 for name, imported in graph.items()
                 if name.split(".")[1:2] in (["predict"], ["evaluate"], ["models"])}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_no_module_is_too_long_to_read_and_the_cli_only_wires():
    lengths = {_module_name(p): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in lengths.items() if n > 600} == {}
    assert lengths["autopipe.cli"] < 300
