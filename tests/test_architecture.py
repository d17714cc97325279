"""The runtime's shape, checked: no import circle, and no module imports from a higher floor.

The floors are the ones docs/architecture.md draws. A module's floor is that of the longest prefix of its
dotted name listed in FLOORS; a module not listed fails the test, so a new package has to be placed on
purpose. Every `import` and `from ... import` of `inferstack` counts, wherever it stands in the file
(also inside a function or under TYPE_CHECKING): a deferred import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "runtime" / "inferstack"

# Lower numbers are lower floors. A module may import its own floor and the ones below; within a floor,
# the circle test keeps the arrows one way.
FLOORS: dict[str, int] = {
    # 1. foundations: plain data, the clock, the error shape, settings
    "inferstack.clock": 1,
    "inferstack.errors": 1,
    "inferstack.settings": 1,
    "inferstack.hardware": 1,
    "inferstack.spec": 1,
    "inferstack.access": 1,
    "inferstack.secret_scan": 1,
    "inferstack.plain_text": 1,
    "inferstack.lora": 1,
    "inferstack.s3": 1,
    # 2. persistence, the pure deciders, and what a replica runs
    "inferstack.db": 2,
    "inferstack.db_password": 2,
    "inferstack.store": 2,
    "inferstack.fencing": 2,
    "inferstack.auth": 2,
    "inferstack.ratelimit": 2,
    "inferstack.secrets_at_rest": 2,
    "inferstack.files": 2,
    "inferstack.history": 2,
    "inferstack.autoscaler": 2,
    "inferstack.batches.transitions": 2,
    "inferstack.batches.validation": 2,
    "inferstack.batches.results": 2,
    "inferstack.engines": 2,
    "inferstack.model_hub": 2,
    "inferstack.lora_fetch": 2,
    # 3. where replicas run, and the live view of them
    "inferstack.providers": 3,
    "inferstack.fleet": 3,
    # 4. the effectful loops
    "inferstack.controller": 4,
    "inferstack.gateway": 4,
    "inferstack.batches": 4,
    # 5. the faces and the composition root
    "inferstack.api": 5,
    "inferstack.client": 5,
    "inferstack.declared": 5,
    "inferstack.server": 5,
    "inferstack.cli": 5,
    "inferstack.simulate": 5,
    "inferstack.__main__": 5,
}
PACKAGE_ROOT_FLOOR = 0  # `inferstack/__init__.py` itself: it imports nothing


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, name: str) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "inferstack")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != "inferstack":
                continue
            # `from inferstack.x import y` may name a submodule y: count it when it is one.
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                yield candidate if candidate in MODULES else target


MODULES: dict[str, Path] = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets = set()
        for target in imported_modules(path, name):
            while target not in MODULES and "." in target:
                target = target.rpartition(".")[0]  # `from pkg.mod import name`
            if target in MODULES and target != name:
                targets.add(target)
        edges[name] = targets
    return edges


def floor(name: str) -> int:
    if name == "inferstack":
        return PACKAGE_ROOT_FLOOR
    matches = [prefix for prefix in FLOORS if name == prefix or name.startswith(prefix + ".")]
    if not matches:
        pytest.fail(f"{name} is on no floor: place it in FLOORS (tests/test_architecture.py) and docs/architecture.md")
    return FLOORS[max(matches, key=len)]


def test_every_module_is_on_a_floor() -> None:
    for name in MODULES:
        floor(name)


def test_no_module_imports_from_a_higher_floor() -> None:
    upward = [
        f"{source} (floor {floor(source)}) imports {target} (floor {floor(target)})"
        for source, targets in graph().items()
        for target in sorted(targets)
        if floor(target) > floor(source) and not target.startswith(source + ".")  # a package's __init__
    ]
    assert not upward, "imports that run back up:\n" + "\n".join(upward)


def test_no_import_circle() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_no_module_is_too_long_to_read_in_one_sitting() -> None:
    """~400 lines at most: a longer module has grown a second job."""
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 420}
    assert not long, f"split these by job: {long}"
