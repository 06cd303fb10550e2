"""`robot-stack export` takes the checkpoints that `robot-stack train` and `robot-stack offline` write."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sim
from policies.registry import build_algorithm
from robot_stack import cli, config
from robot_stack.jobs.offline import save_run
from robot_stack.jobs.train import TrainConfig, Trainer
from robot_stack.runtime import load_policy_package

TINY_NET = {"family": "relaxed", "group": "C4", "widths": [2, 2, 2], "kernel_sizes": [3, 3, 3], "hidden": 2}


def _train_checkpoint(tmp_path):
    cfg = config.load(TrainConfig, "train_toy", [f"out_dir={tmp_path / 'train'}", "tensorboard=false",
                                                 "progress=false", "expert_episodes=0", *[
                                                     f"network.{k}={v}" for k, v in TINY_NET.items()]])
    trainer = Trainer(cfg)
    return trainer.save_checkpoint(), trainer.agent.actor, trainer.spec


def _offline_checkpoint(tmp_path):
    spec = sim.policy_spec(sim.make_env("toy_reach", heightmap_size=16), TINY_NET["group"], TINY_NET["family"])
    algo = build_algorithm("bc", spec, TINY_NET, {}, torch.device("cpu"))
    out = tmp_path / "offline"
    out.mkdir()
    save_run(algo, spec, out, {"eval": {}}, TINY_NET, export=False)
    return out / "checkpoint.pt", algo.actor, spec


@pytest.mark.parametrize("make", [_train_checkpoint, _offline_checkpoint])
def test_export_command_takes_train_and_offline_checkpoints(tmp_path, make):
    checkpoint, actor, spec = make(tmp_path)
    onnx_path = tmp_path / "policy.onnx"
    assert cli.main(["export", str(checkpoint), "--out", str(onnx_path)]) == 0
    policy = load_policy_package(onnx_path, expected=spec)
    obs = spec.observation.zeros()
    obs["heightmap"][0, 4:7, 9:12] = 0.05
    obs["gripper"][:] = (0.3, 0.5)
    actor.eval()
    with torch.no_grad():
        mean, _ = actor(torch.from_numpy(obs["heightmap"][None]), torch.from_numpy(obs["gripper"][None]))
    np.testing.assert_allclose(policy.act(obs), torch.tanh(mean)[0].numpy(), atol=1e-4)


def test_export_refuses_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    torch.save({"weights": {}}, bad)
    assert cli.main(["export", str(bad), "--out", str(tmp_path / "x.onnx")]) != 0
