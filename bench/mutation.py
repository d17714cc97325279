"""Mutation testing: do the tests notice when a decider's code is wrong?

For each module in TARGETS, every mutant (one small change: a comparison, arithmetic or boolean
operator swapped, a constant tweaked, a `not` dropped, a returned value replaced, a statement
deleted) is written into a copy of the repository and the module's tests are run there. A mutant
the tests fail on is killed; one they pass is a survivor: a behaviour no test pins down (or an
equivalent change). Prints the kill rate per module and every survivor.

    .venv/bin/python bench/mutation.py                        # every target
    .venv/bin/python bench/mutation.py autoscaler/decision    # targets whose path contains this

Why our own ~250 lines and not mutmut: mutmut 3 rewrites a whole source tree into its own layout
and needs its configuration per project; here each module is driven by exactly the tests named
beside it, and the copy imports as `inferstack` through sys.path and PYTHONPATH, so subprocesses
that the tests start (`inferstack serve`, sim replicas) run the mutant too. Each test run is a fork
of a process that has already imported the third-party packages, which makes a mutant cost about
a second.
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Module (repository path) -> the tests that must kill its mutants. Paths are today's: when a module
# moves, move its row. `pure` marks the deciders, whose kill rate is held to >= 90%.
TARGETS: dict[str, tuple[bool, list[str]]] = {
    "runtime/inferstack/autoscaler/decision.py": (True, ["tests/autoscaler/test_decision.py"]),
    "runtime/inferstack/autoscaler/backlog.py": (
        True, ["tests/autoscaler/test_backlog.py", "tests/autoscaler/test_decision.py"]),
    "runtime/inferstack/autoscaler/bounds.py": (True, ["tests/autoscaler/test_decision.py"]),
    "runtime/inferstack/autoscaler/state.py": (True, ["tests/autoscaler/test_decision.py"]),
    "runtime/inferstack/autoscaler/metrics_window.py": (
        True, ["tests/autoscaler/test_metrics_window.py", "tests/autoscaler/test_decision.py"]),
    "runtime/inferstack/autoscaler/observe.py": (True, ["tests/autoscaler/test_observe.py"]),
    "runtime/inferstack/autoscaler/shared_window.py": (True, ["tests/autoscaler/test_shared_window.py"]),
    "runtime/inferstack/autoscaler/victims.py": (True, ["tests/autoscaler/test_victims.py"]),
    "runtime/inferstack/batches/transitions.py": (True, ["tests/batches/test_transitions.py"]),
    "runtime/inferstack/ratelimit.py": (True, ["tests/ratelimit"]),
    "runtime/inferstack/providers/placement.py": (True, ["tests/providers/test_placement.py"]),
    "runtime/inferstack/gateway/routing.py": (
        True, ["tests/gateway/test_gateway_routing.py", "tests/gateway/test_routing_under_load.py"]),
    # Admission (hold, FIFO queue, per-replica capacity, batch slots, release), in process with fake
    # replicas and the manual clock.
    "runtime/inferstack/gateway/admission.py": (False, ["tests/gateway"]),
    # The relay, with its retry on another replica before the first byte.
    "runtime/inferstack/gateway/entry.py": (False, ["tests/gateway"]),
    # The replica lifecycle (start, probe, drain, fail, back off), in process.
    "runtime/inferstack/controller/replicas.py": (False, ["tests/controller"]),
}

REPO = Path(__file__).resolve().parents[1]
COMPARE_SWAPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}
BINOP_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
    ast.Mod: ast.Mult, ast.Pow: ast.Mult,
}
DELETABLE = (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return, ast.Raise, ast.If, ast.For, ast.While,
             ast.With, ast.AsyncWith, ast.AsyncFor)
NOT_CODE = ("annotation", "returns", "decorator_list", "type_params")  # fields that do not run as logic


@dataclass(frozen=True)
class Mutant:
    index: int
    line: int
    description: str


def _points(tree: ast.AST) -> Iterator[tuple[ast.AST, str, ast.AST | None, int]]:
    """Every mutation point: (node, what changes, replacement node or None for deletion, line)."""
    for node in _logic_nodes(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in COMPARE_SWAPS:
                    new = copy.deepcopy(node)
                    new.ops[i] = COMPARE_SWAPS[type(op)]()
                    yield node, f"{type(op).__name__} -> {type(new.ops[i]).__name__}", new, line
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in BINOP_SWAPS:
            new = copy.deepcopy(node)
            new.op = BINOP_SWAPS[type(node.op)]()
            yield node, f"{type(node.op).__name__} -> {type(new.op).__name__}", new, line
        elif isinstance(node, ast.BoolOp):
            new = copy.deepcopy(node)
            new.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            yield node, f"{type(node.op).__name__} -> {type(new.op).__name__}", new, line
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield node, "not x -> x", node.operand, line
        elif isinstance(node, ast.Constant) and type(node.value) in (bool, int, float):
            value = node.value
            tweaked = (not value) if isinstance(value, bool) else (value + 1 if value in (0, 0.0) else value * 2)
            yield node, f"{value!r} -> {tweaked!r}", ast.Constant(tweaked), line
        elif isinstance(node, ast.Return) and node.value is not None and not _is_none(node.value):
            yield node, "return x -> return None", ast.Return(ast.Constant(None)), line
        if isinstance(node, DELETABLE) and not _docstring(node):
            yield node, f"delete the {type(node).__name__.lower()} statement", ast.Pass(), line


def _logic_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Nodes in the order they appear, skipping annotations, decorators, docstrings, `...` bodies and
    type-only declarations (a Protocol's members, a TypeVar): none of them runs as logic."""
    for name, value in ast.iter_fields(tree):
        if name in NOT_CODE:
            continue
        children = value if isinstance(value, list) else [value]
        for child in children:
            if isinstance(child, ast.AST) and not _docstring(child) and not _type_only(child):
                yield child
                yield from _logic_nodes(child)


def _docstring(node: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _type_only(node: ast.AST) -> bool:
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and node.value.value is Ellipsis:
        return True
    if isinstance(node, ast.ClassDef):
        return any(isinstance(base, ast.Name) and base.id == "Protocol" for base in node.bases)
    call = node.value if isinstance(node, ast.Assign) else None
    return isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "TypeVar"


def _is_none(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


class _Replace(ast.NodeTransformer):
    def __init__(self, target: ast.AST, replacement: ast.AST) -> None:
        self.target, self.replacement = target, replacement

    def visit(self, node: ast.AST) -> ast.AST:
        if node is self.target:
            return ast.copy_location(self.replacement, node)
        return super().visit(node)


def mutants(source: str) -> Iterator[tuple[Mutant, str]]:
    """Each mutant of `source` with its code (unparsed: comments go, behaviour stays)."""
    count = sum(1 for _ in _points(ast.parse(source)))
    for index in range(count):
        tree = ast.parse(source)  # a fresh tree per mutant: node identity picks the point
        node, description, replacement, line = next(p for i, p in enumerate(_points(tree)) if i == index)
        mutated = ast.fix_missing_locations(_Replace(node, replacement).visit(tree))
        yield Mutant(index, line, description), ast.unparse(mutated)


# Third-party packages the tests import, loaded once in this process so that each forked test run
# imports only inferstack and the tests (from the mutated copy): ~1 s a mutant instead of ~5.
PRELOAD = ("pytest", "pytest_asyncio", "pytest_timeout", "aiohttp", "fastapi", "starlette", "pydantic", "sqlalchemy",
           "psycopg", "httpx", "orjson", "prometheus_client", "yaml", "typer", "rich", "psutil", "uvloop")


def preload() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    assert not any(name == "inferstack" or name.startswith("inferstack.") for name in sys.modules), (
        "inferstack must not be imported before the fork: each run imports the mutated copy")


def run_tests(workdir: Path, tests: list[str], timeout_s: float) -> bool:
    """True when the tests pass (the mutant survived). A hang past `timeout_s` counts as killed.

    The run is a fork of this process with the mutated copy first on sys.path (and in PYTHONPATH, so
    subprocesses that the tests start run the mutant too)."""
    pid = os.fork()
    if pid == 0:  # the child: run pytest on the copy, report through the exit code only
        try:
            os.chdir(workdir)
            os.environ["PYTHONPATH"] = str(workdir / "runtime")
            sys.path.insert(0, str(workdir / "runtime"))
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            code = pytest.main(["-q", "-x", "-p", "no:cacheprovider", "--no-header", *tests])
            os._exit(int(code))
        except BaseException:
            os._exit(99)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return False


def mutate_module(module: str, tests: list[str], workdir: Path) -> tuple[int, list[Mutant]]:
    """Run every mutant of `module` in `workdir` (a copy of the repo); return (count, survivors)."""
    path = workdir / module
    original = path.read_text()
    started = time.monotonic()
    assert run_tests(workdir, tests, timeout_s=1800), f"{tests} fail without any mutant"
    timeout_s = max(30.0, 5 * (time.monotonic() - started))
    survivors, count = [], 0
    try:
        for mutant, code in mutants(original):
            count += 1
            path.write_text(code)
            survived = run_tests(workdir, tests, timeout_s)
            if survived:
                survivors.append(mutant)
            print(f"  line {mutant.line:4d} {'SURVIVED' if survived else 'killed  '} {mutant.description}", flush=True)
    finally:
        path.write_text(original)
    return count, survivors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="run only targets whose path contains one of these")
    args = parser.parse_args()
    preload()
    chosen = {m: t for m, t in TARGETS.items() if not args.only or any(o in m for o in args.only)}
    results: dict[str, tuple[bool, int, list[Mutant]]] = {}
    with tempfile.TemporaryDirectory(prefix="inferstack-mutation-") as temp:
        workdir = Path(temp) / "repo"
        shutil.copytree(REPO, workdir, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info"))
        for module, (pure, tests) in chosen.items():
            print(f"{module} ({', '.join(tests)})", flush=True)
            count, survivors = mutate_module(module, tests, workdir)
            results[module] = (pure, count, survivors)
    print("\nkill rate")
    for module, (_, count, survivors) in results.items():
        print(f"  {module}: {count - len(survivors)}/{count} = {(count - len(survivors)) / max(count, 1):.0%}")
        for mutant in survivors:
            print(f"      survivor: line {mutant.line}: {mutant.description}")
    pure = [(count, len(survivors)) for p, count, survivors in results.values() if p]
    if pure:
        total, alive = sum(c for c, _ in pure), sum(s for _, s in pure)
        print(f"  pure modules together: {total - alive}/{total} = {(total - alive) / max(total, 1):.0%}")


if __name__ == "__main__":
    main()
