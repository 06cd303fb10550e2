"""The import contracts of pyproject.toml (the floors of docs/ARCHITECTURE.md) hold, and a forbidden import breaks
them: lint-imports runs on a copy of the four packages in a temporary folder, with one wrong import added."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("robot_stack", "policies", "sim", "hardware")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


@pytest.fixture
def copy(tmp_path):
    if not LINT_IMPORTS.exists():
        pytest.skip("lint-imports is not installed (pip install -e .[dev])")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint(folder: Path) -> tuple[int, str]:
    """lint-imports on ``folder``'s copy, never the editable install: the folder is the working directory (which
    lint-imports puts first on sys.path) and the only entry of PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": str(folder), "COLUMNS": "400"}
    out = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=folder, env=env, capture_output=True, text=True,
                         timeout=300)
    return out.returncode, out.stdout + out.stderr


def add_import(path: Path, line: str) -> None:
    """``line`` right after ``from __future__ import annotations``, so the file still parses."""
    text = path.read_text()
    anchor = "from __future__ import annotations\n"
    assert anchor in text, path
    path.write_text(text.replace(anchor, anchor + line + "\n", 1))


def broken(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.rstrip().endswith("BROKEN")]


def test_the_unmodified_copy_keeps_every_contract(copy):
    rc, output = lint(copy)
    assert rc == 0, output
    assert broken(output) == []
    assert re.search(r"Contracts: \d+ kept, 0 broken", output), output


def test_torch_in_the_robot_pc_runtime_breaks_the_contract(copy):
    add_import(copy / "robot_stack" / "runtime" / "safety.py", "import torch  # noqa")
    rc, output = lint(copy)
    assert rc != 0, output
    assert any(line.startswith("The core (what the robot PC installs)") for line in broken(output)), output
    assert "robot_stack.runtime.safety -> torch" in output, output


def test_a_command_importing_another_command_breaks_the_contract(copy):
    add_import(copy / "robot_stack" / "commands" / "demo.py", "import robot_stack.commands.collect  # noqa")
    rc, output = lint(copy)
    assert rc != 0, output
    assert any(line.startswith("Commands are thin wrappers") for line in broken(output)), output
    assert "robot_stack.commands.demo is not allowed to import robot_stack.commands.collect" in output, output
