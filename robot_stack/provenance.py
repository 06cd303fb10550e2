"""Where a result came from: the source commit and the host's load, for benchmark JSONs and result tables."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parent.parent


def source_commit(root: Path = SOURCE_ROOT) -> str:
    """Short hash of the checkout's HEAD, with ``+dirty`` when tracked files differ from it.

    ``unknown`` outside a git checkout (a wheel installed on the robot PC) or without git.
    """
    try:
        head = _git(root, "rev-parse", "--short", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    return done.stdout.strip() if done.returncode == 0 else ""


def load_average() -> list[float]:
    """The host's 1, 5 and 15 minute load averages (other jobs on the cores show up in speed figures)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []
