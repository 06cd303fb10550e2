"""The SAC recipe's pieces: continuous-angle rotated copies, a fixed demo share per batch, successful demos only,
the Q-filtered and fading BC term."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from policies.replay_buffer import ReplayBuffer, Transition, random_rotated_copies
from robot_stack import config
from robot_stack.jobs.train import TrainConfig, Trainer
from robot_stack.symmetry import Group, act_on_action, act_on_image, rotate_action, rotate_image
from sim.toy import ToyReachEnv

TINY_NET = {"family": "relaxed", "group": "C4", "widths": [2], "kernel_sizes": [3], "hidden": 2}


@pytest.mark.parametrize(("group", "k"), [("C4", 1), ("C8", 1), ("C8", 3), ("C8", 6)])
def test_rotation_by_an_angle_matches_the_group_element_of_that_angle(group, k):
    rng = np.random.default_rng(0)
    img, act = rng.random((2, 16, 16)).astype(np.float32), rng.uniform(-1, 1, (4, 5)).astype(np.float32)
    g = Group.parse(group).element(k)
    centre = slice(4, 12)  # away from the corners, which the two fill differently
    np.testing.assert_allclose(rotate_image(img, g.angle)[:, centre, centre], act_on_image(g, img)[:, centre, centre],
                               atol=1e-5)
    np.testing.assert_allclose(rotate_action(act, g.angle), act_on_action(g, act), atol=1e-6)


def test_rotated_image_fills_the_corners_from_each_channels_border():
    img = np.stack([np.full((16, 16), 0.2), np.full((16, 16), 0.7)]).astype(np.float32)
    np.testing.assert_allclose(rotate_image(img, 0.3), img, atol=1e-6)  # a constant channel stays constant


def test_continuous_copies_rotate_scene_and_action_alike():
    env = ToyReachEnv(heightmap_size=16)
    obs, _ = env.reset(seed=0)
    tr = Transition(obs, np.array([1.0, 0.0, 0.1, 0.2, -1.0], np.float32), 1.0, obs, 0.9, True)
    copies = random_rotated_copies(tr, Group.parse("C4"), 8, np.random.default_rng(1), continuous=True)
    angles = [np.arctan2(c.action[1], c.action[0]) % (np.pi / 2) for c in copies]
    assert len(copies) == 8 and max(angles) > 0.05  # angles between the group's quarter turns
    for c in copies:
        assert np.linalg.norm(c.action[:2]) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_array_equal(c.action[2:], tr.action[2:])
        assert c.expert and c.reward == tr.reward


def test_demo_fraction_fixes_the_expert_share_of_a_batch():
    env = ToyReachEnv(heightmap_size=8)
    obs, _ = env.reset(seed=0)
    buf = ReplayBuffer(400, env.obs_spec, seed=0)
    for i in range(400):
        buf.add(Transition(obs, np.zeros(5, np.float32), 0.0, obs, 0.9, expert=i < 8))
    assert buf.sample(64, demo_fraction=0.25)["expert"].sum() >= 16
    assert buf.sample(64)["expert"].sum() < 16


def _trainer(tmp_path, **overrides) -> Trainer:
    data = {"env": {"heightmap_size": 16}, "network": TINY_NET, "out_dir": str(tmp_path), "expert_noise": 2.0,
            "sac": {"batch_size": 8, "rotated_copies": 0}, **overrides}
    return Trainer(config.build(TrainConfig, data))


def test_successful_demos_only_keeps_no_failed_episode(tmp_path):
    everything = _trainer(tmp_path / "a", expert_episodes=6)
    everything.seed_expert_episodes()
    only = _trainer(tmp_path / "b", expert_episodes=6, expert_successes_only=True)
    only.seed_expert_episodes()
    rewards = only.buffer.reward[:len(only.buffer)]
    assert len(only.buffer) > 0 and rewards.max() > 0  # every kept episode reached the target
    assert len(only.buffer) != len(everything.buffer)  # with noise 2.0 some expert episodes fail


def test_clean_expert_labels_store_the_action_meant_at_the_states_the_noise_reached(tmp_path):
    executed = _trainer(tmp_path / "a", expert_episodes=2, expert_noise=0.5)
    executed.seed_expert_episodes()
    clean = _trainer(tmp_path / "b", expert_episodes=2, expert_noise=0.5, expert_labels="clean")
    clean.seed_expert_episodes()
    n = len(executed.buffer)
    assert len(clean.buffer) == n  # the same noisy episodes were run ...
    np.testing.assert_array_equal(clean.buffer.heightmap[:n], executed.buffer.heightmap[:n])
    assert np.all(clean.buffer.action[:n, 2:] == 0.0)  # ... but the toy expert meant no z, yaw or gripper move
    assert np.abs(executed.buffer.action[:n, 2:]).max() > 0.1
    with pytest.raises(config.ConfigError, match="expert_labels"):
        _trainer(tmp_path / "c", expert_labels="noisy")


def test_q_filter_and_fading_bc_weight(tmp_path):
    trainer = _trainer(tmp_path, expert_episodes=1, sac={"batch_size": 8, "rotated_copies": 0, "bc_weight": 2.0,
                                                         "bc_filter": True, "bc_decay_updates": 10})
    agent = trainer.agent
    assert agent._bc_weight() == 2.0
    agent.updates = 5
    assert agent._bc_weight() == pytest.approx(1.0)
    agent.updates = 20
    assert agent._bc_weight() == 0.0
    hm, vec = torch.zeros(4, *trainer.spec.observation["heightmap"].shape), torch.zeros(4, 2)
    act, expert = torch.zeros(4, 5), torch.ones(4)
    q_demo = torch.min(*agent.critic(hm, vec, act))
    features = agent.critic.encode(hm)
    mask = agent._bc_mask(features, vec, act, expert, q_demo - 1.0)  # the policy's Q below the demo's: pull
    assert mask.sum() == 4
    assert agent._bc_mask(features, vec, act, expert, q_demo + 1.0).sum() == 0  # policy already better: no pull


def test_bc_pretraining_fits_the_demonstrations(tmp_path):
    net = {"family": "cnn", "group": "C4", "widths": [4, 8], "kernel_sizes": [5, 3], "hidden": 8}
    trainer = _trainer(tmp_path, expert_episodes=3, expert_noise=0.0, network=net,
                       sac={"batch_size": 16, "rotated_copies": 0, "bc_pretrain_updates": 100, "lr": 3e-3})
    trainer.seed_expert_episodes()
    demos = trainer.buffer.sample(64, demo_fraction=1.0)
    first = trainer.agent.pretrain_actor(demos)
    trainer.pretrain_actor()
    assert trainer.agent.pretrain_actor(demos) < 0.6 * first
