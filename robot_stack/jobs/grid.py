"""What every sweep kind shares: a grid point (``Trial``), its errors, the base config each trial starts from, and the
95% confidence bands of the curves and tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack import config, plotting

NO_VARIANT = "none"


@dataclass
class Dataset:
    """An offline sweep's dataset: its label in tables, its store, its transition count and the store's content
    fingerprint (``EpisodeDataset.fingerprint``)."""
    label: str
    path: str
    transitions: int
    fingerprint: str = ""


class SweepError(config.ConfigError):
    """A sweep that cannot start (bad grid, unreachable cluster); the message says why."""


@dataclass
class Trial:
    """One grid point of any job kind: its place in the grid (label, CSV columns) and the config its job runs."""
    label: str
    family: str
    seed: int
    variant: str = NO_VARIANT  # job: train
    algo: str = ""  # job: offline
    dataset: Dataset | None = None  # job: offline
    job_config: dict[str, Any] = field(default_factory=dict)  # the argument of the job's run_trial
    # What job_config names but does not hold (the fingerprint of a store it reads, the sim config its env resolves
    # to): a kept result is reused only while these are the same too.
    inputs: dict[str, Any] = field(default_factory=dict)


RESULT_FILE = "result.json"


def result_path(run_dir: Path, trial: Trial) -> Path:
    return run_dir / "trials" / trial.label / RESULT_FILE


def save_result(run_dir: Path, trial: Trial, result: dict[str, Any]) -> None:
    """A finished trial's result with the config and inputs it ran on, beside its run folder (written whole, then
    renamed, so a sweep stopped mid-write leaves no half file)."""
    path = result_path(run_dir, trial)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"job_config": trial.job_config, "inputs": trial.inputs, "result": result}, default=str))
    tmp.replace(path)


def saved_result(run_dir: Path, trial: Trial) -> dict[str, Any] | None:
    """The result an earlier run of this sweep kept for ``trial``, if it ran the same config on the same inputs;
    else None."""
    path = result_path(run_dir, trial)
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    same = all(saved.get(key) == _as_saved(getattr(trial, key)) for key in ("job_config", "inputs"))
    return saved["result"] if same else None


def _as_saved(value: Any) -> Any:
    """``value`` as it reads back from result.json."""
    return json.loads(json.dumps(value, default=str))


def base_config(cfg: Any) -> dict[str, Any]:
    """The sweep's base launch file with its overrides applied: what every trial starts from."""
    base = config.read_yaml(config.resolve_launch_file(cfg.base))
    return config.apply_overrides(base, _flatten(cfg.overrides))


def _flatten(tree: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={_yaml_scalar(value)}")
    return out


def _yaml_scalar(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


def confidence_band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the half-width of a 95% Student-t interval over axis 0 (0 with a single seed)."""
    from scipy import stats

    n = values.shape[0]
    mean = values.mean(axis=0)
    if n < 2:
        return mean, np.zeros_like(mean)
    half = stats.t.ppf(0.975, n - 1) * values.std(axis=0, ddof=1) / np.sqrt(n)
    return mean, half


Curve = tuple[np.ndarray, np.ndarray, np.ndarray]  # steps, mean, half-width of the band


def draw_curves(ax, lines: dict[str, Curve], metric: str, title: str, band: bool = True) -> None:
    """One panel of eval ``metric`` against environment steps, a line per label (with its 95% band if ``band``)."""
    curves = {label: (steps, mean, mean - half, mean + half) if band else (steps, mean, None, None)
              for label, (steps, mean, half) in lines.items()}
    # Without a band the points are marked: a run with a single eval would otherwise draw nothing.
    plotting.draw_curves(ax, curves, marker=None if band else "o", markersize=3)
    ax.set_title(title)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"eval {metric.replace('_', ' ')}" + (" (mean, 95% CI)" if band else ""))
    if metric == "success_rate":
        ax.set_ylim(-0.05, 1.05)
