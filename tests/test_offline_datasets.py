"""collect with sizes (issue 21): one store per size at the gripper view, nested, with their quality stated."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from robot_stack.config import ConfigError
from robot_stack.jobs.collect import CollectJob, collect
from robot_stack.jobs.offline_data import make_datasets, store_quality
from robot_stack.recorder import EpisodeDataset

pytest.importorskip("robosuite")

SIM = {"view": "gripper", "heightmap_size": 16}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    job = CollectJob(task="push", out=str(root / "{task}_{transitions}.zarr"), sizes=[30, 90], noise=[0.1, 2.0],
                     sim=SIM)
    return job, make_datasets(job)


def test_one_store_per_size_of_exactly_that_many_transitions(made):
    job, result = made
    assert [r["size"] for r in result["rows"]] == [30, 90]
    for row in result["rows"]:
        ds = EpisodeDataset(row["store"])
        assert row["transitions"] == row["size"] == len(ds.transitions()["action"])
        assert ds.header["meta"]["heightmap"]["view"] == "gripper"
        assert ds.obs_spec.fields[0].shape[-1] == 16
    small, big = (EpisodeDataset(r["store"]) for r in result["rows"])
    # the smaller store holds the first episodes of the larger one, its last one cut short
    first = small.episode(0).action
    np.testing.assert_array_equal(first, big.episode(0).action[: len(first)])


def test_quality_is_printed_and_written_beside_the_stores(made, capsys):
    job, result = made
    for row in result["rows"]:
        assert 0.0 <= row["success_share"] <= 1.0 and row["episodes"] >= 1 and np.isfinite(row["mean_return"])
        assert set(row["by_noise"]) <= {"0.1", "2"} and sum(v["episodes"] for v in row["by_noise"].values()) == \
            row["episodes"]
    saved = json.loads(open(result["files"]["json"]).read())
    assert [r["transitions"] for r in saved["stores"]] == [30, 90] and saved["provenance"]["commit"]
    md = open(result["files"]["md"]).read()
    assert "| success share |" in md and "push_90.zarr" in md and "view gripper" in md


def test_a_rerun_keeps_the_stores_and_a_store_of_another_size_is_refused(made, tmp_path):
    job, result = made
    again = make_datasets(CollectJob(**{**vars(job), "sizes": [30]}))
    assert again["rows"][0]["made"] == "kept"
    saved = json.loads(open(result["files"]["json"]).read())
    assert [r["transitions"] for r in saved["stores"]] == [30, 90]  # the 90 row of the first run stays
    wrong = CollectJob(**{**vars(job), "sizes": [40], "out": result["rows"][0]["store"]})
    with pytest.raises(ConfigError, match="holds a store of 30 transitions, not 40"):
        make_datasets(wrong)
    other_view = CollectJob(**{**vars(job), "sizes": [30], "sim": {**SIM, "view": "workspace"}})
    with pytest.raises(ConfigError, match="recorded with other settings: env.view 'gripper' \\(here 'workspace'\\)"):
        make_datasets(other_view)


@pytest.mark.parametrize("change, difference", [
    ({"seed": 1}, "seed 0 (here 1)"),
    ({"policy": "runs/other.onnx"}, "policy 'expert' (here 'runs/other.onnx')"),
])
def test_a_store_of_another_seed_or_policy_is_refused(made, change, difference):
    job, result = made
    with pytest.raises(ConfigError, match=re.escape(difference)):
        make_datasets(CollectJob(**{**vars(job), "sizes": [30], **change}))


def test_a_store_recorded_before_a_task_default_changed_is_refused(made, monkeypatch):
    from sim import env as sim_env

    job, result = made
    horizon = sim_env.TASK_DEFAULTS["push"].horizon
    monkeypatch.setitem(sim_env.TASK_DEFAULTS, "push", sim_env.TaskDefaults(horizon=horizon - 20, dpos=0.04))
    with pytest.raises(ConfigError, match=re.escape(f"env.horizon {horizon} (here {horizon - 20})")):
        make_datasets(CollectJob(**{**vars(job), "sizes": [30]}))


def test_a_store_a_stopped_run_left_short_is_recorded_again(made, tmp_path, monkeypatch):
    from robot_stack.jobs import collect as collect_job

    job = CollectJob(**{**vars(made[0]), "out": str(tmp_path / "{task}_{transitions}.zarr"), "sizes": [90]})
    one_episode, calls = collect_job._episode, []

    def stop_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return one_episode(*args, **kwargs)

    monkeypatch.setattr(collect_job, "_episode", stop_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        make_datasets(job)
    monkeypatch.undo()
    left = EpisodeDataset(tmp_path / "push_90.zarr").n_transitions()
    assert 0 < left < 90
    (row,) = make_datasets(job)["rows"]
    assert row["made"] == f"re-recorded (a stopped run left {left})" and row["transitions"] == 90
    assert len(EpisodeDataset(row["store"]).transitions()["action"]) == 90
    assert f"re-recorded (a stopped run left {left})" in open(tmp_path / "push_datasets.md").read()


def test_bad_sizes_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="offline_data.make_datasets"):
        collect(CollectJob(task="push", sizes=[10], out=str(tmp_path / "{task}_{transitions}.zarr")))
    assert not list(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="either sizes"):
        CollectJob(task="push", sizes=[10], transitions=10)
    with pytest.raises(ConfigError, match="distinct"):
        CollectJob(task="push", sizes=[10, 10])
    with pytest.raises(ConfigError, match="transitions"):
        make_datasets(CollectJob(task="push", sizes=[10, 20], out="runs/one.zarr"))


def test_store_quality_describes_a_store_without_noise_levels(tmp_path):
    from test_offline_job import record_toy

    path = record_toy(tmp_path / "robot_like.zarr", episodes=3)  # no per-episode noise, as a robot's recorder writes
    row = store_quality(path)
    assert row["episodes"] == 3 and "by_noise" not in row and row["transitions"] > 0
