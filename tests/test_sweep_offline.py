"""Offline sweeps (job: offline): a tiny algos x datasets grid on a local Ray writes CSV, PNG and table; a bad
dataset or key fails before Ray starts; a diverged trial is a row, not a crash."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from test_offline_job import record_toy

from robot_stack import cli, config
from robot_stack.jobs import grid, sweep_offline
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
    with pytest.raises(config.ConfigError, match="sweep family 'exact\\+cnn'.*write 'exact\\+cnn_aug'"):
        sweep(tmp_path, [str(stores[0])], families=["cnn", "exact+cnn"])
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


# ------------------------------------------------------------------ issue 21: bad stores, failing cells, resuming

def _nan_store(path: Path) -> Path:
    import numpy as np
    import zarr

    record_toy(path, episodes=2, size=SIZE)
    rewards = zarr.open_group(str(path), mode="r+")["data/reward"]
    values = rewards[:]
    values[1] = np.nan
    rewards[:] = values
    return path


def _old_store(path: Path) -> Path:
    import json

    record_toy(path, episodes=2, size=SIZE)
    doc = json.loads((path / "zarr.json").read_text())
    doc["attributes"]["robot_stack"]["spec_version"] = 1
    (path / "zarr.json").write_text(json.dumps(doc))
    return path


def _empty_store(path: Path) -> Path:
    from robot_stack.recorder import EpisodeRecorder
    from sim.toy import make_toy_env

    obs_spec, action_spec, _ = make_toy_env(heightmap_size=SIZE).policy_spec_parts
    EpisodeRecorder(path, obs_spec, action_spec).close()
    return path


@pytest.mark.parametrize("make, problem", [
    (_nan_store, "data/reward has NaN or inf"),
    (_old_store, "spec version 1; this robot-stack uses spec version 2"),
    (_empty_store, "no committed episodes"),
    (lambda p: record_toy(p, episodes=2, size=24), "spec does not match.*heightmap"),
])
def test_a_bad_store_is_refused_before_ray_naming_the_store_and_the_problem(tmp_path, stores, no_ray, make, problem):
    bad = make(tmp_path / "bad.zarr")
    with pytest.raises(SweepError, match=rf"datasets\[1\]: cannot use dataset '{bad}'.*{problem}") as err:
        run_sweep(sweep(tmp_path, [str(stores[0]), str(bad)]))
    assert "\n" not in str(err.value)


def test_a_trial_that_raises_while_training_is_a_row(tmp_path, stores, monkeypatch):
    from robot_stack.jobs import offline as offline_job

    def broken(job):
        raise RuntimeError("escnn basis\nsecond line")

    monkeypatch.setattr(offline_job, "run_job", broken)
    trial = make_trials(sweep(tmp_path, [str(stores[0])], algos=["iql"]))[0]
    assert sweep_offline.run_offline_trial(trial.job_config)["error"] == "RuntimeError: escnn basis"


class FakeRay:
    """The Ray calls of ``sweep._run_all``, run in this process one trial at a time by ``run(job_config)``."""

    class exceptions:  # noqa: N801 - stands in for the module ray.exceptions
        class RayError(Exception):
            pass

    class Ref:
        def __init__(self, job_config: dict) -> None:
            self.job_config = job_config

    def __init__(self, run) -> None:
        self.run = run

    def remote(self, **resources):
        ref = self.Ref

        class Remote:
            @staticmethod
            def remote(job_config, setup):
                return ref(job_config)

        return lambda fn: Remote

    def wait(self, pending, num_returns):
        return pending[:1], pending[1:]

    def get(self, ref):
        return self.run(ref.job_config)


def _row(job_config: dict) -> dict:
    return {"success_rate": 0.5, "return": 0.5, "length": 3.0, "transitions": 7, "train_seconds": 0.1,
            "seconds": 0.2, "random_success": 0.0, "metrics": {}, "error": ""}


def test_a_stopped_grid_keeps_its_rows_and_a_rerun_runs_only_the_rest(tmp_path, stores):
    from robot_stack.jobs import sweep as sweep_job

    cfg = sweep(tmp_path, [str(stores[0]), {"name": "big", "path": str(stores[1])}])
    trials = make_trials(cfg)
    ran: list[str] = []

    def stop_at_third(job_config):
        if len(ran) == 2:
            raise KeyboardInterrupt
        ran.append(job_config["name"])
        return _row(job_config)

    with pytest.raises(KeyboardInterrupt):
        sweep_job._run_all(FakeRay(stop_at_third), cfg, sweep_job.JOBS["offline"], trials, None, False)
    partial = sweep_offline.read_offline_results(cfg.run_dir / "results.csv")
    assert len(partial) == 2 and (cfg.run_dir / "table.md").exists()  # partial outputs as the grid goes
    first = list(ran)

    def count(job_config):
        ran.append(job_config["name"])
        if job_config["name"] == trials[3].label:
            raise FakeRay.exceptions.RayError("worker killed")
        return _row(job_config)

    results = sweep_job._run_all(FakeRay(count), cfg, sweep_job.JOBS["offline"], trials, None, False)
    assert ran[2:] == [t.label for t in trials[2:]] and ran[:2] == first  # the kept two did not run again
    assert results[3]["error"].startswith("RayError: worker killed") and results[2]["error"] == ""
    assert len(sweep_offline.read_offline_results(cfg.run_dir / "results.csv")) == 4
    assert not (cfg.run_dir / "trials" / trials[3].label / "result.json").exists()  # a failed task runs again
    changed = make_trials(sweep(tmp_path, [str(stores[0]), {"name": "big", "path": str(stores[1])}],
                                overrides={**TINY, "steps": 5}))
    assert grid.saved_result(cfg.run_dir, changed[0]) is None  # another config: the trial runs again
    assert grid.saved_result(cfg.run_dir, trials[0]) == _row({})
    retuned = make_trials(sweep(tmp_path, [str(stores[0]), {"name": "big", "path": str(stores[1])}],
                                overrides={**TINY, "cql": {"alpha": 5.0}}))
    assert [t.algo for t in trials] == ["bc", "cql", "bc", "cql"]
    assert grid.saved_result(cfg.run_dir, retuned[0]) == _row({})  # BC's trial: CQL's settings are not its config
    assert grid.saved_result(cfg.run_dir, retuned[1]) is None  # CQL's trial runs again


@pytest.mark.parametrize("failure, kept", [
    (FloatingPointError("CQL step 3: non-finite ['td_loss']"), True),
    (OSError("No space left on device"), False),
    (MemoryError(), False),
])
def test_only_a_finished_or_diverged_trial_is_kept_for_a_rerun(tmp_path, stores, monkeypatch, failure, kept):
    from robot_stack.jobs import offline as offline_job
    from robot_stack.jobs import sweep as sweep_job

    def fail(job):
        raise failure

    monkeypatch.setattr(offline_job, "run_job", fail)
    cfg = sweep(tmp_path, [str(stores[0])], algos=["cql"])
    trials = make_trials(cfg)
    results = sweep_job._run_all(FakeRay(sweep_offline.run_offline_trial), cfg, sweep_job.JOBS["offline"], trials,
                                 None, False)
    assert results[0]["error"].startswith(type(failure).__name__)
    assert grid.result_path(cfg.run_dir, trials[0]).exists() == kept
    ran: list[str] = []

    def count(job_config):
        ran.append(job_config["name"])
        return _row(job_config)

    sweep_job._run_all(FakeRay(count), cfg, sweep_job.JOBS["offline"], trials, None, False)
    assert ran == ([] if kept else [trials[0].label])


def test_a_failed_result_an_older_version_kept_runs_again(tmp_path, stores):
    from robot_stack.jobs import sweep as sweep_job

    cfg = sweep(tmp_path, [str(stores[0])], algos=["bc"])
    trials = make_trials(cfg)
    grid.save_result(cfg.run_dir, trials[0], {"error": "OSError: disk", "random_success": 0.0})
    ran: list[str] = []

    def count(job_config):
        ran.append(job_config["name"])
        return _row(job_config)

    sweep_job._run_all(FakeRay(count), cfg, sweep_job.JOBS["offline"], trials, None, False)
    assert ran == [trials[0].label] and grid.saved_result(cfg.run_dir, trials[0]) == _row({})


def test_a_kept_trial_runs_again_after_its_store_is_rebuilt_or_its_env_resolves_otherwise(tmp_path, monkeypatch):
    import shutil

    from robot_stack.jobs import envs

    path = tmp_path / "data.zarr"
    record_toy(path, episodes=2, size=SIZE)
    cfg = sweep(tmp_path, [{"name": "data", "path": str(path)}], algos=["bc"])
    grid.save_result(cfg.run_dir, make_trials(cfg)[0], _row({}))
    assert grid.saved_result(cfg.run_dir, make_trials(cfg)[0]) == _row({})
    shutil.rmtree(path)
    record_toy(path, episodes=2, size=SIZE)  # the same episodes, recorded again
    again = make_trials(cfg)[0]
    assert again.job_config == make_trials(cfg)[0].job_config
    assert grid.saved_result(cfg.run_dir, again) is None
    grid.save_result(cfg.run_dir, again, _row({}))
    resolved = envs.resolved_env
    monkeypatch.setattr(envs, "resolved_env", lambda task, env: {**resolved(task, env), "max_steps": 99})
    assert grid.saved_result(cfg.run_dir, make_trials(cfg)[0]) is None


def test_resolved_env_holds_the_task_defaults_a_zero_stands_for(monkeypatch):
    pytest.importorskip("robosuite")
    from robot_stack.jobs import envs
    from sim import env as sim_env

    push = envs.resolved_env("push", {"view": "gripper"})
    assert (push["horizon"], push["view"]) == (sim_env.TASK_DEFAULTS["push"].horizon, "gripper")
    assert envs.resolved_env("push", {"horizon": 33})["horizon"] == 33
    monkeypatch.setitem(sim_env.TASK_DEFAULTS, "push", sim_env.TaskDefaults(horizon=60, dpos=0.04))
    assert envs.resolved_env("push", {"view": "gripper"}) == {**push, "horizon": 60}


def test_the_random_baseline_is_computed_again_when_the_env_resolves_otherwise(tmp_path, monkeypatch):
    from robot_stack.jobs import envs
    from robot_stack.jobs.offline import OfflineJob

    calls: list[int] = []
    monkeypatch.setattr(sweep_offline, "random_success", lambda job: calls.append(1) or 0.25)
    job = config.build(OfflineJob, {"task": "toy_reach", "out_dir": str(tmp_path)})
    assert sweep_offline.cached_random_success(job) == sweep_offline.cached_random_success(job) == 0.25
    resolved = envs.resolved_env
    monkeypatch.setattr(envs, "resolved_env", lambda task, env: {**resolved(task, env), "max_steps": 99})
    sweep_offline.cached_random_success(job)
    assert len(calls) == 2
