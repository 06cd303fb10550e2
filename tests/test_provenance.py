"""Where results come from: the commit and load that bench JSONs carry."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from robot_stack.benchmarks import BenchReport
from robot_stack.provenance import source_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_source_commit_names_head_and_marks_uncommitted_changes(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("one")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "commit", "-q", "-m", "first")
    head = _git(tmp_path, "rev-parse", "--short", "HEAD")
    assert source_commit(tmp_path) == head
    (tmp_path / "untracked.txt").write_text("not part of the source")
    assert source_commit(tmp_path) == head
    (tmp_path / "a.txt").write_text("two")
    assert source_commit(tmp_path) == head + "+dirty"


def test_source_commit_outside_a_checkout_is_unknown(tmp_path: Path) -> None:
    assert source_commit(tmp_path) == "unknown"
    _git(tmp_path, "init", "-q")
    (tmp_path / "site-packages").mkdir()
    assert source_commit(tmp_path / "site-packages") == "unknown"  # inside another checkout, not its root


def test_bench_json_records_commit_and_load(tmp_path: Path) -> None:
    report = BenchReport("demo")
    report.add("x", 1.0, "ms")
    out = tmp_path / "bench.json"
    report.write_json(str(out))
    data = json.loads(out.read_text())
    assert data["commit"] == source_commit()
    assert len(data["machine"]["load_average_at_start"]) == 3
    assert len(data["machine"]["load_average_at_end"]) == 3
