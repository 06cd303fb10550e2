"""Offline sweeps (job: offline): a tiny algos x datasets grid on a local Ray writes CSV, PNG and table; a bad
dataset or key fails before Ray starts; a diverged trial is a row, not a crash."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from test_offline_job import record_toy

from robot_stack import cli, config
from robot_stack.jobs import sweep_offline
from robot_stack.jobs.sweep import SweepConfig, SweepError, make_trials, run_sweep

SIZE = 16
TINY = {"env": {"heightmap_size": SIZE}, "network": {"family": "cnn", "widths": [2], "kernel_sizes": [3], "hidden": 2},
        "steps": 4, "batch_size": 8, "eval_episodes": 2, "log_every": 2}


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("stores")
    return [record_toy(root / "small.zarr", episodes=2, size=SIZE),
            record_toy(root / "big.zarr", episodes=5, size=SIZE)]


def sweep(tmp_path: Path, datasets: list, **kw) -> SweepConfig:
    data = {"name": "tiny", "job": "offline", "base": "offline_toy", "overrides": TINY, "algos": ["bc", "cql"],
            "families": ["cnn"], "seeds": [0], "datasets": datasets, "num_cpus": 2,
            "out_dir": str(tmp_path / "{name}"), **kw}
    return config.build(SweepConfig, data)


@pytest.fixture
def no_ray(monkeypatch):
    import ray

    def refuse(*args, **kwargs):
        raise AssertionError("Ray must not start on a bad grid")

    monkeypatch.setattr(ray, "init", refuse)


def test_bad_datasets_and_keys_fail_before_ray(tmp_path, stores, no_ray, capsys):
    missing = tmp_path / "nowhere.zarr"
    with pytest.raises(SweepError, match=rf"datasets\[1\]: dataset '{missing}' does not exist"):
        run_sweep(sweep(tmp_path, [str(stores[0]), str(missing)]))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(SweepError, match="cannot use dataset .*empty_dir.*not a robot-stack episode store"):
        run_sweep(sweep(tmp_path, [str(tmp_path / "empty_dir")]))
    with pytest.raises(SweepError, match=r"datasets\[0\].*got keys \['name', 'pth'\]"):
        run_sweep(sweep(tmp_path, [{"name": "a", "pth": str(stores[0])}]))
    with pytest.raises(SweepError, match="more than one store"):
        run_sweep(sweep(tmp_path, [str(stores[0]), {"name": str(_transitions(stores[0])), "path": str(stores[1])}]))
    with pytest.raises(SweepError, match="stepz"):
        run_sweep(sweep(tmp_path, [str(stores[0])], overrides={**TINY, "stepz": 3}))
    with pytest.raises(config.ConfigError, match="algos"):
        sweep(tmp_path, [str(stores[0])], algos=["sac"])
    with pytest.raises(config.ConfigError, match="needs datasets"):
        sweep(tmp_path, [])
    with pytest.raises(config.ConfigError, match="job: offline only"):
        config.build(SweepConfig, {"datasets": [str(stores[0])]})
    assert cli.main(["sweep", "sweep_offline_toy", f"datasets=[{missing}]", f"out_dir={tmp_path}"]) == 2
    assert f"dataset '{missing}' does not exist" in capsys.readouterr().err


def test_a_trial_bigger_than_the_cluster_is_refused(tmp_path, stores):
    with pytest.raises(SweepError, match=r"asks for 4 CPU \(cpus_per_trial\) but the Ray cluster has 2"):
        run_sweep(sweep(tmp_path, [str(stores[0])], cpus_per_trial=4), progress=False)
    assert not (tmp_path / "tiny").exists()


def _transitions(path: Path) -> int:
    return sweep_offline.count_transitions(str(path), "test")


def test_tiny_offline_grid_on_local_ray_writes_csv_png_and_table(tmp_path, stores):
    small = _transitions(stores[0])
    cfg = sweep(tmp_path, [str(stores[0]), {"name": "big", "path": str(stores[1])}])
    assert len(make_trials(cfg)) == 4
    out = run_sweep(cfg, progress=False)
    rows = sweep_offline.read_offline_results(out / "results.csv")
    assert {(r["algo"], r["dataset"]) for r in rows} == {("bc", str(small)), ("cql", str(small)), ("bc", "big"),
                                                        ("cql", "big")}
    assert {r["transitions"] for r in rows if r["dataset"] == "big"} == {_transitions(stores[1])}
    assert all(0.0 <= r["success_rate"] <= 1.0 and 0.0 <= r["random_success"] <= 1.0 for r in rows)
    assert all(r["error"] == "" and float(r["train_seconds"]) > 0 for r in rows)
    assert all(r["q_data"] != "" for r in rows if r["algo"] == "cql")
    assert (out / "success_vs_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "table.md").read_text().splitlines()
    assert table[0] == f"| algo | family | {small} | big ({_transitions(stores[1])}) |"
    assert [line.split(" | ")[0] for line in table[2:]] == ["| bc", "| cql", "| random"]
    assert (out / "trials" / f"bc_cnn_{small}_s0" / "checkpoint.pt").exists()


def test_a_diverged_trial_is_a_row_not_a_crash(tmp_path, stores, monkeypatch):
    from robot_stack.jobs import offline as offline_job

    def diverge(job):
        raise FloatingPointError("CQL step 3: non-finite ['td_loss']")

    monkeypatch.setattr(offline_job, "run_job", diverge)
    trial = make_trials(sweep(tmp_path, [str(stores[0])], algos=["cql"]))[0]
    result = sweep_offline.run_offline_trial(trial.job_config)
    assert "non-finite" in result["error"] and 0.0 <= result["random_success"] <= 1.0
    sweep_offline.write_offline_results(tmp_path, [trial], [result])
    rows = sweep_offline.read_offline_results(tmp_path / "results.csv")
    assert math.isnan(rows[0]["success_rate"]) and "non-finite" in rows[0]["error"]
    assert "diverged" in sweep_offline.offline_table(rows)
