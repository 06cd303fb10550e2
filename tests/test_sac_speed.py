"""The SAC update's speed-ups change no result: the module walk, the frozen critic, the shared critic encoder of
the actor step and channels-last convolutions against the straightforward update (policies/sac.py at 53c1ae8)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from policies.core import Batch, actor_dist, frozen, sample_tanh_gaussian, soft_update
from policies.networks import Actor, Critic, NetworkConfig, build_actor, build_critic, layers
from policies.networks.traversal import buffers, parameters, submodules
from policies.registry import build_algorithm
from policies.sac import SACConfig
from robot_stack.specs import ActionSpec, HeightmapSpec, ObservationSpec, PolicySpec

SIZE = 16
NET = NetworkConfig(family="relaxed", group="C4", widths=(2, 4, 4), kernel_sizes=(5, 3, 3), hidden=2, end="valid")


def _spec() -> PolicySpec:  # the push default's observation: gripper view, 2 channels
    hs = HeightmapSpec(SIZE, view="gripper")
    return PolicySpec(ObservationSpec.create(hs), ActionSpec(), hs, "C4", "relaxed")


def test_module_walk_finds_what_torch_finds_in_the_same_order():
    critic = build_critic(_spec(), NET)
    assert [id(p) for p in parameters(critic)] == [id(p) for p in critic.parameters()]
    assert {id(b) for b in critic.buffers()} <= {id(b) for b in buffers(critic)}
    assert {id(m) for m in critic.modules()} <= {id(m) for m in submodules(critic)}
    target = build_critic(_spec(), NET)
    reference = [t.detach().lerp(s, 0.1) for t, s in zip(target.parameters(), critic.parameters(), strict=True)]
    soft_update(target, critic, 0.1)
    assert all(torch.equal(a, b) for a, b in zip(reference, target.parameters(), strict=True))
    try:
        with frozen(critic):
            assert not any(p.requires_grad for p in critic.parameters())
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert all(p.requires_grad for p in critic.parameters())


def _regularization(module):  # core.regularization through torch's own module walk
    nets = [m for m in module.modules() if isinstance(m, Actor | Critic)]
    return sum((n.cfg.alpha * torch.stack([m.regularization() for m in n.encoder.modules()
                                           if isinstance(m, layers.RelaxedGroupConv)]).sum() for n in nets),
               torch.zeros(()))


def _reference_update(agent, sample):
    """SAC.update as written before the speed-ups: every pass whole, torch's module walk, NCHW."""
    b = Batch.from_numpy(sample)
    hm, vec, act = b.heightmap, b.vector, b.action
    with torch.no_grad():
        next_action, next_logp = sample_tanh_gaussian(*actor_dist(agent.actor, b.next_heightmap, b.next_vector))
        tq = torch.min(*agent.critic_target(b.next_heightmap, b.next_vector, next_action))
        target = b.reward + b.bootstrap(agent.cfg.gamma) * (tq - agent.alpha * next_logp)
    q1, q2 = agent.critic(hm, vec, act)
    loss = F.mse_loss(q1, target) + F.mse_loss(q2, target) + _regularization(agent.critic)
    agent.critic_opt.zero_grad(set_to_none=True)
    loss.backward()
    agent.critic_opt.step()
    agent.updates += 1
    mean, std = actor_dist(agent.actor, hm, vec)
    action, logp = sample_tanh_gaussian(mean, std)
    agent.critic.requires_grad_(False)
    q_pi = torch.min(*agent.critic(hm, vec, action))
    agent.critic.requires_grad_(True)
    with torch.no_grad():
        mask = b.expert * (torch.min(*agent.critic(hm, vec, act)) > q_pi).float()
    loss = (agent.alpha.detach() * logp - q_pi).mean() + _regularization(agent.actor)
    if float(mask.sum()) > 0:
        loss = loss + agent.cfg.bc_weight * (((torch.tanh(mean) - act) ** 2).sum(-1) * mask).sum() / mask.sum()
    agent.actor_opt.zero_grad(set_to_none=True)
    loss.backward()
    agent.actor_opt.step()
    alpha_loss = -(agent.log_alpha * (logp.detach() + agent.target_entropy)).mean()
    agent.alpha_opt.zero_grad(set_to_none=True)
    alpha_loss.backward()
    agent.alpha_opt.step()
    with torch.no_grad():
        for t, s in zip(agent.critic_target.parameters(), agent.critic.parameters(), strict=True):
            t.lerp_(s, agent.cfg.tau)


def _state(agent) -> list[torch.Tensor]:
    nets = (agent.actor, agent.critic, agent.critic_target)
    return [p.detach().clone() for n in nets for p in n.parameters()] + [agent.log_alpha.detach().clone()]


def test_update_equals_the_straightforward_update(monkeypatch):
    """Same seed, same batches, three updates (Q-filtered BC on), both in NCHW: the shared critic encoder of the actor
    step and the module walk give the very same weights."""
    monkeypatch.setattr(layers, "CHANNELS_LAST", False)
    torch.manual_seed(0)
    cfg = SACConfig(batch_size=8, bc_weight=1.0, bc_filter=True, gamma=0.95)
    agent = build_algorithm("sac", _spec(), NET, cfg, "cpu", 0)
    reference = copy.deepcopy(agent)
    rng = np.random.default_rng(0)
    for i in range(3):
        sample = {"heightmap": rng.random((8, 2, SIZE, SIZE), dtype=np.float32),
                  "next_heightmap": rng.random((8, 2, SIZE, SIZE), dtype=np.float32),
                  "vector": rng.random((8, 2), dtype=np.float32), "next_vector": rng.random((8, 2), dtype=np.float32),
                  "action": rng.uniform(-1, 1, (8, 5)).astype(np.float32), "reward": rng.random(8, dtype=np.float32),
                  "discount": np.full(8, 0.9, np.float32), "expert": np.tile([1.0, 0.0], 4).astype(np.float32)}
        torch.manual_seed(i)
        agent.update(sample)
        torch.manual_seed(i)
        _reference_update(reference, sample)
    assert all(torch.equal(a, b) for a, b in zip(_state(agent), _state(reference), strict=True))


@pytest.mark.parametrize("family", ["relaxed", "exact", "cnn"])
@pytest.mark.parametrize("channels", [1, 2])
def test_channels_last_gives_the_same_outputs_and_gradients(monkeypatch, family, channels):
    """Outputs and weight gradients of actor and critic in channels-last equal NCHW's to float rounding (a
    comparison of weights after Adam steps would not do: Adam's first step is +-lr for any nonzero gradient)."""
    hs = HeightmapSpec(SIZE, view="gripper" if channels == 2 else "workspace")
    spec = PolicySpec(ObservationSpec.create(hs, heightmap_channels=channels), ActionSpec(), hs, "C4", family)
    cfg = NetworkConfig(**{**NET.to_dict(), "family": family})
    torch.manual_seed(0)
    nets = (build_actor(spec, cfg), build_critic(spec, cfg))
    gen = torch.Generator().manual_seed(1)
    hm, vec, act = torch.rand(6, channels, SIZE, SIZE, generator=gen), torch.rand(6, 2, generator=gen), torch.rand(6, 5)
    results = []
    for flag in (False, True):
        monkeypatch.setattr(layers, "CHANNELS_LAST", flag)
        for net in nets:
            net.zero_grad(set_to_none=True)
        out = torch.cat([*nets[0](hm, vec), *nets[1](hm, vec, act)], dim=1)
        (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
        results.append([out.detach()] + [p.grad.clone() for net in nets for p in net.parameters()])
    for a, b in zip(*results, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max()) + 1e-9), float((a - b).abs().max())
