"""A sim scene is built from the env's seed alone: same seed, same episode, in any process (docs/sim.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("robosuite")

import sim  # noqa: E402
from sim.env import UNSEEDED_SCENE_SEED  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# Builds a seeded and an unseeded lift env after seeding numpy's global generator with argv[2], resets both with
# seed 11 and lets the noise-free expert act for 20 steps; saves what a second process must reproduce.
CHILD = """
import sys
import numpy as np
import sim

np.random.seed(int(sys.argv[2]))
result = {}
for name, seed in (("seeded", 5), ("unseeded", None)):
    env = sim.make_env("lift", seed=seed, heightmap_size=32)
    obs, _ = env.reset(seed=11)
    result[name + "_first"] = obs["heightmap"]
    expert = sim.make_expert("lift", env, noise=0.0, seed=0)
    actions = []
    for _ in range(20):
        actions.append(expert.act(obs, env))
        obs, *_ = env.step(actions[-1])
    result[name + "_actions"] = np.array(actions)
    result[name + "_qpos"] = np.array(env._data.qpos)
    result[name + "_last"] = obs["heightmap"]
    result[name + "_cube"] = np.array(env._rs.cube.size)
    env.close()
np.savez(sys.argv[1], **result)
"""


def _python(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


def test_same_seed_builds_the_same_lift_episode_in_two_processes(tmp_path):
    paths = [tmp_path / f"run{i}.npz" for i in range(2)]
    procs = [_python("-c", CHILD, str(path), str(i)) for i, path in enumerate(paths)]
    for proc in procs:
        _finish(proc)
    a, b = (np.load(p) for p in paths)
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert np.any(a["seeded_cube"] != a["unseeded_cube"])  # an unseeded build is not the seed-5 scene
    assert np.abs(a["seeded_actions"]).max() > 0


def test_different_seeds_still_draw_different_cube_sizes():
    sizes = []
    for seed in (0, 1, 2):
        env = sim.make_env("lift", seed=seed, heightmap_size=16)
        sizes.append(tuple(env._rs.cube.size))
        env.close()
    assert len(set(sizes)) == 3
    assert all(0.02 <= s <= 0.022 for size in sizes for s in size)


def test_unseeded_build_uses_the_documented_scene_seed():
    env = sim.make_env("push", heightmap_size=16)
    seeded = sim.make_env("push", seed=UNSEEDED_SCENE_SEED, heightmap_size=16)
    assert env.scene_seed == seeded.scene_seed == UNSEEDED_SCENE_SEED
    np.testing.assert_array_equal(env._model.geom_size, seeded._model.geom_size)
    env.close()
    seeded.close()


def test_collected_lift_episode_replays_exactly_in_a_new_process(tmp_path):
    out = tmp_path / "lift.zarr"
    _finish(_python("-m", "robot_stack", "collect", "collect_lift", f"out={out}", "episodes=2", "max_steps=12",
                    "seed=3", "sim.heightmap_size=32"))
    for episode in ("0", "1"):
        log = _finish(_python("-m", "robot_stack", "replay", str(out), "--episode", episode, "--tolerance", "0"))
        assert "reproduced" in log and "max divergence 0," in log, log
