"""network.critic_family (issue 21): an equivariant actor with a plain critic and the reverse, for CQL and IQL, from
the offline job and from a sweep's ``ACTOR+CRITIC`` family."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from test_offline_job import record_toy, toy_env_spec

from policies.checkpoint import read_checkpoint
from policies.core import Batch
from policies.data import load_datasets
from policies.networks import NetworkConfig, NetworkError, transform_actions, transform_images
from policies.registry import build_algorithm
from robot_stack import config
from robot_stack.jobs.offline import OfflineJob, augments, load_init, run_job
from robot_stack.jobs.sweep_offline import family_overrides
from robot_stack.symmetry import Group

SIZE = 16
SMALL = {"group": "C4", "widths": [2], "kernel_sizes": [3], "hidden": 2}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return record_toy(tmp_path_factory.mktemp("abl") / "toy.zarr", episodes=4, size=SIZE)


def q_gap(critic: torch.nn.Module, batch: Batch) -> float:
    """Largest |Q(g s, g a) - Q(s, a)| over a 90-degree turn: 0 for an invariant critic."""
    g = Group.parse("C4").elements[1]
    with torch.no_grad():
        q = critic(batch.heightmap, batch.vector, batch.action)[0]
        turned = critic(transform_images(g, batch.heightmap), batch.vector, transform_actions(g, batch.action))[0]
    return float((q - turned).abs().max())


@pytest.mark.parametrize("algo", ["cql", "iql"])
@pytest.mark.parametrize("actor, critic", [("exact", "cnn"), ("cnn", "exact")])
def test_actor_and_critic_of_different_families(store, algo, actor, critic):
    torch.manual_seed(0)
    net = {**SMALL, "family": actor, "critic_family": critic}
    _, spec = toy_env_spec(SIZE, net)
    agent = build_algorithm(algo, spec, net, {}, "cpu")
    assert agent.actor.family == actor
    critics = list(agent.critic.heads) + ([agent.value.critic] if algo == "iql" else [])
    assert {c.family for c in critics} == {critic}
    batch = Batch.from_numpy(load_datasets([str(store)], spec).sample(8, np.random.default_rng(0)))
    gap = q_gap(agent.critic.heads[0], batch)
    assert (gap < 1e-4) if critic == "exact" else (gap > 1e-4)  # the invariant critic is the exact one
    assert np.isfinite(agent.update(batch)["critic_loss"])


def test_a_sweep_family_names_actor_and_critic_and_the_checkpoint_rebuilds_both(tmp_path, store):
    base = {"task": "toy_reach", "env": {"heightmap_size": SIZE}, "network": SMALL, "datasets": [str(store)],
            "algo": "cql", "steps": 2, "batch_size": 8, "eval_episodes": 0, "progress": False, "export": False,
            "out_dir": str(tmp_path)}
    job = config.build(OfflineJob, config.apply_overrides(base, family_overrides("exact+cnn_aug")))
    assert (job.network["family"], job.network["critic_family"]) == ("exact", "cnn_aug")
    summary = run_job(job)
    path = f"{summary['out_dir']}/checkpoint.pt"
    saved = read_checkpoint(path).network
    assert (saved.family, saved.critic_family) == ("exact", "cnn_aug")
    _, spec = toy_env_spec(SIZE, job.network)
    again = build_algorithm("cql", spec, saved, {}, "cpu")  # what --init does with it
    assert load_init(again, path, spec) == ["actor", "critic"]
    assert {h.family for h in again.critic.heads} == {"cnn_aug"}
    plain = config.build(OfflineJob, config.apply_overrides(base, family_overrides("cnn")))
    assert plain.network["critic_family"] == ""


def test_a_critic_family_equal_to_the_actor_is_the_same_network():
    assert NetworkConfig(family="exact", critic_family="exact") == NetworkConfig(family="exact")
    assert NetworkConfig(family="exact", critic_family="exact").critic_family == ""
    assert NetworkConfig(family="exact", critic_family="cnn").critic_family == "cnn"
    spelled = OfflineJob(task="toy_reach", network={"family": "exact", "critic_family": "exact"})
    assert config.to_dict(spelled) == config.to_dict(OfflineJob(task="toy_reach", network={"family": "exact",
                                                                                            "critic_family": ""}))


@pytest.mark.parametrize("family, named", [("exact+cnn", "exact+cnn_aug"), ("cnn+relaxed", "cnn_aug+relaxed")])
def test_a_bare_cnn_in_an_actor_critic_pair_is_refused_naming_cnn_aug(family, named):
    with pytest.raises(config.ConfigError, match=f"write '{re.escape(named)}'") as err:
        family_overrides(family)
    assert "\n" not in str(err.value)
    assert family_overrides("cnn+cnn") == family_overrides("cnn") == ["network.family=cnn", "network.critic_family="]


def test_batches_are_turned_unless_every_network_is_the_plain_cnn():
    _, spec = toy_env_spec(SIZE, {**SMALL, "family": "cnn"})
    assert not augments(OfflineJob(task="toy_reach", network={"family": "cnn"}), spec)
    assert augments(OfflineJob(task="toy_reach", network={"family": "cnn", "critic_family": "exact"}), spec)


def test_an_unknown_critic_family_is_refused():
    with pytest.raises((NetworkError, config.ConfigError), match="critic_family 'equi'"):
        OfflineJob(task="toy_reach", network={"critic_family": "equi"})
