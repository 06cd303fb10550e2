"""The offline losses against their definitions on hand-computed inputs, and CQL's effect on OOD actions."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from policies.bc import BC, bc_loss
from policies.core import Batch, actor_average, actor_lr_schedule, sample_tanh_gaussian
from policies.cql import CQL, CQLConfig, cql_penalty
from policies.data import TransitionArrays, batches, rotate_batch
from policies.iql import IQL, IQLConfig, advantage_weights, expectile_loss, gaussian_log_prob
from robot_stack.symmetry import Group, act_on_action, act_on_image

S = 8  # tiny heightmaps: these tests check the algorithms, not the networks


class MLPActor(nn.Module):
    def __init__(self, k: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(S * S + k, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, hm, vec):
        mean, log_std = self.net(torch.cat([hm.flatten(1), vec], 1)).chunk(2, dim=1)
        return mean, log_std


class MLPCritic(nn.Module):
    def __init__(self, k: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(S * S + k + 5, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, hm, vec, action):
        return self.net(torch.cat([hm.flatten(1), vec, action], 1))


class ConstCritic(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(value))

    def forward(self, hm, vec, action):
        return self.value.expand(hm.shape[0], 1)


def toy_transitions(n: int, rng: np.random.Generator) -> TransitionArrays:
    """Dataset actions near (0.5, 0.5, 0, 0, 0); reward higher the closer the action is to it."""
    hm = rng.random((n, 1, S, S), dtype=np.float32)
    vec = rng.random((n, 2), dtype=np.float32)
    act = np.clip(np.array([0.5, 0.5, 0, 0, 0], np.float32) + 0.05 * rng.standard_normal((n, 5)), -1, 1)
    reward = (1.0 - np.abs(act - [0.5, 0.5, 0, 0, 0]).sum(1)).astype(np.float32)
    return TransitionArrays({"heightmap": hm, "vector": vec, "action": act.astype(np.float32), "reward": reward,
                             "next_heightmap": np.roll(hm, 1, axis=0), "next_vector": np.roll(vec, 1, axis=0),
                             "done": (rng.random(n) < 0.1).astype(np.float32)})


def tiny_batch(b: int = 4, seed: int = 0) -> Batch:
    data = toy_transitions(b, np.random.default_rng(seed))
    return Batch.from_numpy(data.arrays)


# ------------------------------------------------------------------ IQL

def test_expectile_loss_matches_hand_computation():
    diff = torch.tensor([1.0, -2.0, 0.5])
    # weights |0.8 - 1(u<0)| = [0.8, 0.2, 0.8]; 0.8*1 + 0.2*4 + 0.8*0.25 = 1.8; mean 0.6
    assert expectile_loss(diff, 0.8).item() == pytest.approx(0.6)
    # expectile 0.5 is half the mean squared error
    assert expectile_loss(diff, 0.5).item() == pytest.approx(0.5 * (1 + 4 + 0.25) / 3)


def test_expectile_minimiser_is_the_upper_expectile():
    x = torch.tensor([0.0, 1.0, 2.0, 10.0])
    v = torch.zeros((), requires_grad=True)
    opt = torch.optim.SGD([v], lr=0.5)
    for _ in range(500):
        opt.zero_grad()
        expectile_loss(x - v, 0.8).backward()
        opt.step()
    # the 0.8-expectile solves 0.8 * sum_{x>v}(x - v) = 0.2 * sum_{x<v}(v - x); above the mean 3.25
    above, below = x[x > v].sub(v).sum(), (v - x[x < v]).sum()
    assert 0.8 * above.item() == pytest.approx(0.2 * below.item(), abs=1e-3)
    assert v.item() > x.mean().item()


def test_advantage_weights_and_gaussian_log_prob():
    w = advantage_weights(torch.tensor([0.0, 2.0, 20.0]), beta=0.5, max_weight=100.0)
    assert w.tolist() == pytest.approx([1.0, math.e, 100.0])
    mean, std, a = torch.zeros(1, 5), torch.full((1, 5), 2.0), torch.full((1, 5), 1.0)
    expected = 5 * (-math.log(2.0) - 0.5 * math.log(2 * math.pi) - 0.5 * (1.0 / 2.0) ** 2)
    assert gaussian_log_prob(mean, std, a).item() == pytest.approx(expected, rel=1e-6)


def test_iql_value_loss_uses_min_target_q_and_expectile():
    torch.manual_seed(0)
    algo = IQL(MLPActor(), MLPCritic, IQLConfig(expectile=0.8))
    batch = tiny_batch()
    loss, adv = algo.value_loss(batch)
    tq = torch.min(*algo.target_critic(batch.heightmap, batch.vector, batch.action))
    u = tq - algo.value(batch.heightmap, batch.vector)
    manual = (torch.where(u < 0, 0.2, 0.8) * u ** 2).mean()
    assert loss.item() == pytest.approx(manual.item(), rel=1e-6)
    assert torch.allclose(adv, u.detach())


# ------------------------------------------------------------------ CQL

def test_cql_penalty_matches_hand_computation():
    q_data = torch.tensor([1.0, 2.0])
    q_sampled = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    # logsumexp rows: log 2 and log 4; mean 1.5 log 2; minus mean q_data 1.5
    assert cql_penalty(q_data, q_sampled).item() == pytest.approx(1.5 * math.log(2) - 1.5)
    # temperature T: T * logsumexp(q / T); with T = 2 row 0 gives 2 log 2
    t2 = cql_penalty(torch.zeros(1), torch.zeros(1, 2), temperature=2.0)
    assert t2.item() == pytest.approx(2 * math.log(2))


def test_cql_sampled_actions_are_density_corrected():
    torch.manual_seed(0)
    algo = CQL(MLPActor(), lambda: ConstCritic(3.0), CQLConfig(num_sampled=4))
    batch = tiny_batch(b=3)
    q1, q2, s1, s2 = algo.sampled_q(batch)
    assert s1.shape == (3, 12) and q1.shape == (3,)
    # uniform actions on [-1, 1]^5 have log-density 5 log 0.5: Q - log density = 3 + 5 log 2
    assert torch.allclose(s1[:, :4], torch.full((3, 4), 3.0 + 5 * math.log(2)))
    # policy samples: Q - log pi, with log pi from the tanh-Gaussian, so above 3 - max log pi; all finite
    assert torch.isfinite(s1).all() and torch.allclose(s1, s2)


def test_tanh_gaussian_log_prob_matches_torch_transformed_distribution():
    torch.manual_seed(1)
    mean, std = torch.randn(64, 5), torch.rand(64, 5) + 0.1
    a, logp = sample_tanh_gaussian(mean, std)
    ref = torch.distributions.TransformedDistribution(torch.distributions.Normal(mean, std),
                                                      [torch.distributions.TanhTransform()])
    inside = a.abs().max(1).values < 0.999  # TanhTransform's inverse is unstable at the bounds
    assert torch.allclose(logp[inside], ref.log_prob(a).sum(-1)[inside], atol=1e-3)


def _ood_gap(alpha: float, steps: int = 300) -> float:
    """Mean Q at uniform random actions minus mean Q at dataset actions, after CQL training."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = toy_transitions(512, rng)
    algo = CQL(MLPActor(), MLPCritic, CQLConfig(alpha=alpha, actor_lr=3e-4, critic_lr=3e-4))
    stream = batches(data, 64, rng, None, torch.device("cpu"))
    for _ in range(steps):
        algo.update(next(stream))
    test = Batch.from_numpy(data.sample(256, rng))
    with torch.no_grad():
        q_data = torch.min(*algo.critic(test.heightmap, test.vector, test.action)).mean()
        rand = torch.rand_like(test.action) * 2 - 1
        q_ood = torch.min(*algo.critic(test.heightmap, test.vector, rand)).mean()
    return float(q_ood - q_data)


def test_cql_penalty_lowers_q_of_out_of_distribution_actions():
    plain, conservative = _ood_gap(alpha=0.0), _ood_gap(alpha=1.0)
    print(f"Q(ood) - Q(data): alpha 0: {plain:.3f}, alpha 1: {conservative:.3f}")
    assert conservative < plain - 0.5
    assert conservative < 0.0


def test_cql_lagrange_moves_alpha_prime_towards_the_gap():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    algo = CQL(MLPActor(), MLPCritic, CQLConfig(lagrange=True, target_action_gap=-100.0, alpha_lr=1e-2))
    stream = batches(toy_transitions(128, rng), 32, rng, None, torch.device("cpu"))
    infos = [algo.update(next(stream)) for _ in range(20)]
    # the penalty is far above the (negative) target gap, so alpha' must grow from 1
    assert infos[-1]["alpha_prime"] > 1.1


# ------------------------------------------------------------------ BC and augmentation

def test_bc_loss_matches_hand_computation_and_fits():
    mean = torch.zeros(2, 5)
    action = torch.tensor([[1.0, 0, 0, 0, 0], [0.5, 0.5, 0, 0, 0]])
    assert bc_loss(mean, action).item() == pytest.approx((1.0 + 0.5) / 2)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    algo = BC(MLPActor(), device="cpu")
    algo.cfg.lr = 1e-3
    algo.actor_opt = torch.optim.Adam(algo.actor.parameters(), lr=1e-3)
    stream = batches(toy_transitions(256, rng), 64, rng, None, torch.device("cpu"))
    first = algo.update(next(stream))["bc_loss"]
    for _ in range(200):
        last = algo.update(next(stream))["bc_loss"]
    assert last < 0.2 * first


def test_rotate_batch_acts_on_heightmaps_and_actions_consistently():
    rng = np.random.default_rng(3)
    data = toy_transitions(16, rng).arrays
    group = Group.parse("C4")
    out = rotate_batch(data, group, np.random.default_rng(7))
    picks = np.random.default_rng(7).integers(group.order, size=16)
    for i in range(16):
        g = group.element(int(picks[i]))
        np.testing.assert_allclose(out["heightmap"][i], act_on_image(g, data["heightmap"][i]))
        np.testing.assert_allclose(out["next_heightmap"][i], act_on_image(g, data["next_heightmap"][i]))
        np.testing.assert_allclose(out["action"][i], act_on_action(g, data["action"][i]), atol=1e-6)
    np.testing.assert_array_equal(out["vector"], data["vector"])
    assert not np.allclose(out["action"], data["action"])


def test_cql_encodes_each_heightmap_once_with_the_same_q_values():
    """encode_once: the critic's encoder sees each state once (not 1 + 3N times) and Q is what the whole critic
    gives on repeated states."""
    from policies.networks import NetworkConfig, build_critic
    from robot_stack.specs import ActionSpec, HeightmapSpec, ObservationSpec, PolicySpec

    hs = HeightmapSpec(S)
    spec = PolicySpec(ObservationSpec.create(hs), ActionSpec(), hs, group="C4", family="cnn")
    net = NetworkConfig(family="cnn", group="C4", widths=(2,), kernel_sizes=(3,), hidden=2)
    torch.manual_seed(0)
    algo = CQL(MLPActor(), lambda: build_critic(spec, net), CQLConfig(num_sampled=3))
    batch = tiny_batch(b=4)
    actions, log_dens = algo.sampled_actions(batch)
    assert actions.shape == (4, 9, 5) and log_dens.shape == (4, 9)
    rows = []
    hook = algo.critic.heads[0].encoder.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    once = algo.sampled_q(batch, actions, log_dens)
    assert rows == [4]
    algo.cfg.encode_once = False
    whole = algo.sampled_q(batch, actions, log_dens)
    assert rows == [4, 4 * 10]
    hook.remove()
    for a, b in zip(once, whole, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert once[2].std() > 1e-4  # the sampled actions' Q differ, so the comparison means something


def test_iql_actor_losses_match_their_definitions():
    torch.manual_seed(0)
    batch = tiny_batch(b=6)
    adv = torch.linspace(-1.0, 1.0, 6)
    for kind in ("deterministic", "gaussian"):
        algo = IQL(MLPActor(), MLPCritic, IQLConfig(beta=3.0, actor_loss=kind))
        loss, weights = algo.actor_loss(batch, adv)
        torch.testing.assert_close(weights, torch.exp(3.0 * adv))
        mean, log_std = algo.actor(batch.heightmap, batch.vector)
        if kind == "deterministic":
            expected = (weights * ((torch.tanh(mean) - batch.action) ** 2).sum(-1)).mean()
        else:
            std = log_std.clamp(-5.0, 2.0).exp()
            expected = -(weights * gaussian_log_prob(mean, std, batch.action)).mean()
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="actor_loss"):
        IQL(MLPActor(), MLPCritic, IQLConfig(actor_loss="mse"))


@pytest.mark.parametrize("beta, lowest", [(0.0, -0.1), (3.0, 0.4)])
def test_iql_actor_follows_the_higher_advantage_action(beta, lowest):
    """One state, two dataset actions dx = +0.5 (advantage +1) and dx = -0.5 (advantage -1): with beta 3 the
    weighted fit lands near +0.5 (weights e^3 : e^-3); with beta 0 it is plain BC, the average 0."""
    torch.manual_seed(0)
    batch = tiny_batch(b=2)
    batch.heightmap[1], batch.vector[1] = batch.heightmap[0], batch.vector[0]
    batch.action.zero_()
    batch.action[:, 0] = torch.tensor([0.5, -0.5])
    adv = torch.tensor([1.0, -1.0])
    algo = IQL(MLPActor(), MLPCritic, IQLConfig(beta=beta, actor_lr=1e-2))
    for _ in range(200):
        loss, _ = algo.actor_loss(batch, adv)
        algo._step(algo.actor_opt, loss, algo.actor)
    dx = torch.tanh(algo.actor(batch.heightmap[:1], batch.vector[:1])[0][0, 0]).item()
    assert lowest < dx < (0.1 if beta == 0 else 0.5)


@pytest.mark.parametrize("kind", ["iql", "cql"])
def test_actor_waits_for_its_warmup_updates_while_the_critic_learns(kind):
    """actor_warmup_updates=3: the actor (and CQL's temperature) keep their weights for three updates while the
    critic moves; the fourth update moves the actor. The logged keys are the same before and after."""
    torch.manual_seed(0)
    if kind == "iql":
        algo = IQL(MLPActor(), MLPCritic, IQLConfig(actor_warmup_updates=3, actor_lr=1e-2))
    else:
        algo = CQL(MLPActor(), MLPCritic, CQLConfig(actor_warmup_updates=3, actor_lr=1e-2, num_sampled=2))

    def snapshot(module):
        return [p.detach().clone() for p in module.parameters()]

    actor0, critic0 = snapshot(algo.actor), snapshot(algo.critic)
    temperature0 = algo.log_alpha_ent.item() if kind == "cql" else None
    keys = [set(algo.update(tiny_batch(b=8, seed=i))) for i in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(actor0, snapshot(algo.actor), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(critic0, snapshot(algo.critic), strict=True))
    if kind == "cql":
        assert algo.log_alpha_ent.item() == temperature0
    keys.append(set(algo.update(tiny_batch(b=8, seed=3))))
    assert any(not torch.equal(a, b) for a, b in zip(actor0, snapshot(algo.actor), strict=True))
    assert all(k == keys[0] for k in keys)
    config = IQLConfig if kind == "iql" else CQLConfig
    with pytest.raises(ValueError, match=f"{kind}.actor_warmup_updates"):
        config(actor_warmup_updates=-1)


def test_cosine_actor_lr_holds_through_the_warmup_then_falls_to_zero_and_stays():
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1e-2)
    schedule = actor_lr_schedule(opt, "cosine", updates=10, warmup_updates=4)
    lrs = []
    for _ in range(14):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert lrs[:5] == pytest.approx([1e-2] * 5)
    assert lrs[7] == pytest.approx(5e-3)  # half way through the 6 updates after the warm-up
    assert all(a > b for a, b in zip(lrs[4:10], lrs[5:10], strict=False))
    assert lrs[10:] == pytest.approx([0.0] * 4)
    assert actor_lr_schedule(opt, "constant", updates=10) is None
    with pytest.raises(ValueError, match="actor_lr_schedule 'linear'"):
        actor_lr_schedule(opt, "linear", updates=10)


def test_actor_average_is_the_exponential_average_of_the_updates_from_the_first_one():
    actor = nn.Linear(1, 1, bias=False)
    average = actor_average(actor, decay=0.5)
    for value in (4.0, 8.0, 2.0):
        with torch.no_grad():
            actor.weight.fill_(value)
        average.update_parameters(actor)
    # the first update copies (4), then 0.5 * old + 0.5 * new: 6, then 4
    assert average.module.weight.item() == pytest.approx(4.0)
    assert actor.weight.item() == 2.0
    assert actor_average(actor, decay=0.0) is None
    with pytest.raises(ValueError, match="actor_average 1.0"):
        actor_average(actor, decay=1.0)
