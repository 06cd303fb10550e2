"""Combine offline sweep CSVs from several runs (or sessions) into one table, plot and small-data verdict.

Usage: ``python docs/results/offline_combine.py OUT_PREFIX CSV [CSV ...]``, each CSV a ``robot-stack sweep``
offline ``results.csv`` (or a committed copy). Writes OUT_PREFIX.csv (the rows, one per algo x family x dataset x
seed; a trial found twice is refused, naming it), OUT_PREFIX.png (success against dataset size) and prints the
markdown table, then per dataset the equivariant cell whose 95% band lies above the most plain cells' bands (ties:
the higher mean), listing each plain cell it clears and each it does not (the issue-21 line "above every plain
one, by more than the bands").
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Any

from robot_stack.jobs.sweep_offline import (
    Cell,
    grid_cells,
    offline_table,
    plot_success_vs_size,
    read_offline_results,
)

EQUIVARIANT = ("relaxed", "relaxed_steerable", "exact")
PLAIN = ("cnn", "cnn_aug")


def merged_rows(paths: list[Path]) -> tuple[list[dict[str, str]], list[str]]:
    rows: dict[tuple[str, ...], dict[str, str]] = {}
    fields: dict[str, None] = {}
    for path in paths:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields.update(dict.fromkeys(reader.fieldnames or []))
            for row in reader:
                key = (row["algo"], row["family"], row["dataset"], row["seed"])
                if key in rows:
                    sys.exit(f"{path}: trial algo={key[0]} family={key[1]} dataset={key[2]} seed={key[3]} "
                             "is already in an earlier CSV")
                rows[key] = row
    return list(rows.values()), list(fields)


def write_merged(out: Path, rows: list[dict[str, str]], fields: list[str]) -> None:
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)


def band(cell: Cell) -> str:
    return f"{cell.mean:.2f} [{cell.mean - cell.half:.2f}, {cell.mean + cell.half:.2f}], {cell.seeds} seeds"


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    cells = grid_cells(rows)
    lines = []
    for dataset in dict.fromkeys(d for _, _, d in cells):
        equi = {k: c for k, c in cells.items() if k[2] == dataset and k[1] in EQUIVARIANT and c.seeds > 1}
        plain = {k: c for k, c in cells.items() if k[2] == dataset and k[1] in PLAIN and c.seeds > 1}
        if not equi or not plain:
            continue
        beats = {k: [p for p, c in plain.items() if e.mean - e.half > c.mean + c.half] for k, e in equi.items()}
        best_key = max(equi, key=lambda k: (len(beats[k]), equi[k].mean))
        best, beaten = equi[best_key], beats[best_key]
        lines.append(f"dataset {dataset}: best equivariant {best_key[0]} {best_key[1]} {band(best)}; "
                     f"its band is above {len(beaten)} of {len(plain)} plain cells")
        lines += [f"  {'above' if k in beaten else 'NOT above'}: {k[0]} {k[1]} {band(c)}"
                  for k, c in sorted(plain.items(), key=lambda kv: -kv[1].mean) if math.isfinite(c.mean)]
    return lines


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit(__doc__)
    prefix = Path(argv[0])
    rows, fields = merged_rows([Path(p) for p in argv[1:]])
    write_merged(prefix.with_suffix(".csv"), rows, fields)
    plot_success_vs_size(prefix.with_suffix(".csv"), prefix.with_suffix(".png"))
    parsed = read_offline_results(prefix.with_suffix(".csv"))
    print(offline_table(parsed))
    print("\n".join(verdict(parsed)))


if __name__ == "__main__":
    main(sys.argv[1:])
