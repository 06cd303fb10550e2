"""Where a result came from: the source commit, the machine and the host's load.

Bench JSONs, training runs, sweeps and offline runs record this next to their figures, so a number in
docs/results/ can be traced to the code and machine that produced it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SOURCE_ROOT = Path(__file__).resolve().parent.parent


def source_commit(root: Path = SOURCE_ROOT) -> str:
    """Short hash of the checkout's HEAD, with ``+dirty`` when tracked files differ from it.

    ``unknown`` outside a git checkout (a wheel installed on the robot PC) or without git.
    """
    try:
        top = _git(root, "rev-parse", "--show-toplevel")
        # a wheel installed into a venv that sits inside some other checkout must not report that checkout
        if not top or Path(top).resolve() != Path(root).resolve():
            return "unknown"
        head = _git(root, "rev-parse", "--short", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "") if head else "unknown"


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    return done.stdout.strip() if done.returncode == 0 else ""


def load_average() -> list[float]:
    """The host's 1, 5 and 15 minute load averages (other jobs on the cores show up in speed figures)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "processor": platform.processor() or platform.machine(),
                            "cpus": os.cpu_count(), "cpu_model": _cpu_model()}
    torch = sys.modules.get("torch")  # reported when the job uses it; the core never imports it (robot PC install)
    if torch is not None:
        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def record(job: str, **extra: Any) -> dict[str, Any]:
    """One provenance entry: the job, UTC time, commit, machine and load, plus ``extra``."""
    return {"job": job, "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": source_commit(),
            "machine": machine_info(), "load_average": load_average(), **extra}


def append_record(path: Path, entry: dict[str, Any]) -> None:
    """Add ``entry`` as one JSON line to ``path`` (a resumed job adds a line per session)."""
    with open(path, "a") as fh:
        fh.write(json.dumps(entry, default=str) + "\n")
