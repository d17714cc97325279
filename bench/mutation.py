"""Mutation testing: do the tests notice when a decider's code is wrong?

For each module in TARGETS, every mutant (one small change: a comparison, arithmetic or boolean
operator swapped, a constant tweaked, a `not` dropped, a returned value replaced, a statement
deleted) is written into a copy of the repository and the module's tests are run there. A mutant
the tests fail on is killed; one they pass is a survivor: a behaviour no test pins down (or an
equivalent change). Prints the kill rate per module and every survivor. Mutants that no test can
kill (nothing observable changes) are listed in EQUIVALENT, each with its reason: they are not run
and are reported apart from the rate.

    .venv/bin/python bench/mutation.py --pure                 # the pure modules (the 90% target), ~10 min
    .venv/bin/python bench/mutation.py autoscaler/decision    # targets whose path contains this
    .venv/bin/python bench/mutation.py                        # also admission, the relay, the replica
                                                              # lifecycle (their whole test directories: hours)

Why our own ~450 lines and not mutmut: mutmut 3 rewrites a whole source tree into its own layout
and needs its configuration per project; here each module is driven by exactly the tests named
beside it, and the copy imports as `inferstack` through sys.path and PYTHONPATH, so subprocesses
that the tests start (`inferstack serve`, sim replicas) run the mutant too. Each test run is a fork
of a worker that has already loaded the third-party packages, pytest's plugins and every inferstack
module that does not import the mutated one, with its heap frozen out of the garbage collector's
sight: a mutant of a pure module costs well under a second of CPU.
"""

from __future__ import annotations

import argparse
import ast
import copy
import gc
import importlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest

# Module (repository path) -> the tests that must kill its mutants. Paths are today's: when a module
# moves, move its row. `pure` marks the deciders, whose kill rate is held to >= 90%.
TARGETS: dict[str, tuple[bool, list[str]]] = {
    "runtime/inferstack/autoscaler/decision.py": (
        True, ["tests/autoscaler/test_decision.py", "tests/autoscaler/test_decision_edges.py"]),
    "runtime/inferstack/autoscaler/backlog.py": (
        True, ["tests/autoscaler/test_backlog.py", "tests/autoscaler/test_decision.py"]),
    "runtime/inferstack/autoscaler/bounds.py": (True, ["tests/autoscaler/test_decision.py"]),
    "runtime/inferstack/autoscaler/state.py": (True, ["tests/autoscaler/test_decision.py"]),
    "runtime/inferstack/autoscaler/metrics_window.py": (
        True, ["tests/autoscaler/test_metrics_window.py", "tests/autoscaler/test_metrics_window_edges.py",
               "tests/autoscaler/test_decision.py"]),
    "runtime/inferstack/autoscaler/observe.py": (
        True, ["tests/autoscaler/test_observe.py", "tests/autoscaler/test_observe_edges.py"]),
    "runtime/inferstack/autoscaler/shared_window.py": (
        True, ["tests/autoscaler/test_shared_window.py", "tests/autoscaler/test_shared_window_edges.py"]),
    "runtime/inferstack/autoscaler/victims.py": (True, ["tests/autoscaler/test_victims.py"]),
    "runtime/inferstack/autoscaler/stabilisation.py": (
        True, ["tests/autoscaler/test_decision.py", "tests/autoscaler/test_decision_edges.py"]),
    "runtime/inferstack/history/series.py": (True, ["tests/history/test_series.py"]),
    "runtime/inferstack/batches/transitions.py": (
        True, ["tests/batches/test_transitions.py", "tests/batches/test_transitions_edges.py"]),
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

# Mutants no test can kill because nothing any caller can observe changes: not run, and reported
# apart from the kill rate. Each row: (module, "function: the mutated line's source text", the
# mutation as the report names it, why it is equivalent). Matched by text, not line number, so a row
# outlives edits elsewhere; a row that matches nothing is reported as stale.
EQUIVALENT: list[tuple[str, str, str, str]] = [
    ("runtime/inferstack/autoscaler/decision.py", "_is_idle: return False", "return x -> return None",
     "_is_idle's answer is only read as a truth value (`if _is_idle(...)`), where None is false like False"),
    ("runtime/inferstack/autoscaler/decision.py", "_panic_until: return None", "delete the return statement",
     "the last line of _panic_until: a function that ends without a return returns None anyway"),
    *(("runtime/inferstack/autoscaler/decision.py", source, what,
       "when the proposal is at least current, the rest of _stabilise returns it unchanged too "
       "(min(current, highest) <= current <= proposal)")
      for source, what in (("_stabilise: if proposal.replicas >= current:", "delete the if statement"),
                           ("_stabilise: if proposal.replicas >= current:", "GtE -> Gt"),
                           ("_stabilise: return proposal", "delete the return statement"))),
    ("runtime/inferstack/autoscaler/bounds.py",
     'clamp: rule = None if bounded == desired else ("min" if desired < spec.min_replicas else "max")', "Lt -> LtE",
     "desired == min_replicas is never bounded (bounded == desired picks None first; the spec keeps min <= max)"),
    ("runtime/inferstack/autoscaler/metrics_window.py",
     "_touch: if self._last_activity_at is None or now > self._last_activity_at:", "Gt -> GtE",
     "at now == the last activity the assignment writes the value already there"),
    *(("runtime/inferstack/autoscaler/metrics_window.py", f"_trim: if self._{kind}_complete_since is not None and "
       f"self._{kind}_complete_since < cut:", "Lt -> LtE", "when it equals `cut`, raising it to `cut` changes nothing")
      for kind in ("arrivals", "completions")),
    ("runtime/inferstack/autoscaler/metrics_window.py",
     "_rate: span = window_s if age >= window_s else max(age, min(1.0, window_s))", "GtE -> Gt",
     "at age == window_s the other branch gives max(window_s, min(1, window_s)) == window_s too"),
    ("runtime/inferstack/ratelimit.py", "refill: if now > self.at:", "Gt -> GtE",
     "at now == at the refill adds 0 and sets `at` to the value it has"),
    ("runtime/inferstack/ratelimit.py", "_refusal: return None", "delete the return statement",
     "the last line of _refusal: a function that ends without a return returns None anyway"),
    ("runtime/inferstack/autoscaler/shared_window.py",
     "bucket_percentile: rank = max(1, -(-percentile * total // 100))", "FloorDiv -> Div",
     "the rank is only compared with whole counts (`seen >= rank`), and seen >= x agrees with seen >= ceil(x) "
     "for every whole seen"),
    *(("runtime/inferstack/autoscaler/shared_window.py", "bucket_percentile: return BUCKET_BOUNDS_MS[-1]",
       what,
       "unreachable: for a percentile up to 100 the rank is at most the total, so the loop returns first")
      for what in ("return x -> return None", "delete the return statement", "1 -> 2")),
    ("runtime/inferstack/gateway/routing.py", "choose_replica: return a if a.outstanding <= b.outstanding else b",
     "LtE -> Lt",
     "a tie between the two sampled replicas: `rng.sample` draws the pair in random order, so picking the "
     "second instead of the first is the same uniform choice"),
]

PURE_TARGET = 0.90  # the pure modules' kill rate below which the run fails
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
    source: str = ""  # "function: the original line it mutates", stripped


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
    lines, functions = source.splitlines(), _functions(ast.parse(source))
    for index in range(count):
        tree = ast.parse(source)  # a fresh tree per mutant: node identity picks the point
        node, description, replacement, line = next(p for i, p in enumerate(_points(tree)) if i == index)
        mutated = ast.fix_missing_locations(_Replace(node, replacement).visit(tree))
        yield Mutant(index, line, description, _where(lines, functions, line)), ast.unparse(mutated)


def _where(lines: list[str], functions: dict[int, str], line: int) -> str:
    """"function: line text", with " #2", " #3"... when the same text came earlier in the same function."""
    function, text = functions.get(line, "<module>"), lines[line - 1].strip()
    earlier = sum(1 for n in range(1, line)
                  if functions.get(n, "<module>") == function and lines[n - 1].strip() == text)
    return f"{function}: {text}" + (f" #{earlier + 1}" if earlier else "")


def _functions(tree: ast.AST) -> dict[int, str]:
    """Line -> the innermost function it is in (ast.walk visits outer functions first)."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found |= dict.fromkeys(range(node.lineno, (node.end_lineno or node.lineno) + 1), node.name)
    return found


# Third-party packages the tests import, loaded once in this process so that each forked test run
# imports only inferstack and the tests (from the mutated copy).
PRELOAD = ("pytest", "pytest_asyncio", "pytest_timeout", "aiohttp", "fastapi", "starlette", "pydantic", "sqlalchemy",
           "psycopg", "httpx", "orjson", "prometheus_client", "yaml", "typer", "rich", "psutil", "uvloop")


def preload() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    # pytest's plugins too: otherwise every run imports them again, rewriting their asserts and compiling
    # them from source (no bytecode is cached under PYTHONDONTWRITEBYTECODE), ~10 s a run on a busy machine.
    for plugin in entry_points(group="pytest11"):
        plugin.load()
    assert not any(name == "inferstack" or name.startswith("inferstack.") for name in sys.modules), (
        "inferstack must not be imported before the fork: each run imports the mutated copy")
    # What is loaded now lives as long as the process: out of the collector's sight, each run's garbage
    # collections (pytest forces several) stop walking it, ~1.5 s a run.
    gc.freeze()


def run_tests(workdir: Path, tests: list[str], timeout_s: float, loaded_to: Path | None = None) -> bool:
    """True when the tests pass (the mutant survived). A hang past `timeout_s` counts as killed.

    The run is a fork of this process with the mutated copy first on sys.path (and in PYTHONPATH, so
    subprocesses that the tests start run the mutant too). `loaded_to` receives the names of the
    inferstack modules the tests imported."""
    pid = os.fork()
    if pid == 0:  # the child: run pytest on the copy, report through the exit code only
        try:
            _enter(workdir)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            code = pytest.main(["-q", "-x", "-p", "no:cacheprovider", "--no-header", *tests])
            if loaded_to is not None:
                loaded_to.write_text("\n".join(sorted(m for m in sys.modules if _ours(m))))
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


def _enter(workdir: Path) -> None:
    """Make this process import inferstack from the copy (idempotent)."""
    os.chdir(workdir)
    os.environ["PYTHONPATH"] = str(workdir / "runtime")
    if sys.path[0] != str(workdir / "runtime"):
        sys.path.insert(0, str(workdir / "runtime"))


def _ours(name: str) -> bool:
    return name == "inferstack" or name.startswith("inferstack.")


def importers(runtime: Path, module: str) -> set[str]:
    """The inferstack modules that import `module` when they load, directly or through others (and it).

    Those must load afresh with each mutant; every other module may be loaded once before the mutants
    run, which saves each run their import (pydantic models, FastAPI apps) and changes nothing they do."""
    imports: dict[str, set[str]] = {}
    for path in (runtime / "inferstack").rglob("*.py"):
        parts = path.relative_to(runtime).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}  # its packages
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if _ours(alias.name)}
            elif isinstance(node, ast.ImportFrom) and node.module and _ours(node.module):
                found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        imports[name] = found
    dependent, grew = {module}, True
    while grew:
        more = {name for name, found in imports.items() if found & dependent} - dependent
        dependent |= more
        grew = bool(more)
    return dependent


@dataclass
class Result:
    pure: bool
    count: int  # mutants run, the equivalent ones not included
    survivors: list[Mutant]
    equivalent: list[Mutant]


def mutate_module(module: str, tests: list[str], workdir: Path) -> Result:
    """Run every mutant of `module` in `workdir` (a copy of the repo).

    The mutants run from a worker process that has loaded, from the copy, every inferstack module the
    tests need except `module` and its importers; this process stays clean for the next module."""
    loaded_file = workdir / ".mutation-loaded"
    started = time.monotonic()
    if TARGETS[module][0]:
        # A pure module's tests need no service, so none of the conftest fixtures (which load the whole
        # server): without them each run loads only what its tests import.
        tests = ["--noconftest", *tests]
    assert run_tests(workdir, tests, timeout_s=1800, loaded_to=loaded_file), f"{tests} fail without any mutant"
    timeout_s = max(30.0, 5 * (time.monotonic() - started))
    name = ".".join(Path(module).relative_to("runtime").with_suffix("").parts)
    preloadable = set(loaded_file.read_text().split()) - importers(workdir / "runtime", name)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        code = 0
        try:
            _enter(workdir)
            for loaded in sorted(preloadable):
                importlib.import_module(loaded)
            gc.freeze()
            rows = _mutate_all(module, tests, workdir, timeout_s)
            report = (f"{kind}\t{m.index}\t{m.line}\t{m.description}\t{m.source}" for kind, m in rows)
            os.write(write_end, "\n".join(report).encode())
        except BaseException as error:  # reported, then the parent fails on the exit code
            print(f"mutation worker failed: {error!r}", flush=True)
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"the mutation worker for {module} failed"
    rows = [(kind, Mutant(int(i), int(line), what, source)) for kind, i, line, what, source in
            (row.split("\t", 4) for row in report.splitlines() if row)]
    equivalent = [m for kind, m in rows if kind == "equivalent"]
    return Result(TARGETS[module][0], _count(workdir / module) - len(equivalent),
                  [m for kind, m in rows if kind == "survived"], equivalent)


def _count(path: Path) -> int:
    return sum(1 for _ in _points(ast.parse(path.read_text())))


def _forget_bytecode(path: Path) -> None:
    """Python reuses a module's cached bytecode while the source keeps its size and mtime (whole
    seconds): two mutants of one length written within a second would otherwise run the first."""
    for cached in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
        cached.unlink()


def _equivalent(module: str, mutant: Mutant) -> bool:
    return any(m == module and src == mutant.source and what == mutant.description for m, src, what, _ in EQUIVALENT)


def _mutate_all(module: str, tests: list[str], workdir: Path, timeout_s: float) -> list[tuple[str, Mutant]]:
    """("survived" | "equivalent", mutant) for each mutant that is not killed."""
    path = workdir / module
    original = path.read_text()
    rows = []
    try:
        for mutant, code in mutants(original):
            if _equivalent(module, mutant):
                rows.append(("equivalent", mutant))
                print(f"  line {mutant.line:4d} equivalent {mutant.description}", flush=True)
                continue
            path.write_text(code)
            _forget_bytecode(path)
            survived = run_tests(workdir, tests, timeout_s)
            if survived:
                rows.append(("survived", mutant))
            print(f"  line {mutant.line:4d} {'SURVIVED' if survived else 'killed  '} {mutant.description}", flush=True)
    finally:
        path.write_text(original)
        _forget_bytecode(path)
    return rows


def _stale_equivalences(results: dict[str, Result]) -> list[tuple[str, str, str, str]]:
    """Rows of EQUIVALENT, for the modules that ran, that matched no mutant."""
    seen = {(module, m.source, m.description) for module, r in results.items() for m in r.equivalent}
    return [row for row in EQUIVALENT if row[0] in results and row[:3] not in seen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="run only targets whose path contains one of these")
    parser.add_argument("--pure", action="store_true", help="run only the pure deciders (the 90%% target)")
    args = parser.parse_args()
    preload()
    chosen = {m: (pure, tests) for m, (pure, tests) in TARGETS.items()
              if (pure or not args.pure) and (not args.only or any(o in m for o in args.only))}
    started = time.monotonic()
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="inferstack-mutation-") as temp:
        workdir = Path(temp) / "repo"
        shutil.copytree(REPO, workdir, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info"))
        for module, (_, tests) in chosen.items():
            print(f"{module} ({', '.join(tests)})", flush=True)
            results[module] = mutate_module(module, tests, workdir)
    print("\nkill rate (equivalent mutants excluded)")
    for module, r in results.items():
        killed = r.count - len(r.survivors)
        print(f"  {module}: {killed}/{r.count} = {killed / max(r.count, 1):.0%}"
              + (f" ({len(r.equivalent)} equivalent)" if r.equivalent else ""))
        for mutant in r.survivors:
            print(f"      survivor: line {mutant.line}: {mutant.description}")
    pure = [r for r in results.values() if r.pure]
    if pure:
        total, alive = sum(r.count for r in pure), sum(len(r.survivors) for r in pure)
        print(f"  pure modules together: {total - alive}/{total} = {(total - alive) / max(total, 1):.0%}, "
              f"{sum(len(r.equivalent) for r in pure)} equivalent mutants excluded")
    for module, source, what, _ in _stale_equivalences(results):
        print(f"  stale EQUIVALENT row (matches no mutant): {module}: {source!r}: {what}")
    print(f"  ({time.monotonic() - started:.0f} s)")
    if pure and total - alive < PURE_TARGET * total:
        sys.exit(f"the pure modules' kill rate is under {PURE_TARGET:.0%}")


if __name__ == "__main__":
    main()
