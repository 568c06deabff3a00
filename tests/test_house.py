"""The house rules, read from the source (no import of the package): every function body short
enough to read, no reaching into another package's private names, imports that only run one way.

Each rule fails on the concrete thing a careless change adds: a 61-line function, a
``from landscape.figures._axes import _x`` in an experiment, an ``import landscape.cli`` inside the
probe layer.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "landscape"
MAX_FUNCTION_LINES = 60
#: The bottom of the house: these modules import nothing of the package but each other.
BOTTOM = {"choices", "records"}


def _sources() -> dict[str, ast.Module]:
    return {".".join(("landscape", *p.relative_to(PACKAGE).with_suffix("").parts)): ast.parse(
        p.read_text(encoding="utf-8"), filename=str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


SOURCES = _sources()


def _package_of(module: str) -> str:
    """``landscape.probes._step`` → ``landscape.probes``; a package's ``__init__`` is its package."""
    parts = module.split(".")
    if parts[-1] == "__init__":
        return ".".join(parts[:-1])
    candidate = ".".join(parts)
    return candidate if f"{candidate}.__init__" in SOURCES else ".".join(parts[:-1])


def _room(module: str) -> str:
    """The top-level room of a module: ``landscape.probes._step`` → ``probes``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(tree: ast.Module) -> list[tuple[str, str, int]]:
    """``(module, name, line)`` of every import of the package, lazy ones inside functions too."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("landscape"):
            found += [(node.module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "", node.lineno) for alias in node.names
                      if alias.name.startswith("landscape")]
    return found


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function's code: from its first statement after the docstring to its end (the
    signature and the docstring, the formula and the example, do not count)."""
    body = node.body
    if (len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        body = body[1:]
    return node.end_lineno - body[0].lineno + 1


def test_no_function_body_is_longer_than_sixty_lines():
    long = [f"{module}.{node.name}: {_body_lines(node)} lines"
            for module, tree in SOURCES.items() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and _body_lines(node) > MAX_FUNCTION_LINES]
    assert not long, "\n".join(long)


def test_no_module_imports_another_packages_private_names():
    """Private modules and names are shared among a package's own modules only."""
    bad = []
    for module, tree in SOURCES.items():
        home = _package_of(module)
        for target, name, line in _imports(tree):
            path = target.split(".")
            private_part = next((i for i, part in enumerate(path) if part.startswith("_")), None)
            if private_part is not None:  # landscape.pkg._module: only pkg's own modules
                owner = ".".join(path[:private_part])
                if owner != home:
                    bad.append(f"{module}:{line} imports {target}")
            elif name.startswith("_") and _package_of(target) != home and target != home:
                bad.append(f"{module}:{line} imports {target}.{name}")
    assert not bad, "\n".join(bad)


def test_imports_run_one_way_between_rooms():
    """No two top-level rooms import each other, directly or round a circle (configuration,
    model registry and factories included), and the bottom modules (records, named choices)
    import nothing above them."""
    graph: dict[str, set[str]] = defaultdict(set)
    for module, tree in SOURCES.items():
        for target, _, _ in _imports(tree):
            a, b = _room(module), _room(target)
            if a != b and a != "__init__" and b != "__init__":
                graph[a].add(b)
    upward = [f"{a} -> {b}" for a in BOTTOM for b in graph.get(a, ()) if b not in BOTTOM]
    assert not upward, "the bottom imports upward: " + ", ".join(sorted(upward))
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import circles between rooms:\n" + "\n".join(cycles)


def test_the_rules_see_what_they_forbid():
    """The checks above are only worth something if they notice a violation."""
    tree = ast.parse("def f():\n    from landscape.figures._axes import _x\n    import landscape.cli\n")
    assert _imports(tree) == [("landscape.figures._axes", "_x", 2), ("landscape.cli", "", 3)]
    assert _package_of("landscape.probes._step") == "landscape.probes"
    assert _room("landscape.probes._step") == "probes"
    function = ast.parse('def f():\n    """Doc.\n\n    More."""\n' + "    x = 1\n" * 61).body[0]
    assert _body_lines(function) == 61 > MAX_FUNCTION_LINES
