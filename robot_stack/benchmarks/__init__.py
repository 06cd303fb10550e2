"""Benchmarks run by ``robot-stack bench AREA`` (docs/ARCHITECTURE.md, "Benchmarks").

An area is a module ``robot_stack/benchmarks/<area>.py`` with ``run(quick: bool) -> BenchReport``.
Every speed figure is paired with a baseline measured in the same run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_stack.provenance import load_average, machine_info, source_commit

AREAS = ("perception", "sim", "networks", "recorder", "offline", "serve", "training", "arm")


@dataclass
class Target:
    figure: str
    op: str  # "<=" or ">="
    value: float

    def met(self, figures: dict[str, float]) -> bool:
        got = figures.get(self.figure)
        if got is None or not np.isfinite(got):
            return False
        return got <= self.value if self.op == "<=" else got >= self.value


@dataclass
class BenchReport:
    area: str
    figures: dict[str, float] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    units: dict[str, str] = field(default_factory=dict)
    load_at_start: list[float] = field(default_factory=load_average)

    def add(self, name: str, value: float, unit: str = "") -> None:
        self.figures[name] = float(value)
        if unit:
            self.units[name] = unit

    def target(self, figure: str, op: str, value: float) -> None:
        if op not in ("<=", ">="):
            raise ValueError(f"target op must be '<=' or '>=', got {op!r}")
        self.targets.append(Target(figure, op, value))

    def to_dict(self) -> dict[str, Any]:
        machine = {**machine_info(), "load_average_at_start": self.load_at_start, "load_average_at_end": load_average()}
        return {"area": self.area, "commit": source_commit(), "machine": machine, "figures": self.figures,
                "units": self.units,
                "targets": [{"figure": t.figure, "op": t.op, "value": t.value, "met": t.met(self.figures)}
                            for t in self.targets],
                "notes": self.notes}

    def print_table(self) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"robot-stack bench {self.area}")
        table.add_column("figure")
        table.add_column("value", justify="right")
        table.add_column("unit")
        table.add_column("target")
        targets = {t.figure: t for t in self.targets}
        for name, value in self.figures.items():
            t = targets.get(name)
            verdict = "" if t is None else f"{t.op} {t.value:g} " + ("[green]met[/]" if t.met(self.figures)
                                                                    else "[red]missed[/]")
            table.add_row(name, f"{value:.4g}", self.units.get(name, ""), verdict)
        console = Console()
        console.print(table)
        for note in self.notes:
            console.print(f"note: {note}")

    def write_json(self, path: str) -> None:
        with open(path, "w") as fh:
            json.dump(self.to_dict(), fh, indent=2)


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 3) -> np.ndarray:
    """Wall-clock seconds of each call after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t0
    return out


def percentiles_ms(samples_s: np.ndarray) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    return float(np.percentile(samples_s, 50) * 1e3), float(np.percentile(samples_s, 99) * 1e3)


def positive_option(options: list[str], area: str, key: str, default: float, cast: Callable[[str], float] = float
                    ) -> float:
    """The one ``key=N`` option (N > 0) an area takes, or ``default``; anything else is refused, naming the valid
    form."""
    value = default
    for item in options:
        name, _, raw = item.partition("=")
        try:
            value = cast(raw) if name == key else float("nan")
        except ValueError:
            value = float("nan")
        if not value > 0:
            raise ValueError(f"bench {area}: unknown option {item!r}; valid: {key}=N (N > 0)")
    return value
