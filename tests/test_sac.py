"""SAC, replay buffer and the toy task: a tiny config learns to reach well beyond a random policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from policies.core import sample_tanh_gaussian
from policies.registry import build_algorithm
from policies.replay_buffer import NStepAccumulator, ReplayBuffer, Transition, rotate_transition
from policies.sac import SACConfig, residual_nll
from robot_stack import config
from robot_stack.jobs.train import TrainConfig, Trainer
from robot_stack.symmetry import Group
from sim.toy import ToyReachEnv, ToyReachExpert

TINY_NET = {"family": "relaxed", "group": "C4", "widths": [2], "kernel_sizes": [3], "hidden": 2}


def _obs(value: float) -> dict[str, np.ndarray]:
    return {"heightmap": np.full((1, 8, 8), value, np.float32), "gripper": np.array([value, 0.0], np.float32)}


def test_nstep_returns_discounts_and_episode_end():
    acc = NStepAccumulator(3, gamma=0.5)
    out = []
    for t in range(4):
        out += acc.push(_obs(t), np.full(5, t, np.float32), 1.0, _obs(t + 1), terminated=(t == 3), truncated=False)
    # t=2 completes the first window; the terminal step flushes the other three.
    assert [o.obs["gripper"][0] for o in out] == [0, 1, 2, 3]
    assert out[0].reward == pytest.approx(1 + 0.5 + 0.25) and out[0].discount == pytest.approx(0.125)
    assert out[0].next_obs["gripper"][0] == 3
    assert [o.discount for o in out[1:]] == [0.0, 0.0, 0.0]  # they all reach the terminal state
    assert out[-1].reward == pytest.approx(1.0)
    acc.push(_obs(0), np.zeros(5, np.float32), 2.0, _obs(1), terminated=False, truncated=True)
    assert len(acc._queue) == 0


def test_replay_state_roundtrip_and_rotated_copy(tmp_path):
    env = ToyReachEnv(heightmap_size=16)
    obs_spec = env.obs_spec
    buf = ReplayBuffer(10, obs_spec, seed=3)
    obs, _ = env.reset(seed=0)
    for i in range(13):  # wraps around
        nxt, r, term, _, _ = env.step(env.action_space.sample())
        buf.add(Transition(obs, np.full(5, i / 13, np.float32), r, nxt, 0.0 if term else 0.99))
        obs = nxt
    buf.save(tmp_path / "b.npz")
    other = ReplayBuffer(10, obs_spec, seed=99)
    other.load(tmp_path / "b.npz")
    assert (other.size, other.ptr) == (10, 3)
    a, b = buf.sample(6), other.sample(6)  # same RNG state -> same indices
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    with pytest.raises(Exception, match="capacity"):
        ReplayBuffer(20, obs_spec).load(tmp_path / "b.npz")
    older = buf.state_dict()
    del older["expert"]  # a buffer saved before the expert flag existed loads with every flag false
    other.load_state_dict(older)
    assert other.size == 10 and not other.expert.any()
    # A rotated copy is the transition of the rotated world: the expert's action rotates with the scene.
    g = Group.parse("C4").element(1)
    tr = Transition(obs, np.array([0.5, 0.1, 0.2, 0.3, 1.0], np.float32), 0.0, obs, 0.99)
    rot = rotate_transition(g, tr)
    np.testing.assert_allclose(rot.action, [-0.1, 0.5, 0.2, 0.3, 1.0], atol=1e-6)
    np.testing.assert_array_equal(rot.obs["gripper"], obs["gripper"])
    np.testing.assert_array_equal(rot.obs["heightmap"], np.rot90(obs["heightmap"], k=-1, axes=(-2, -1)))


def test_tanh_gaussian_logprob_matches_density():
    torch.manual_seed(0)
    mean, log_std = torch.zeros(20000, 1), torch.full((20000, 1), -0.5)
    action, logp = sample_tanh_gaussian(mean, log_std.exp())
    assert action.abs().max() < 1
    # Histogram density of tanh(N(0, e^-0.5)) near 0 vs the reported log-probability there.
    near = action[:, 0].abs() < 0.05
    density = near.float().mean() / 0.1
    assert float(logp[near].exp().mean()) == pytest.approx(float(density), rel=0.1)


def test_sac_update_with_real_relaxed_networks_and_cnn_aug(tmp_path):
    env = ToyReachEnv(heightmap_size=16)
    cfg = config.build(TrainConfig, {"env": {"heightmap_size": 16}, "network": TINY_NET, "expert_episodes": 2,
                                     "out_dir": str(tmp_path), "sac": {"batch_size": 8, "rotated_copies": 1}})
    trainer = Trainer(cfg)
    trainer.seed_expert_episodes()
    assert len(trainer.buffer) == 2 * trainer.expert_steps  # each transition + 1 rotated copy
    assert trainer.buffer.expert[:len(trainer.buffer)].all()  # expert flags travel with the rotated copies
    before = [p.detach().clone() for p in trainer.agent.actor.parameters()]
    info = {}
    for _ in range(3):
        info = trainer.agent.update(trainer.buffer.sample(8))
    assert np.isfinite(info["critic_loss"]) and np.isfinite(info["actor_loss"])
    trainer.agent.cfg.bc_weight = 1.0
    assert trainer.agent.update(trainer.buffer.sample(8))["bc_loss"] > 0  # SACfD term on the expert samples
    assert any(not torch.equal(b, p) for b, p in zip(before, trainer.agent.actor.parameters(), strict=True))
    spec = trainer.spec
    aug = build_algorithm("sac", spec.__class__(spec.observation, spec.action, spec.heightmap, "C4", "cnn_aug"),
                          {**TINY_NET, "family": "cnn_aug"}, SACConfig(batch_size=8, random_shift=2), "cpu")
    assert aug.rotation_aug
    assert np.isfinite(aug.update(trainer.buffer.sample(8))["critic_loss"])
    del env


def test_actor_step_leaves_the_critic_untouched_and_trainable(tmp_path):
    cfg = config.build(TrainConfig, {"env": {"heightmap_size": 16}, "network": TINY_NET, "expert_episodes": 1,
                                     "out_dir": str(tmp_path), "sac": {"batch_size": 8, "rotated_copies": 0}})
    trainer = Trainer(cfg)
    trainer.seed_expert_episodes()
    agent, batch = trainer.agent, trainer.buffer.sample(8)
    hm, vec = agent._tensor(batch["heightmap"]), agent._tensor(batch["vector"])
    agent.critic_opt.zero_grad(set_to_none=True)
    before = [p.detach().clone() for p in agent.actor.parameters()]
    agent._update_actor(hm, vec)
    # the actor learned through the critic, but no critic weight gradient was computed or kept
    assert any(not torch.equal(b, p) for b, p in zip(before, agent.actor.parameters(), strict=True))
    assert all(p.grad is None for p in agent.critic.parameters())
    assert all(p.requires_grad for p in agent.critic.parameters())
    assert np.isfinite(agent.update(batch)["critic_loss"])


def test_actor_waits_while_the_critic_warms_up(tmp_path):
    cfg = config.build(TrainConfig, {"env": {"heightmap_size": 16}, "network": TINY_NET, "expert_episodes": 1,
                                     "out_dir": str(tmp_path),
                                     "sac": {"batch_size": 8, "rotated_copies": 0, "actor_warmup_updates": 3}})
    trainer = Trainer(cfg)
    trainer.seed_expert_episodes()
    agent = trainer.agent
    actor, critic = ([p.detach().clone() for p in m.parameters()] for m in (agent.actor, agent.critic))
    infos = [agent.update(trainer.buffer.sample(8)) for _ in range(3)]
    assert all("actor_loss" not in info for info in infos)
    assert all(torch.equal(b, p) for b, p in zip(actor, agent.actor.parameters(), strict=True))
    assert any(not torch.equal(b, p) for b, p in zip(critic, agent.critic.parameters(), strict=True))
    assert "actor_loss" in agent.update(trainer.buffer.sample(8))  # the fourth update moves the actor too


def _success_rate(env: ToyReachEnv, policy, episodes: int, seed: int) -> float:
    wins = 0
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done, info = False, {}
        while not done:
            obs, _, term, trunc, info = env.step(policy(obs))
            done = term or trunc
        wins += info["success"]
    return wins / episodes


def test_tiny_config_learns_toy_reach_beyond_random(tmp_path):
    """launch/train_toy.yaml as it stands: the real relaxed C4 networks of policies.networks, SAC + BC term."""
    cfg = config.load(TrainConfig, "train_toy", [f"out_dir={tmp_path}", "total_steps=1600", "eval_every=400",
                                                 "tensorboard=false", "progress=false", "export_onnx=false"])
    assert cfg.network["family"] == "relaxed"
    trainer = Trainer(cfg)
    result = trainer.run()
    env = ToyReachEnv(**cfg.env)
    rng = np.random.default_rng(0)
    random_rate = _success_rate(env, lambda o: rng.uniform(-1, 1, 5).astype(np.float32), 100, 5000)
    expert_rate = _success_rate(env, ToyReachExpert(env).act, 20, 5000)
    learned = _success_rate(env, lambda o: trainer.agent.act(o["heightmap"][None], o["gripper"][None], True)[0],
                            100, 5000)
    assert expert_rate == 1.0
    assert result.step == 1600 and [e["step"] for e in result.evals] == [400, 800, 1200, 1600]
    assert learned >= random_rate + 0.3, (learned, random_rate)



def test_the_std_fit_settles_on_the_cloned_actions_root_mean_square_error_per_dim():
    gen = torch.Generator().manual_seed(0)
    mean = torch.zeros(512, 5)
    action = torch.randn(512, 5, generator=gen) * torch.tensor([0.05, 0.1, 0.2, 0.3, 0.4])
    log_std = torch.zeros(1, 5, requires_grad=True)
    opt = torch.optim.Adam([log_std], lr=0.05)
    for _ in range(600):
        opt.zero_grad()
        residual_nll(mean, log_std.expand(512, 5), action).backward()
        opt.step()
    rms = action.pow(2).mean(0).sqrt()
    assert torch.allclose(log_std.exp().detach()[0], rms, rtol=0.02)


def test_bc_pretraining_with_the_std_fit_narrows_the_actor_and_without_it_leaves_the_std(tmp_path):
    stds = {}
    for fit in (False, True):
        cfg = config.build(TrainConfig, {"env": {"heightmap_size": 16}, "network": TINY_NET, "expert_episodes": 2,
                                         "out_dir": str(tmp_path / str(fit)),
                                         "sac": {"batch_size": 16, "rotated_copies": 0, "bc_pretrain_std": fit}})
        trainer = Trainer(cfg)
        trainer.seed_expert_episodes()
        agent, demos = trainer.agent, trainer.buffer.sample(16, demo_fraction=1.0)
        hm, vec = agent._tensor(demos["heightmap"]), agent._tensor(demos["vector"])
        before = agent.actor(hm, vec)[1].exp().mean().item()
        for _ in range(300):
            agent.pretrain_actor(trainer.buffer.sample(16, demo_fraction=1.0))
        stds[fit] = (before, agent.actor(hm, vec)[1].exp().mean().item())
    assert stds[True][1] < 0.5 * stds[True][0]
    assert stds[False][1] > 0.7 * stds[False][0]


@pytest.mark.parametrize("backup", [True, False])
def test_the_temperature_reaches_the_critic_only_through_the_entropy_backup(tmp_path, backup):
    cfg = config.build(TrainConfig, {"env": {"heightmap_size": 16}, "network": TINY_NET, "expert_episodes": 1,
                                     "out_dir": str(tmp_path), "sac": {"batch_size": 8, "rotated_copies": 0,
                                                                       "actor_warmup_updates": 5,
                                                                       "backup_entropy": backup}})
    trainer = Trainer(cfg)
    trainer.seed_expert_episodes()
    agent, batch = trainer.agent, trainer.buffer.sample(8)
    start = agent.state_dict()
    critics = []
    for log_alpha in (-5.0, 2.0):
        agent.load_state_dict(start)
        with torch.no_grad():
            agent.log_alpha.fill_(log_alpha)
        torch.manual_seed(0)
        agent.update(batch)  # critic only: the actor waits
        critics.append([p.detach().clone() for p in agent.critic.parameters()])
    same = all(torch.equal(a, b) for a, b in zip(*critics, strict=True))
    assert same is not backup
