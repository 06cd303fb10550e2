"""collect records sim episodes; replay re-executes one from its seed and layout (ISSUE 5)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("robosuite")

from robot_stack.jobs.collect import CollectJob, collect  # noqa: E402
from robot_stack.jobs.replay import replay  # noqa: E402
from robot_stack.recorder import EpisodeDataset  # noqa: E402


def test_collected_sim_episode_replays_exactly_and_a_changed_action_diverges(tmp_path):
    out = tmp_path / "reach.zarr"
    job = CollectJob(task="reach", out=str(out), episodes=2, noise=0.2, seed=7, max_steps=5, record_depth=True,
                     sim={"heightmap_size": 32})
    summary = collect(job)
    assert summary["committed"] == 2
    ds = EpisodeDataset(out)
    ep = ds.episode(1)
    assert ep.meta["seed"] == 8 and ep.meta["task"] == "reach" and ep.meta["policy_id"] == "expert-reach"
    assert ep.meta["camera"]["intrinsics"]["width"] > 0 and ep.meta["noise"] == 0.2
    assert len(ep) == 5 and ep.extras["depth"].shape[0] == 5 and np.any(ep.action != 0)
    report = replay(ep)
    assert report["max_divergence"] == 0.0 and report["first differing step"] is None
    ep.action[1] = -ep.action[1] if np.any(ep.action[1]) else np.ones(5, np.float32)
    changed = replay(ep)
    assert changed["max_divergence"] > 0 and changed["first differing step"] == 2
