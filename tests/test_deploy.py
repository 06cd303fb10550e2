"""End to end: a sim-trained network exported to ONNX, served over loopback, driving the robosuite sim arm
through `robot-stack run launch/sim_robot.yaml`, with the recorder on; the episodes validate and read back."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from robot_stack.cli import main
from robot_stack.config import load
from robot_stack.jobs.run import RunConfig, run_config
from robot_stack.recorder import EpisodeDataset
from robot_stack.recorder.validate import validate
from robot_stack.runtime import PackageError, load_policy_package
from robot_stack.specs import PolicySpec, mismatches

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A checkpoint of an untrained small CNN actor on the reach task's spec, exported by `robot-stack export`."""
    from policies.checkpoint import save_checkpoint
    from policies.networks import build_actor
    from policies.networks.config import NetworkConfig
    from robot_stack.specs import ActionSpec, HeightmapSpec, ObservationSpec
    from sim.config import SimConfig
    from sim.env import TASK_DEFAULTS, WORKSPACE

    hm = HeightmapSpec(size=SimConfig().heightmap_size, workspace=WORKSPACE)
    spec = PolicySpec(ObservationSpec.create(hm), ActionSpec(dpos=TASK_DEFAULTS["reach"].dpos), hm, group="C4",
                      family="cnn")
    torch.manual_seed(0)
    actor = build_actor(spec, NetworkConfig(family="cnn", group="C4", widths=(2, 2), kernel_sizes=(3, 3), hidden=4))
    tmp = tmp_path_factory.mktemp("deploy")
    ckpt = save_checkpoint(tmp / "actor.pt", {"actor": actor}, {"step": 0})
    out = tmp / "policy.onnx"
    assert main(["export", str(ckpt), "--out", str(out)]) == 0
    return out, spec


def test_exported_package_carries_the_spec_and_refuses_another_robot(exported):
    path, spec = exported
    policy = load_policy_package(path, spec)
    assert mismatches(spec, policy.spec) == []
    assert "robot_stack.export_check" in policy.metadata
    other = PolicySpec(spec.observation, spec.action, spec.heightmap, group="D4", family="cnn")
    with pytest.raises(PackageError, match="group: expected 'D4', got 'C4'"):
        load_policy_package(path, other)


def test_sim_robot_runs_episodes_through_the_server_and_records_them(exported, tmp_path, monkeypatch):
    path, _ = exported
    monkeypatch.setenv("ROBOT_STACK_TOKEN", "e2e-token")
    cfg = load(RunConfig, "sim_robot", [f"policy.package={path}", f"record.path={tmp_path / 'episodes.zarr'}",
                                        "loop.episodes=2", "loop.max_steps=6"])
    assert cfg.policy.spawn_server and cfg.record.enabled and cfg.arm.task == "reach"
    lines: list[str] = []
    assert run_config(cfg, log=lines.append) == 0
    store = tmp_path / "episodes.zarr"
    assert validate(store) == []
    episodes = list(EpisodeDataset(store).episodes())
    assert len(episodes) == 2 and all(1 <= len(e) <= 6 for e in episodes)
    for ep in episodes:
        assert ep.obs["heightmap"].shape[1:] == (1, 64, 64) and np.all(np.abs(ep.action) <= 1 + 1e-6)
        assert np.all(ep.extras["latency_policy"] > 0)  # a real round trip through the server
    assert any("2 episode(s)" in line for line in lines)
    if importlib.util.find_spec("robot_stack.jobs.replay") is not None:
        assert main(["replay", str(store), "--episode", "0"]) == 0
