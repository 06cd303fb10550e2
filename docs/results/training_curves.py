"""Gather the eval history of finished ``robot-stack train`` runs into a CSV and a learning-curve PNG.

Usage: ``python docs/results/training_curves.py OUT_PREFIX RUN_DIR [RUN_DIR ...]`` writes OUT_PREFIX.csv (the
sweep's columns: family, variant, seed, step, success_rate, return) and OUT_PREFIX.png (mean and 95% band over
seeds per family, ``robot_stack.jobs.sweep.plot_learning_curves``). Each RUN_DIR holds the run's checkpoint.pt.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from robot_stack.jobs.sweep import plot_learning_curves
from robot_stack.jobs.train import read_checkpoint


def main(prefix: str, run_dirs: list[str]) -> None:
    rows = []
    for run in run_dirs:
        state = read_checkpoint(Path(run) / "checkpoint.pt")
        cfg = state["config"]
        variant = str(cfg.get("env", {}).get("variant", "none"))
        for ev in state["evals"]:
            rows.append({"family": cfg["network"]["family"], "variant": variant, "seed": cfg["seed"],
                         "step": ev["step"], "success_rate": ev["success_rate"], "return": round(ev["return"], 4)})
    csv_path, png_path = Path(prefix + ".csv"), Path(prefix + ".png")
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["family", "variant", "seed", "step", "success_rate", "return"])
        writer.writeheader()
        writer.writerows(rows)
    plot_learning_curves(csv_path, png_path)
    print(f"wrote {csv_path} ({len(rows)} rows) and {png_path}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
