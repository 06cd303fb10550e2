"""collect's `transitions: N` stop condition and per-episode noise list (issue 6, datasets of N transitions)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from robot_stack.commands.collect import run
from robot_stack.config import ConfigError
from robot_stack.jobs.collect import CollectJob, collect, record_episodes
from robot_stack.recorder import EpisodeDataset, EpisodeRecorder, crashtest
from robot_stack.recorder.dataset import Episode


class EndsOnStep3:
    """A stand-in env whose every episode succeeds on its third step (horizon 10)."""

    horizon = 10

    def __init__(self) -> None:
        self._t = 0

    def observe(self) -> dict[str, np.ndarray]:
        return {f.name: np.full(f.shape, self._t, np.float32) for f in crashtest.OBS_SPEC.fields}

    def reset(self, seed: int | None = None) -> tuple[dict, dict]:
        self._t = 0
        return self.observe(), {"success": False}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        self._t += 1
        done = self._t == 3
        return self.observe(), float(done), done, self._t >= self.horizon, {"success": done}


def zero_policy(obs: dict, reset: bool = False, noise: float = 0.0) -> np.ndarray:
    return np.zeros(0 if reset else 5, np.float32)


def test_a_terminal_step_past_the_budget_is_dropped_and_the_next_episode_fills_in(tmp_path):
    path = tmp_path / "fake.zarr"
    job = CollectJob(task="reach", transitions=5)  # record_episodes steps the stand-in env, not the task's
    with EpisodeRecorder(path, crashtest.OBS_SPEC, crashtest.ACTION_SPEC, when_full="wait") as rec:
        successes, steps, transitions = record_episodes(EndsOnStep3(), rec, zero_policy, job, [0.0, 0.5])
        rec.flush()
    ds = EpisodeDataset(path)
    # 3 terminal steps; then 2 left: the terminal 3rd step would make 3, so 2 steps (1 transition); then 1 left.
    assert transitions == 5 == len(ds.transitions()["action"])
    assert [len(e) for e in ds.episodes()] == [3, 2, 2] and steps == 7 and successes == [True, False, False]
    assert [ds.episode_meta(i)["cut"] for i in range(3)] == [False, True, True]
    assert [ds.episode_meta(i)["noise"] for i in range(3)] == [0.0, 0.5, 0.0]


def test_collect_stops_at_exactly_n_transitions_of_mixed_quality(tmp_path):
    pytest.importorskip("robosuite")
    out = tmp_path / "reach.zarr"
    job = CollectJob(task="reach", out=str(out), transitions=20, noise=[0.0, 2.0], seed=0,
                     sim={"heightmap_size": 32})
    summary = collect(job)
    ds = EpisodeDataset(out)
    assert summary["transitions"] == 20 == len(ds.transitions()["action"])
    infos = [ds.episode_meta(i) for i in range(len(ds))]
    assert {m["noise"] for m in infos} == {0.0, 2.0}
    assert {m["success"] for m in infos} == {True, False}  # the clean expert reaches, the noisy one does not
    assert summary["committed"] == len(ds) and summary["steps"] == ds.n_steps


@pytest.mark.parametrize("override, word", [("transitions=-1", "transitions"), ("noise=-0.1", "noise"),
                                            ("noise=[0.1, -1]", "noise"), ("noise=[]", "noise"),
                                            ("noise=[0.1, x]", "number")])
def test_bad_values_are_refused_before_the_sim_starts(override, word):
    with pytest.raises(ConfigError, match=word):
        run(argparse.Namespace(config="collect_offline", overrides=[override]))


def test_transitions_refuses_an_existing_store(tmp_path):
    out = tmp_path / "old.zarr"
    EpisodeRecorder(out, crashtest.OBS_SPEC, crashtest.ACTION_SPEC).close()
    with pytest.raises(ConfigError, match="already holds a store"):
        collect(CollectJob(task="reach", out=str(out), transitions=20))


def test_expert_labels_record_the_experts_action_where_the_policy_goes(tmp_path):
    """label=expert: a policy drives, the store holds the scripted expert's action at each visited state (DAgger)."""
    pytest.importorskip("robosuite")
    import sim
    from robot_stack.runtime.synthetic import make_package
    from robot_stack.specs import PolicySpec

    env = sim.make_env("push", heightmap_size=16)
    package = make_package(tmp_path / "p.onnx", PolicySpec(*env.policy_spec_parts, group="C4", family="synthetic"),
                           kind="linear")
    env.close()
    out = tmp_path / "dagger.zarr"
    job = CollectJob(task="push", out=str(out), episodes=1, max_steps=4, policy=str(package), label="expert",
                     noise=0.0, sim={"heightmap_size": 16})
    collect(job)
    recorded = EpisodeDataset(out).episode(0).action
    replay = sim.make_env("push", heightmap_size=16)
    expert = sim.make_expert("push", replay, seed=0)
    from robot_stack.runtime.package import load_policy_package

    policy = load_policy_package(package)
    obs, _ = replay.reset(seed=0)
    for step_action in recorded:
        np.testing.assert_allclose(step_action, expert.act(obs, replay), atol=1e-6)  # the expert's label
        obs, *_ = replay.step(policy.act(obs))  # ... at the states the policy's own actions lead to
    replay.close()
    with pytest.raises(ConfigError, match="label"):
        CollectJob(task="push", label="expert", noise=0.0)  # the clean expert labelling itself adds nothing


def test_noisy_expert_acts_and_the_clean_expert_labels(tmp_path):
    """label=expert with the expert at noise > 0 (DART): the noisy expert drives exactly as it does unlabelled, and
    the store holds the noise-free expert action at each state it reaches (no yaw, the gripper exactly closed)."""
    pytest.importorskip("robosuite")

    def record(name: str, label: str) -> Episode:
        out = tmp_path / name
        collect(CollectJob(task="push", out=str(out), episodes=1, max_steps=6, label=label, noise=0.5,
                           sim={"heightmap_size": 16}))
        return EpisodeDataset(out).episode(0)

    dart, noisy = record("dart.zarr", "expert"), record("noisy.zarr", "policy")
    for key in noisy.obs:
        np.testing.assert_array_equal(dart.obs[key], noisy.obs[key])  # the same states visited
    assert np.all(dart.action[:, 3] == 0.0) and np.all(dart.action[:, 4] == 1.0)  # the clean push expert's labels
    assert not np.allclose(noisy.action[:, 3:], dart.action[:, 3:])  # ... not the noisy actions it executed
