"""The Pulumi program of a stack file, run under mocks in a subprocess (run_program.py), as data to assert on."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Program:
    resources: list[dict[str, Any]]
    calls: list[dict[str, Any]]
    error: str | None
    secrets: dict[str, str]

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["type"] == type_]

    def named(self, name: str, type_: str | None = None) -> dict[str, Any]:
        found = [r for r in self.resources if r["name"] == name and type_ in (None, r["type"])]
        assert len(found) == 1, f"expected one resource named {name}, found {[r['type'] for r in found]}"
        return found[0]

    def by_urn(self, urn: str) -> dict[str, Any] | None:
        return next((r for r in self.resources if r["urn"] == urn), None)

    def plaintext_paths(self, secret: str) -> list[str]:
        """Where `secret` appears outside a Pulumi secret in any resource's inputs (should be nowhere)."""
        found: list[str] = []

        def walk(value: Any, path: str) -> None:
            if isinstance(value, dict):
                if set(value) == {"$secret"}:
                    return
                for k, v in value.items():
                    walk(v, f"{path}.{k}")
            elif isinstance(value, list):
                for i, v in enumerate(value):
                    walk(v, f"{path}[{i}]")
            elif isinstance(value, str) and secret in value:
                found.append(path)

        for resource in self.resources:
            walk(resource["inputs"], f"{resource['type']}::{resource['name']}")
        return found


def run_program(stack_file: str, *options: str, tmp: Path) -> Program:
    out = tmp / "program.json"
    done = subprocess.run([sys.executable, str(ROOT / "tests/infra/run_program.py"), str(ROOT / stack_file), str(out),
                           *options], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    return Program(data["resources"], data["calls"], data["error"], data["secrets"])
