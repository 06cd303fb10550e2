"""robot-stack data info|validate|view|merge: validate names each inconsistency (ISSUE 5)."""

from __future__ import annotations

import json
import shutil

import imageio.v3 as iio
import numpy as np
import pytest

from robot_stack.cli import main
from robot_stack.recorder import EpisodeDataset, EpisodeRecorder, crashtest, store


@pytest.fixture()
def good(tmp_path):
    path = tmp_path / "good.zarr"
    with EpisodeRecorder(path, crashtest.OBS_SPEC, crashtest.ACTION_SPEC, {"task": "cli"}) as rec:
        for seed in (4, 5):
            rec.start_episode({"seed": seed})
            for obs, act, rew, info in crashtest.episode_steps(seed):
                rec.add_step(obs, act, rew, info)
            rec.end_episode(True)
    return path


def _validate(path, capsys) -> tuple[int, str]:
    code = main(["data", "validate", str(path)])
    return code, capsys.readouterr().out.strip() + "\n"


def test_info_and_validate_on_a_good_store(good, capsys):
    assert main(["data", "info", str(good)]) == 0
    out = capsys.readouterr().out
    assert "2 episodes" in out and "heightmap" in out
    assert _validate(good, capsys) == (0, f"{good}: ok\n")


def test_validate_names_a_truncated_chunk(good, capsys):
    chunk = good / "data" / "heightmap" / "c" / "0" / "0" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:40])
    code, out = _validate(good, capsys)
    assert code == 1 and "truncated or corrupt chunk data/heightmap/c/0/0/0/0" in out


def test_validate_names_a_missing_array(good, capsys):
    shutil.rmtree(good / "data" / "reward")
    code, out = _validate(good, capsys)
    assert code == 1 and "missing array data/reward" in out


def test_validate_names_episode_ends_that_disagree_with_the_data(good, capsys):
    import zarr

    ends = zarr.open_array(str(good / "meta" / "episode_ends"), mode="r+")
    n = int(ends[-1])
    ends[-1] = n + 7
    code, out = _validate(good, capsys)
    assert code == 1 and f"episodes end at step {n + 7} but data/action has only {n} steps" in out
    ends[-1] = n - 2
    code, out = _validate(good, capsys)
    assert code == 1 and "data/action has 2 uncommitted steps" in out


def test_validate_repair_truncates_an_interrupted_tail(good, capsys):
    group, header = store.open_group(good, "r+")
    store.append_steps(group, {k: np.zeros((2, *a.shape[1:]), a.dtype) for k, a in group["data"].arrays()}, header)
    assert _validate(good, capsys)[0] == 1
    assert main(["data", "validate", str(good), "--repair"]) == 0
    assert "discarded 2 uncommitted steps" in capsys.readouterr().out
    assert crashtest.check_store(good) == 2


def test_validate_on_a_path_that_is_not_a_store(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("x")
    code, out = _validate(tmp_path, capsys)
    assert code == 1 and "not a robot-stack episode store" in out


def test_view_writes_a_gif_and_a_png_strip(good, tmp_path, capsys):
    n = len(crashtest.episode_steps(5))
    gif, png = tmp_path / "e.gif", tmp_path / "e.png"
    assert main(["data", "view", str(good), "--episode", "1", "--out", str(gif), "--scale", "2"]) == 0
    assert main(["data", "view", str(good), "--episode", "1", "--out", str(png), "--every", "2"]) == 0
    frames = iio.imread(gif, index=None)
    assert frames.shape[0] == n and frames.shape[2] == 64  # 32 cells x scale 2
    strip = iio.imread(png)
    assert strip.shape[1] == 128 * len(range(0, n, 2))
    assert main(["data", "view", str(good), "--out", str(tmp_path / "e.avi")]) == 2
    assert main(["data", "view", str(good), "--episode", "9"]) == 2  # no such episode: a clear error
    assert "no episode 9" in capsys.readouterr().err


def test_merge_appends_every_episode_and_refuses_other_specs(good, tmp_path, capsys):
    out = tmp_path / "merged.zarr"
    assert main(["data", "merge", str(out), str(good), str(good)]) == 0
    merged = EpisodeDataset(out)
    assert len(merged) == 4 and [e.meta["seed"] for e in merged.episodes()] == [4, 5, 4, 5]
    assert crashtest.check_store(out) == 4
    other = tmp_path / "other.zarr"
    from robot_stack.specs import ActionSpec

    EpisodeRecorder(other, crashtest.OBS_SPEC, ActionSpec(dpos=0.01)).close()
    before = json.loads((out / "meta" / "episode_ends" / "zarr.json").read_text())["shape"]
    assert main(["data", "merge", str(out), str(other)]) == 2
    assert "dpos" in capsys.readouterr().err
    assert json.loads((out / "meta" / "episode_ends" / "zarr.json").read_text())["shape"] == before
