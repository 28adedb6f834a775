"""The layout stays honest: no import cycle (imports inside functions included), nothing in data/ or models/
imports app/, and app's stage folders import only the folders before them (the order in app/__init__.py)."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("app", "data", "models")
STAGES = ("runtime", "config", "inference", "evaluation", "dataset", "planning", "training", "exporting")
"""app's stage folders, lowest first (app/__init__.py)."""
SIDEWAYS = {("training", "planning"), ("exporting", "planning")}
"""Stage pairs that are not in order but must not import each other either (the __init__ docstrings say so)."""


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph():
    """{module: {imported module, ...}} of the project's modules, read with `ast` (nothing is run)."""
    paths = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                found = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            for target in found:
                while target and target not in paths:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def stage(module):
    parts = module.split(".")
    return parts[1] if parts[0] == "app" and len(parts) >= 2 and parts[1] in STAGES else None


GRAPH = import_graph()


def test_the_graph_sees_lazy_imports():
    # budget.time_warmup imported the model builder inside a function: such imports must count
    assert "app.training.model" in GRAPH["app.training.budget"]
    assert GRAPH["app.train"] >= {"app.training.loop", "app.config.loading"}


def test_no_import_cycle():
    assert cycles(GRAPH) == []


def test_cycle_detection_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("lower", ["data", "models"])
def test_lower_layers_do_not_import_app(lower):
    upward = sorted((a, b) for a, targets in GRAPH.items() for b in targets
                    if a.split(".")[0] == lower and b.split(".")[0] == "app")
    assert upward == []


def test_stage_folders_import_only_earlier_stages():
    wrong = []
    for module, targets in GRAPH.items():
        own = stage(module)
        for target in targets:
            other = stage(target)
            if target.split(".")[0] == "app" and own is not None and other is None and target != "app":
                wrong.append((module, target, "a command module"))
            elif own and other and own != other and (STAGES.index(other) > STAGES.index(own)
                                                     or (own, other) in SIDEWAYS):
                wrong.append((module, target, f"{other} comes after {own}"))
    assert wrong == []


def test_every_stage_folder_says_what_it_owns():
    for name in STAGES:
        doc = ast.get_docstring(ast.parse((ROOT / "app" / name / "__init__.py").read_text()))
        assert doc and "Imports" in doc, name
