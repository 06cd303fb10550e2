"""EpisodeDataset: episodes, (n-step) transitions, splits, augmentation, fsspec URLs, trainer checks."""

from __future__ import annotations

import numpy as np
import pytest

from robot_stack.recorder import DatasetError, EpisodeDataset, EpisodeRecorder, crashtest
from robot_stack.specs import ActionSpec, HeightmapSpec, ObservationSpec
from robot_stack.symmetry import Group, act_on_action, act_on_image

OBS, ACT = crashtest.OBS_SPEC, crashtest.ACTION_SPEC


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("ds") / "ds.zarr"
    with EpisodeRecorder(path, OBS, ACT, {"task": "unit"}) as rec:
        for seed in range(6):  # even seeds end terminal, odd ones are cut by a time limit
            rec.start_episode({"seed": seed})
            for obs, act, rew, info in crashtest.episode_steps(seed):
                rec.add_step(obs, act, rew, info)
            rec.end_episode(True)
    return path


def test_transitions_pair_consecutive_steps_of_one_episode(store_path):
    ds = EpisodeDataset(store_path)
    tr = ds.transitions()
    lengths = [len(crashtest.episode_steps(s)) for s in range(6)]
    # every step but the last of time-limited (odd) episodes is a transition
    assert len(tr["index"]) == sum(lengths) - 3
    ends = np.cumsum(lengths)
    for i, t in enumerate(tr["index"]):
        last = t + 1 in ends
        assert tr["done"][i] == float(last)
        want_next = ds._read("heightmap", np.array([t if last else t + 1]))[0]
        assert np.array_equal(tr["next_obs"]["heightmap"][i], want_next)
        assert np.array_equal(tr["obs"]["gripper"][i], ds._read("gripper", np.array([t]))[0])


def test_n_step_returns_stop_at_terminal_and_episode_end(store_path):
    ds = EpisodeDataset(store_path)
    ep0 = ds.episode(0)  # seed 0: terminal at its last step
    n, gamma = 3, 0.5
    tr = ds.transitions(n_step=n, gamma=gamma)
    L = len(ep0)
    for t in range(L):
        i = int(np.flatnonzero(tr["index"] == t)[0])
        k = min(n, L - t)
        want = sum(gamma ** j * ep0.reward[t + j] for j in range(k))
        assert tr["reward"][i] == pytest.approx(want, rel=1e-5)
        assert tr["done"][i] == float(t + k == L)
        assert tr["discount"][i] == pytest.approx(gamma ** k)


def test_split_is_by_whole_episodes_and_reproducible(store_path):
    ds = EpisodeDataset(store_path)
    train, val = ds.split(0.34, seed=1)
    assert len(train) + len(val) == 6 and len(val) == 2
    assert set(train.episode_ids).isdisjoint(val.episode_ids)
    assert list(ds.split(0.34, seed=1)[1].episode_ids) == list(val.episode_ids)
    batch = val.sample(32, np.random.default_rng(0))
    starts = {int(np.cumsum([0] + [len(e) for e in ds.episodes()])[i]) for i in val.episode_ids}
    ends = {int(np.cumsum([len(e) for e in ds.episodes()])[i]) for i in val.episode_ids}
    assert all(any(s <= t < e for s, e in zip(sorted(starts), sorted(ends), strict=True)) for t in batch["index"])


def test_augmented_sample_rotates_heightmaps_and_actions_together(store_path):
    ds = EpisodeDataset(store_path)
    group = Group.parse("D4")
    plain = ds.sample(16, np.random.default_rng(3))
    aug = ds.sample(16, np.random.default_rng(3), augment_group=group)
    assert np.array_equal(plain["index"], aug["index"])
    assert len(set(aug["group_element"].tolist())) > 1
    for i, gi in enumerate(aug["group_element"]):
        g = group.element(int(gi))
        assert np.array_equal(aug["obs"]["heightmap"][i], act_on_image(g, plain["obs"]["heightmap"][i]))
        assert np.array_equal(aug["next_obs"]["heightmap"][i], act_on_image(g, plain["next_obs"]["heightmap"][i]))
        assert np.allclose(aug["action"][i], act_on_action(g, plain["action"][i]))
        assert np.array_equal(aug["obs"]["gripper"][i], plain["obs"]["gripper"][i])


def test_fsspec_url_without_cache_reads_the_same_batches(store_path):
    local = EpisodeDataset(store_path)
    remote = EpisodeDataset(f"file://{store_path}", cache=False)
    a, b = local.sample(8, np.random.default_rng(9)), remote.sample(8, np.random.default_rng(9))
    assert np.array_equal(a["obs"]["heightmap"], b["obs"]["heightmap"]) and np.array_equal(a["action"], b["action"])


def test_trainer_checks_name_the_problem(store_path, tmp_path):
    ds = EpisodeDataset(store_path)
    ds.check(OBS, ACT)
    with pytest.raises(DatasetError, match="heightmap"):
        ds.check_spec(ObservationSpec.create(HeightmapSpec(64)), ACT)
    with pytest.raises(DatasetError, match="dpos"):
        ds.check_spec(OBS, ActionSpec(dpos=0.01))
    empty = tmp_path / "empty.zarr"
    EpisodeRecorder(empty, OBS, ACT).close()
    with pytest.raises(DatasetError, match="no committed episodes"):
        EpisodeDataset(empty).sample(4, np.random.default_rng(0))
    nan = tmp_path / "nan.zarr"
    with EpisodeRecorder(nan, OBS, ACT) as rec:
        rec.start_episode()
        rec.add_step(OBS.zeros(), np.zeros(5, np.float32), 0.0)
        rec.end_episode(True)
    import zarr

    zarr.open_array(str(nan / "data" / "reward"), mode="r+")[0] = np.nan
    with pytest.raises(DatasetError, match="data/reward has NaN or inf in episode 0 at step 0"):
        EpisodeDataset(nan).check()
    with pytest.raises(DatasetError, match="out of range"):
        EpisodeDataset(store_path, episodes=[7])


def test_episode_stats_count_episodes_transitions_successes_and_returns(tmp_path):
    path = tmp_path / "stats.zarr"
    with EpisodeRecorder(path, OBS, ACT, {"task": "unit"}) as rec:
        for seed, success in zip(range(4), (True, False, None, True), strict=True):
            rec.start_episode({"seed": seed})
            for obs, act, rew, info in crashtest.episode_steps(seed):
                rec.add_step(obs, act, rew, info)
            rec.end_episode(success)
    ds = EpisodeDataset(path)
    steps = [crashtest.episode_steps(s) for s in range(4)]
    stats = ds.episode_stats()
    assert (stats["episodes"], stats["steps"]) == (4, sum(map(len, steps)))
    assert stats["transitions"] == ds.n_transitions() == len(ds.transitions()["action"])
    assert (stats["successes"], stats["success_share"]) == (2, pytest.approx(2 / 3))  # the unlabelled one left out
    returns = [sum(float(step[2]) for step in episode) for episode in steps]
    assert stats["mean_return"] == pytest.approx(np.mean(returns), rel=1e-5)
    assert stats["mean_length"] == pytest.approx(np.mean(list(map(len, steps))))
    odd = ds.split(0.5, seed=0)[1].episode_stats()  # a view counts its own episodes
    assert odd["episodes"] == 2 and odd["steps"] < stats["steps"]


def test_episode_stats_of_an_empty_store(tmp_path):
    EpisodeRecorder(tmp_path / "empty.zarr", OBS, ACT).close()
    stats = EpisodeDataset(tmp_path / "empty.zarr").episode_stats()
    assert (stats["episodes"], stats["transitions"], stats["success_share"]) == (0, 0, None)
