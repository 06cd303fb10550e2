"""Gather the eval history of ``robot-stack train`` runs (or earlier results CSVs) into a CSV and a learning-curve PNG.

Usage: ``python docs/results/training_curves.py OUT_PREFIX SOURCE [SOURCE ...]`` writes OUT_PREFIX.csv (the sweep's
columns: family, variant, seed, step, success_rate, return) and OUT_PREFIX.png (mean and 95% band over seeds per
family, ``robot_stack.jobs.sweep.plot_learning_curves``). A SOURCE is a run folder holding the run's checkpoint.pt,
or a CSV with the sweep's columns; ``LABEL=SOURCE`` names its line LABEL instead of the network family,
``LABEL=CSV:FAMILY:VARIANT`` keeps only that family's and variant's rows of a CSV (to set old results beside new),
and ``SOURCE@VARIANT`` puts its rows under VARIANT (e.g. a breaking strength). When relaxed run folders are among the
sources, OUT_PREFIX_spread.csv/.png hold their layers' spread against the variant (``plot_relaxed_spread``); a CSV
with the spread's columns (an earlier OUT_PREFIX_spread.csv) adds its rows to that spread, not to the curves. When
every variant is a number, OUT_PREFIX_success_vs_variant.png has each line's final success against it.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from robot_stack.jobs.grid import Trial
from robot_stack.jobs.sweep import (
    CSV_FIELDS,
    SPREAD_FIELDS,
    plot_learning_curves,
    plot_relaxed_spread,
    plot_success_vs_variant,
    read_results,
    relaxed_spread_rows,
    relaxed_weights,
)
from robot_stack.jobs.train import read_checkpoint
from robot_stack.tables import write_rows


def run_rows(run: Path) -> list[dict]:
    state = read_checkpoint(run / "checkpoint.pt")
    cfg = state["config"]
    variant = str(cfg.get("env", {}).get("variant", "none"))
    return [{"family": cfg["network"]["family"], "variant": variant, "seed": cfg["seed"], "step": ev["step"],
             "success_rate": ev["success_rate"], "return": round(ev["return"], 4)} for ev in state["evals"]]


def csv_rows(src: Source) -> list[dict]:
    return [{k: r[k] for k in CSV_FIELDS} for r in read_results(src.path) if src.keeps(r)]


@dataclass(frozen=True)
class Source:
    """One SOURCE argument: ``[LABEL=]PATH[:FAMILY[:VARIANT]][@AS_VARIANT]``."""

    label: str
    path: Path
    family: str | None  # CSV only: keep this family's rows
    variant: str | None  # CSV only: keep this variant's rows
    as_variant: str  # put the rows under this variant ("" keeps theirs)

    @classmethod
    def parse(cls, text: str) -> Source:
        label, _, spec = text.rpartition("=")
        spec, _, as_variant = spec.partition("@")
        path, *select = spec.split(":")
        family, variant = (select + [None, None])[:2]
        return cls(label, Path(path), family, variant, as_variant)

    @property
    def is_csv(self) -> bool:
        return self.path.suffix == ".csv"

    def keeps(self, row: dict) -> bool:
        """A CSV row of the family and variant this source selects."""
        return (self.family is None or row["family"] == self.family) and (
            self.variant is None or row["variant"] == self.variant)

    @property
    def is_spread_csv(self) -> bool:
        if not self.is_csv:
            return False
        with open(self.path, newline="") as fh:
            return tuple(next(csv.reader(fh), ())) == SPREAD_FIELDS


def source_rows(src: Source) -> list[dict]:
    rows = csv_rows(src) if src.is_csv else run_rows(src.path)
    for row in rows:
        row["family"] = src.label or row["family"]
        row["variant"] = src.as_variant or row["variant"]
    return rows


def spread_csv_rows(src: Source) -> list[dict]:
    with open(src.path, newline="") as fh:
        rows = [{**r, "seed": int(r["seed"]), "layer": int(r["layer"]), "spread": float(r["spread"])}
                for r in csv.DictReader(fh)]
    return [{**r, "variant": src.as_variant or r["variant"]} for r in rows if src.keeps(r)]


def run_spread(src: Source, rows: list[dict]) -> list[dict]:
    """The relaxed layers' spread of the run folder ``src``, under the family, variant and seed its ``rows`` carry
    (none for a CSV, a run without evals, or a family without relaxed layers)."""
    from policies.checkpoint import load_actor

    if src.is_csv or not rows:
        return []
    head = rows[0]
    trial = Trial(str(src.path), head["family"], head["seed"], head["variant"])
    actor = load_actor(src.path / "checkpoint.pt")[0]
    return relaxed_spread_rows([trial], [{"relaxed_weights": relaxed_weights(actor)}])


def main(prefix: str, texts: list[str]) -> None:
    rows, spread = [], []
    for src in map(Source.parse, texts):
        if src.is_spread_csv:
            spread += spread_csv_rows(src)
            continue
        src_rows = source_rows(src)
        rows += src_rows
        spread += run_spread(src, src_rows)
    csv_path, png_path = Path(prefix + ".csv"), Path(prefix + ".png")
    write_rows(csv_path, rows, CSV_FIELDS)
    plot_learning_curves(csv_path, png_path)
    print(f"wrote {csv_path} ({len(rows)} rows) and {png_path}")
    final_png = Path(prefix + "_success_vs_variant.png")
    if plot_success_vs_variant(csv_path, final_png):
        print(f"wrote {final_png} (final success against the variant)")
    if spread:
        spread_csv, spread_png = Path(prefix + "_spread.csv"), Path(prefix + "_spread.png")
        write_rows(spread_csv, spread, SPREAD_FIELDS)
        plot_relaxed_spread(spread, [r["variant"] for r in spread], spread_png)
        print(f"wrote {spread_csv} ({len(spread)} rows) and {spread_png}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
