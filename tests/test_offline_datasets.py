"""collect with sizes (issue 21): one store per size at the gripper view, nested, with their quality stated."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robot_stack.config import ConfigError
from robot_stack.jobs.collect import CollectJob
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
    with pytest.raises(ConfigError, match="recorded with other settings: sim .*'gripper'.*'workspace'"):
        make_datasets(other_view)


def test_bad_sizes_are_refused():
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
