"""Sweeps: a 2x2 grid on a local Ray writes CSV + PNG; bad grids and unreachable clusters fail fast."""

from __future__ import annotations

import csv
import json
import re
import socket
import time

import numpy as np
import pytest

from robot_stack import cli, config
from robot_stack.jobs.grid import Trial
from robot_stack.jobs.sweep import (
    CSV_FIELDS,
    SweepConfig,
    SweepError,
    confidence_band,
    plot_relaxed_spread,
    plot_relaxed_weights,
    plot_success_vs_variant,
    read_results,
    relaxed_spread_rows,
    run_sweep,
    success_vs_variant,
)
from robot_stack.provenance import source_commit
from robot_stack.tables import write_rows

TINY_TRAIN = {"env": {"heightmap_size": 16}, "network": {"widths": [2], "kernel_sizes": [3], "hidden": 2},
              "total_steps": 16, "eval_every": 8, "eval_episodes": 2, "expert_episodes": 1, "num_envs": 1,
              "learning_starts": 8, "tensorboard": False, "sac": {"batch_size": 8, "rotated_copies": 1}}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_confidence_band_is_a_t_interval():
    values = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    mean, half = confidence_band(values)
    np.testing.assert_allclose(mean, [1.0, 1.0])
    np.testing.assert_allclose(half, [4.302653 * 1.0 / np.sqrt(3), 0.0], rtol=1e-5)
    assert confidence_band(values[:1])[1].tolist() == [0.0, 0.0]


def test_unreachable_address_and_bad_grid_fail_fast(tmp_path, capsys):
    cfg = config.build(SweepConfig, {"base": "train_toy", "overrides": TINY_TRAIN, "out_dir": str(tmp_path)})
    started = time.monotonic()
    with pytest.raises(SweepError, match=rf"cannot reach the Ray cluster at '127.0.0.1:{_closed_port()}'|cannot"):
        run_sweep(cfg, address=f"127.0.0.1:{_closed_port()}")
    assert time.monotonic() - started < 30
    with pytest.raises(SweepError, match="HOST:PORT"):
        run_sweep(cfg, address="nonsense")
    assert cli.main(["sweep", "sweep_push", f"out_dir={tmp_path}", "--address", f"127.0.0.1:{_closed_port()}"]) == 2
    assert "cannot reach the Ray cluster" in capsys.readouterr().err
    with pytest.raises(config.ConfigError, match="lrr"):
        config.build(SweepConfig, {"base": "train_toy", "overrides": {"sac": {"lrr": 1}}})
    with pytest.raises(config.ConfigError, match="seedz"):
        config.load(SweepConfig, "sweep_push", ["seedz=[1]"])


def test_two_by_two_grid_on_local_ray_writes_csv_and_png(tmp_path):
    cfg = config.build(SweepConfig, {"name": "tiny", "base": "train_toy", "overrides": TINY_TRAIN,
                                     "families": ["relaxed", "cnn"], "seeds": [0, 1], "num_cpus": 2,
                                     "out_dir": str(tmp_path / "{name}")})
    out = run_sweep(cfg, progress=False)
    rows = read_results(out / "results.csv")
    assert {(r["family"], r["seed"]) for r in rows} == {("relaxed", 0), ("relaxed", 1), ("cnn", 0), ("cnn", 1)}
    assert sorted({r["step"] for r in rows}) == [8, 16]
    assert all(0.0 <= r["success_rate"] <= 1.0 for r in rows)
    assert len((out / "final.csv").read_text().splitlines()) == 5
    for png in ("learning_curves.png", "relaxed_weights.png", "relaxed_spread.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "success_vs_variant.png").exists()  # no variants: no strength axis
    with open(out / "relaxed_spread.csv", newline="") as fh:
        spread = list(csv.DictReader(fh))
    assert spread and {r["family"] for r in spread} == {"relaxed"} and {r["seed"] for r in spread} == {"0", "1"}
    (started,) = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    assert started["job"] == "sweep" and started["trials"] == 4 and started["commit"] == source_commit()


def _relaxed_result(spreads: list[float]) -> dict:
    return {"evals": [], "relaxed_weights": [{"layer": i, "spread": s, "weights": [[1.0]]} for i, s in
                                             enumerate(spreads)]}


@pytest.mark.parametrize("variants", [["0", "0.5", "1"], ["none", "wall"]])
def test_the_relaxed_spread_is_tabled_per_layer_and_plotted_against_the_variant(tmp_path, variants):
    trials = [Trial(f"{f}_{v}_s{s}", f, s, v) for v in variants for f in ("relaxed", "exact") for s in (0, 1)]
    results = [_relaxed_result([0.1 * i + 0.01 * t.seed, 0.2]) if t.family == "relaxed" else _relaxed_result([])
               for i, t in enumerate(trials)]
    rows = relaxed_spread_rows(trials, results)
    assert len(rows) == 2 * 2 * len(variants)  # layers x seeds x variants, relaxed only
    assert {r["family"] for r in rows} == {"relaxed"} and {r["layer"] for r in rows} == {0, 1}
    assert [r["spread"] for r in rows if r["layer"] == 1] == [0.2] * 2 * len(variants)
    plot_relaxed_spread(rows, [t.variant for t in trials], tmp_path / "spread.png")
    assert (tmp_path / "spread.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_steerable_layer_has_a_spread_and_no_weight_grid(tmp_path):
    trials = [Trial("steer_s0", "relaxed_steerable", 0, "1"), Trial("relaxed_s0", "relaxed", 0, "1")]
    results = [{"evals": [], "relaxed_weights": [{"layer": 0, "spread": 0.3}]}, _relaxed_result([0.2])]
    assert [(r["family"], r["spread"]) for r in relaxed_spread_rows(trials, results)] == [
        ("relaxed_steerable", 0.3), ("relaxed", 0.2)]
    plot_relaxed_weights(trials[:1], results[:1], tmp_path / "none.png")  # no grid to draw: says so, no KeyError
    assert (tmp_path / "none.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _eval_rows(variant: str, family: str, finals: list[float]) -> list[dict]:
    return [{"family": family, "variant": variant, "seed": seed, "step": step, "success_rate": value,
             "return": value} for seed, final in enumerate(finals) for step, value in ((0, 0.5), (100, final))]


def test_success_against_strength_takes_each_cells_last_eval_in_strength_order(tmp_path):
    rows = (_eval_rows("1", "exact", [0.4, 0.6]) + _eval_rows("0", "exact", [0.8, 0.8])
            + _eval_rows("0.5", "relaxed", [0.9, 0.7]) + _eval_rows("0", "relaxed", [1.0, 0.9]))
    lines = success_vs_variant(rows)
    x, mean, half = lines["exact"]
    assert list(x) == [0.0, 1.0] and np.allclose(mean, [0.8, 0.5]) and half[0] == 0.0 and half[1] > 0.0
    assert list(lines["relaxed"][0]) == [0.0, 0.5] and np.allclose(lines["relaxed"][1], [0.95, 0.8])
    csv_path = tmp_path / "results.csv"
    write_rows(csv_path, rows, CSV_FIELDS)
    assert plot_success_vs_variant(csv_path, tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert success_vs_variant(_eval_rows("none", "exact", [0.5])) == {}


def test_an_unknown_job_is_an_error_naming_it_and_the_known_ones(capsys):
    message = "sweep job 'online' is not one of ['train', 'offline']"
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        config.build(SweepConfig, {"job": "online"})
    assert cli.main(["sweep", "sweep_push", "job=online"]) == 2
    assert message in capsys.readouterr().err
