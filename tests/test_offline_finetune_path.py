"""The fine-tuning path of issue 21, end to end at 16 px: an online-trained checkpoint (robot-stack train) is exported,
served and run on the sim robot with the recorder; robot-stack offline --init fine-tunes it on the recorded
episodes mixed with a collected store, and reports success before and after."""

from __future__ import annotations

import json

import pytest

from robot_stack.cli import main
from robot_stack.recorder import EpisodeDataset

pytest.importorskip("robosuite")

NET = ["network.widths=[2,2]", "network.kernel_sizes=[3,3]", "network.hidden=2"]
VIEW = ["arm.task=push", "arm.sim.view=gripper", "arm.sim.heightmap_size=16"]


@pytest.mark.slow
def test_train_export_serve_record_then_fine_tune_offline(tmp_path, capsys):
    train = tmp_path / "train"
    assert main(["train", "train_push", "env.heightmap_size=16", *NET, "total_steps=4", "expert_episodes=1",
                 "learning_starts=2", "sac.bc_pretrain_updates=1", "sac.batch_size=4", "eval_every=4",
                 "eval_episodes=1", "checkpoint_every=4", f"out_dir={train}", "progress=false",
                 "export_onnx=false", "tensorboard=false"]) == 0
    package = tmp_path / "policy.onnx"
    assert main(["export", str(train / "checkpoint.pt"), "--out", str(package)]) == 0
    robot = tmp_path / "robot.zarr"  # as the robot records it: the policy through the server, the safety filter
    assert main(["run", "sim_robot", *VIEW, f"policy.package={package}", f"record.path={robot}",
                 "loop.episodes=2", "loop.max_steps=5", "loop.rate_hz=50"]) == 0
    assert len(EpisodeDataset(robot)) == 2
    assert main(["collect", "collect_offline", "task=push", "sizes=[20]", "sim.heightmap_size=16",
                 f"out={tmp_path}/{{task}}_{{transitions}}.zarr"]) == 0
    capsys.readouterr()
    assert main(["offline", "offline_push", "--init", str(train / "checkpoint.pt"), "--dataset", str(robot),
                 "--dataset", str(tmp_path / "push_20.zarr"), "env.heightmap_size=16", *NET, "algo=iql", "steps=2",
                 "batch_size=4", "eval_episodes=1", f"out_dir={tmp_path / 'offline'}", "progress=false",
                 "export=false"]) == 0
    out = capsys.readouterr().out
    assert "success before fine-tuning" in out
    summary = json.loads((tmp_path / "offline" / "push_iql_relaxed_s0" / "summary.json").read_text())
    assert summary["transitions"] == 2 * 4 + 20  # each robot episode ends at max_steps: 5 steps, 4 transitions
    assert summary["eval_before"]["episodes"] == summary["eval"]["episodes"] == 1
