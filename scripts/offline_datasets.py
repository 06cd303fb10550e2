"""Build the offline RL datasets of issue 6 for one task: 100, 500, 1000 and 5000 transitions.

Superseded by one command (issue 21): `robot-stack collect collect_offline task=T` records every size of
launch/collect_offline.yaml and writes the quality table beside the stores. This script remains for its extra
figures (validate, size on disk, load); it now records at the launch file's (gripper-centred) view.

    python scripts/offline_datasets.py stack                     # runs/datasets/stack_{100,500,1000,5000}.zarr
    python scripts/offline_datasets.py door --sizes 100 500 --overwrite

Each size is one `robot-stack collect collect_offline task=T transitions=N out=...` run (launch/collect_offline.yaml),
then `robot-stack data validate`. What was measured (transitions as EpisodeDataset counts them, episodes, share of
successful episodes, episodes per noise level, size on disk, collection wall time, command, machine, commit) goes to
OUT_DIR/T_N.json, and a markdown table row is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from robot_stack.provenance import source_commit

ROOT = Path(__file__).resolve().parent.parent
SIZES = (100, 500, 1000, 5000)
TASKS = ("lift", "stack", "door", "push")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=TASKS)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="transitions per dataset")
    parser.add_argument("--out-dir", default="runs/datasets")
    parser.add_argument("--overwrite", action="store_true", help="delete an existing store of the same name first")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.sizes):
        parser.error(f"--sizes must be >= 1, got {args.sizes}")
    for n in args.sizes:
        row = build(args.task, n, Path(args.out_dir), args.overwrite)
        print(markdown_row(row), flush=True)
    return 0


def build(task: str, size: int, out_dir: Path, overwrite: bool) -> dict[str, Any]:
    """Collect, validate and describe one dataset; raises if the store exists (without overwrite) or is invalid."""
    out = out_dir / f"{task}_{size}.zarr"
    if out.exists():
        if not overwrite:
            raise SystemExit(f"{out} exists; pass --overwrite to rebuild it")
        shutil.rmtree(out)
    args = ["collect", "collect_offline", f"task={task}", "sizes=[]", f"transitions={size}", f"out={out}"]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    subprocess.run(robot_stack(args), cwd=ROOT, check=True)
    wall = time.perf_counter() - t0
    check = subprocess.run(robot_stack(["data", "validate", str(out)]), cwd=ROOT, capture_output=True, text=True)
    if check.returncode:
        raise SystemExit(f"data validate failed on {out}:\n{check.stdout}{check.stderr}")
    row = {"task": task, "size": size, **describe(out), "wall_s": round(wall, 1), "load_avg_1min": load,
           "validate": check.stdout.strip(), "command": "robot-stack " + " ".join(args),
           "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores", "commit": source_commit()}
    (out_dir / f"{task}_{size}.json").write_text(json.dumps(row, indent=2) + "\n")
    return row


def robot_stack(args: list[str]) -> list[str]:
    exe = Path(sys.executable).with_name("robot-stack")
    return [str(exe), *args] if exe.is_file() else [sys.executable, "-m", "robot_stack", *args]


def describe(path: Path) -> dict[str, Any]:
    """Counts as the offline trainer sees them: ``EpisodeDataset.transitions()`` is what it loads."""
    sys.path.insert(0, str(ROOT))
    from robot_stack.recorder import EpisodeDataset

    ds = EpisodeDataset(path)
    infos = [ds.episode_meta(int(i)) for i in ds.episode_ids]
    noise = Counter(float(m["noise"]) for m in infos)
    return {"transitions": len(ds.transitions()["action"]), "steps": ds.n_steps, "episodes": len(ds),
            "success_share": sum(bool(m.get("success")) for m in infos) / len(infos),
            "cut_episodes": sum(bool(m.get("cut")) for m in infos),
            "noise_episodes": {str(k): v for k, v in sorted(noise.items())},
            "store_mb": sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6}


def markdown_row(r: dict[str, Any]) -> str:
    mix = ", ".join(f"{k}: {v}" for k, v in r["noise_episodes"].items())
    return (f"| {r['task']} | {r['size']} | {r['transitions']} | {r['episodes']} | {r['success_share']:.2f} | {mix} | "
            f"{r['store_mb']:.1f} MB | {r['wall_s']:.0f} s | `{r['command']}` | {r['machine']} | {r['commit']} |")


if __name__ == "__main__":
    sys.exit(main())
