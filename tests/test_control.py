"""Control loop on the sim arm: local and remote policies, deadlines, faults, operator keys, recording."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from hardware.sim_arm import SimArm, projector_for
from robot_stack.jobs.run import robot_spec_for, spawn_server
from robot_stack.recorder import EpisodeDataset, EpisodeRecorder
from robot_stack.recorder.validate import validate
from robot_stack.runtime import ControlLoop, LoopConfig, PolicyClient, SafetyConfig, SafetyFilter, load_policy_package
from robot_stack.runtime.keys import ScriptedKeys
from robot_stack.runtime.synthetic import make_package
from robot_stack.specs import PolicySpec


def store_issues(path):
    return validate(path)


@pytest.fixture()
def arm():
    a = SimArm.from_task("toy_reach", seed=0, max_steps=200)
    yield a
    a.close()


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    probe = SimArm.from_task("toy_reach")
    spec = PolicySpec(*probe.env.policy_spec_parts, group="C8", family="synthetic")
    return make_package(tmp_path_factory.mktemp("pkg") / "policy.onnx", spec, kind="linear"), spec


def make_loop(arm, policy, spec, tmp_path, rate_hz=20.0, max_steps=12, keys=None, silent=3):
    recorder = EpisodeRecorder(tmp_path / "episodes.zarr", spec.observation, spec.action, {"test": True})
    camera = arm.camera()
    cfg = LoopConfig(rate_hz=rate_hz, max_steps=max_steps, silent_periods=silent)
    loop = ControlLoop(arm, camera, projector_for(camera, spec.heightmap), policy,
                       SafetyFilter(SafetyConfig(workspace=spec.heightmap.workspace), spec.action), spec, cfg,
                       recorder=recorder, keys=keys, log=lambda msg: None)
    return loop, recorder, camera


def test_local_policy_episodes_are_recorded_and_validate(arm, package, tmp_path):
    policy = load_policy_package(package[0], robot_spec_for(arm.env.policy_spec_parts, package[1]))
    loop, recorder, _ = make_loop(arm, policy, policy.spec, tmp_path)
    results = loop.run(episodes=2)
    recorder.close()
    assert all(r.reason in ("max_steps", "done") and r.held == 0 for r in results)
    assert store_issues(tmp_path / "episodes.zarr") == []
    episodes = list(EpisodeDataset(tmp_path / "episodes.zarr").episodes())
    assert [len(e) for e in episodes] == [r.steps for r in results]
    assert sum(1 for kind, _ in arm.log if kind == "apply") == sum(r.steps for r in results)
    applied = [cmd for kind, cmd in arm.log if kind == "apply"][: results[0].steps]
    executed = np.array([[*(c.dpos / policy.spec.action.dpos), c.dyaw / policy.spec.action.dtheta, c.gripper]
                         for c in applied])
    np.testing.assert_allclose(episodes[0].action, executed, atol=1e-6)  # what reached the arm is recorded
    assert "latency_policy" in episodes[0].extras and np.all(episodes[0].extras["latency_policy"] >= 0)


class _Fails:
    """A policy that answers normally, then misbehaves from call ``after`` on."""

    def __init__(self, inner, after: int, mode: str):
        self.inner, self.after, self.mode, self.calls, self.spec = inner, after, mode, 0, inner.spec

    def act(self, obs, timeout=None):
        self.calls += 1
        if self.calls <= self.after:
            return self.inner.act(obs, timeout)
        if self.mode == "nan":
            return np.full(5, np.nan, np.float32)
        if self.mode == "late":
            time.sleep(timeout + 0.02)  # answers, but after the deadline
            return self.inner.act(obs, timeout)
        raise TimeoutError("silent")


def test_nan_actions_never_move_the_arm(arm, package, tmp_path):
    policy = load_policy_package(package[0])
    loop, recorder, _ = make_loop(arm, _Fails(policy, 3, "nan"), policy.spec, tmp_path, max_steps=8)
    start = None
    (result,) = loop.run(episodes=1)
    recorder.close()
    assert result.nan_actions == 5 and result.reason == "max_steps"
    moves = [cmd for kind, cmd in arm.log if kind == "apply"][3:]
    assert all(np.all(cmd.dpos == 0) and cmd.dyaw == 0 for cmd in moves), start


def test_late_answers_hold_the_pose_and_silence_stops_the_arm(arm, package, tmp_path):
    policy = load_policy_package(package[0])
    loop, recorder, _ = make_loop(arm, _Fails(policy, 4, "late"), policy.spec, tmp_path, max_steps=20, silent=3)
    (result,) = loop.run(episodes=1)
    recorder.close()
    kinds = [k for k, _ in arm.log]
    assert kinds == ["apply"] * 4 + ["hold"] * 3 + ["stop"]
    assert result.reason == "policy_silent" and result.missed_deadlines == 3
    episodes = list(EpisodeDataset(tmp_path / "episodes.zarr").episodes())
    assert len(episodes) == 1 and len(episodes[0]) == 7


def test_camera_lost_stops_cleanly_and_keeps_the_episode(arm, package, tmp_path):
    policy = load_policy_package(package[0])
    loop, recorder, camera = make_loop(arm, policy, policy.spec, tmp_path, max_steps=30)
    original = camera.read

    def flaky():
        if camera._index >= 5:
            camera.lost = True
        return original()

    camera.read = flaky
    results = loop.run(episodes=3)
    recorder.close()
    assert [r.reason for r in results] == ["camera_lost"]  # no further episodes without a camera
    assert arm.log[-1][0] == "stop"
    assert store_issues(tmp_path / "episodes.zarr") == []
    assert [len(e) for e in EpisodeDataset(tmp_path / "episodes.zarr").episodes()] == [5]


def test_operator_keys_mark_success_and_quit(arm, package, tmp_path):
    policy = load_policy_package(package[0])
    keys = ScriptedKeys({3: ["success"], 6: ["quit"]})
    keys.enabled = False  # keys are polled during episodes; no waiting for "start" in a test
    loop, recorder, _ = make_loop(arm, policy, policy.spec, tmp_path, keys=keys)
    results = loop.run(episodes=5)
    recorder.close()
    assert [(r.reason, r.success) for r in results] == [("operator_success", True), ("operator_stop", False)]
    episodes = list(EpisodeDataset(tmp_path / "episodes.zarr").episodes())
    assert [e.meta["success"] for e in episodes] == [True, False]


def test_server_killed_mid_episode_arm_holds_within_one_period_and_episode_is_saved(arm, package, tmp_path):
    os.environ.setdefault("ROBOT_STACK_TEST_TOKEN", "tok")
    proc, endpoint = spawn_server(str(package[0]), "ROBOT_STACK_TEST_TOKEN")
    try:
        client = PolicyClient(endpoint, token="tok", expected=robot_spec_for(arm.env.policy_spec_parts, package[1]))
        killed_at = {}

        class KillAfter:
            spec = client.spec

            def act(self, obs, timeout=None):
                action = client.act(obs, timeout)
                if len([k for k, _ in arm.log if k == "apply"]) == 5 and not killed_at:
                    proc.kill()
                    proc.wait()
                    killed_at["log"] = len(arm.log)
                return action

        loop, recorder, _ = make_loop(arm, KillAfter(), client.spec, tmp_path, max_steps=40, silent=3)
        (result,) = loop.run(episodes=1)
        recorder.close()
        client.close()
    finally:
        proc.kill()
    after = [k for k, _ in arm.log[killed_at["log"] + 1:]]  # +1: the reply in hand before the kill is applied
    assert after == ["hold", "hold", "hold", "stop"]
    assert result.reason == "policy_silent"
    assert store_issues(tmp_path / "episodes.zarr") == []
    assert [len(e) for e in EpisodeDataset(tmp_path / "episodes.zarr").episodes()] == [result.steps]


def test_sigterm_stops_the_arm_and_keeps_the_episode(tmp_path):
    """``robot-stack run`` killed with SIGTERM ends like Ctrl-C: arm stopped, episode recorded, exit code 130."""
    import queue
    import signal
    import subprocess
    import sys
    import threading

    probe = SimArm.from_task("toy_reach")
    spec = PolicySpec(*probe.env.policy_spec_parts, group="C8", family="synthetic")
    probe.close()
    package = make_package(tmp_path / "policy.onnx", spec, kind="linear")
    store = tmp_path / "episodes.zarr"
    cmd = [sys.executable, "-m", "robot_stack", "run", "sim_robot", "arm.task=toy_reach", "arm.sim={max_steps: 100000}",
           f"policy.package={package}", "policy.spawn_server=false", f"record.path={store}",
           "loop.max_steps=100000", "loop.episodes=1", "loop.rate_hz=20"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen: list[str] = []
    try:
        # a fresh checkout compiles and caches on first use, so wait for the loop to say it is in the episode
        while not any("episode 0 started" in line for line in seen):
            seen.append(lines.get(timeout=180))
        time.sleep(0.5)
        assert proc.poll() is None, "".join(seen)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    time.sleep(0.2)  # the reader thread takes the last lines
    out = "".join(seen) + "".join(lines.queue)
    assert proc.returncode == 130, out
    assert "interrupted" in out
    assert store_issues(store) == []
    (episode,) = EpisodeDataset(store).episodes()
    assert len(episode) >= 1 and episode.meta["reason"] == "interrupted"
    assert episode.meta["clipped"] >= 0
