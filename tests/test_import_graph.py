"""The layering the brief promises: no import cycles between the stage modules, nor between the packages
below them (imports inside functions count too: a deferred import is still a dependency)."""

import ast
from pathlib import Path

import handcli

ROOT = Path(handcli.__file__).parent
LAYERED_PACKAGES = ("handmodels", "fitting", "diffusion", "physics", "datagen", "training", "variance", "render",
                    "importers")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("handcli")}


def _graph(unit_of) -> dict[str, set[str]]:
    """Edges between units (unit_of: module name -> unit or None), self-edges dropped."""
    modules = {_module_name(path): path for path in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        source = unit_of(name)
        if source is None:
            continue
        for target in _imports(path):
            while target not in modules and "." in target:  # `from pkg import name`: name may be a symbol
                target = target.rsplit(".", 1)[0]
            unit = unit_of(target)
            if unit is not None and unit != source:
                graph.setdefault(source, set()).add(unit)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_stage_modules_have_no_import_cycle():
    def stage(name):
        return name if name.startswith("handcli.stages.") else None

    assert _cycle(_graph(stage)) is None


def test_layered_packages_have_no_import_cycle():
    def package(name):
        parts = name.split(".")
        return parts[1] if len(parts) > 1 and parts[1] in LAYERED_PACKAGES else None

    assert _cycle(_graph(package)) is None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None
