"""robot-stack offline: bad datasets refused before training, a tiny run beats random, fine-tuning starts
from the checkpoint's weights."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

import robot_stack.jobs.offline as offline_job
import sim
from policies.bc import BCConfig
from policies.checkpoint import read_checkpoint, write_checkpoint
from policies.core import Batch, TwinQ
from policies.data import load_datasets
from policies.registry import build_algorithm, network_config
from robot_stack import config
from robot_stack.jobs.evaluation import torch_policy
from robot_stack.jobs.offline import OfflineJob, load_init, run_job
from robot_stack.jobs.sweep_offline import random_success
from robot_stack.provenance import source_commit
from robot_stack.recorder import EpisodeRecorder
from robot_stack.specs import SpecError
from sim.toy import make_toy_env, make_toy_expert

SIZE = 32


def record_toy(path: Path, episodes: int, noise: float = 0.3, size: int = SIZE, seed: int = 0) -> Path:
    env = make_toy_env(heightmap_size=size)
    expert = make_toy_expert(env, noise=noise, seed=seed)
    obs_spec, action_spec, _ = env.policy_spec_parts
    with EpisodeRecorder(path, obs_spec, action_spec, {"task": "toy_reach"}, when_full="wait") as rec:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed * 1000 + ep)
            rec.start_episode({"seed": ep})
            done, success = False, False
            while not done:
                action = expert.act(obs, env)
                nxt, reward, terminated, truncated, info = env.step(action)
                rec.add_step(obs, action, reward, {"terminal": terminated})
                obs, done, success = nxt, terminated or truncated, info["success"]
            rec.end_episode(success)
    return path


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory) -> Path:
    return record_toy(tmp_path_factory.mktemp("data") / "toy.zarr", episodes=40)


def toy_env_spec(size: int, net: dict):
    env = sim.make_env("toy_reach", heightmap_size=size)
    return env, sim.policy_spec(env, net["group"], net["family"])


def job(tmp_path: Path, datasets: list[Path], **kw) -> OfflineJob:
    base = dict(task="toy_reach", env={"heightmap_size": SIZE}, datasets=[str(p) for p in datasets],
                steps=5, batch_size=8, eval_episodes=2, out_dir=str(tmp_path / "runs"), progress=False,
                export=False, network={"family": "cnn", "group": "C4", "widths": [2, 2], "kernel_sizes": [3, 3],
                                       "hidden": 4})
    base.update(kw)
    return OfflineJob(**base)


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("training must not start on a bad dataset")

    monkeypatch.setattr(offline_job, "build_algorithm", refuse)


# ------------------------------------------------------------------ bad input, refused before training

def test_empty_dataset_is_refused(tmp_path, no_training):
    env = make_toy_env(heightmap_size=SIZE)
    obs_spec, action_spec, _ = env.policy_spec_parts
    EpisodeRecorder(tmp_path / "empty.zarr", obs_spec, action_spec).close()
    with pytest.raises(SpecError, match="no committed episodes"):
        run_job(job(tmp_path, [tmp_path / "empty.zarr"]))
    assert not (tmp_path / "runs").exists()


def test_no_dataset_is_refused(tmp_path, no_training):
    with pytest.raises(ValueError, match="no dataset"):
        run_job(job(tmp_path, []))


def test_dataset_with_another_observation_spec_is_refused(tmp_path, toy_store, no_training):
    bad = job(tmp_path, [toy_store], env={"heightmap_size": 24})
    with pytest.raises(SpecError, match="heightmap"):
        run_job(bad)


def test_dataset_with_nan_is_refused(tmp_path, no_training):
    path = record_toy(tmp_path / "nan.zarr", episodes=3)
    rewards = zarr.open_group(str(path), mode="r+")["data/reward"]
    values = rewards[:]
    values[2] = np.nan
    rewards[:] = values
    with pytest.raises(SpecError, match="NaN"):
        run_job(job(tmp_path, [path]))


def test_mixed_datasets_are_concatenated(tmp_path, toy_store):
    env, spec = toy_env_spec(SIZE, {"family": "cnn", "group": "C4"})
    one = load_datasets([str(toy_store)], spec)
    two = load_datasets([str(toy_store), str(toy_store)], spec)
    assert len(two) == 2 * len(one) > 0
    # transitions pair step t with t+1: the next heightmap of a non-terminal step is the following heightmap
    live = np.flatnonzero(one.arrays["done"][:-1] == 0)[:5]
    np.testing.assert_array_equal(one.arrays["next_heightmap"][live], one.arrays["heightmap"][live + 1])


# ------------------------------------------------------------------ learning and fine-tuning

NET = {"family": "cnn", "group": "C4", "widths": [1, 2, 4], "kernel_sizes": [5, 3, 3]}


@pytest.fixture(scope="module")
def expert_store(tmp_path_factory) -> Path:
    return record_toy(tmp_path_factory.mktemp("expert") / "toy.zarr", episodes=100, noise=0.1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, expert_store) -> dict:
    out = tmp_path_factory.mktemp("run")
    return run_job(job(out, [expert_store], algo="bc", bc={"lr": 1e-3}, network=NET, steps=600, batch_size=64,
                       eval_episodes=30, export=True))


def test_tiny_offline_bc_run_beats_a_random_policy(tmp_path, trained, expert_store):
    rand = random_success(job(tmp_path, [expert_store], network=NET, eval_episodes=30))  # the BC job's eval episodes
    print(f"BC success {trained['eval']['success_rate']:.2f}, random {rand:.2f}")
    assert trained["eval"]["success_rate"] >= rand + 0.3
    assert Path(trained["files"]["checkpoint"]).is_file()


def test_tiny_offline_iql_run_beats_a_random_policy(tmp_path, expert_store):
    """IQL with its defaults (weighted-regression actor, beta 3, expectile 0.8) on the expert store; the earlier
    Gaussian log-likelihood actor scored 0.00 here (docs/results/offline.md)."""
    lrs = {"actor_lr": 1e-3, "critic_lr": 1e-3, "value_lr": 1e-3}
    iql_job = job(tmp_path, [expert_store], algo="iql", iql=lrs, network=NET, steps=500, batch_size=64,
                  eval_episodes=30)
    result = run_job(iql_job)
    rand = random_success(iql_job)
    last = result["history"][-1]
    print(f"IQL success {result['eval']['success_rate']:.2f}, random {rand:.2f}; {last}")
    assert result["eval"]["success_rate"] >= rand + 0.3
    assert last["critic_loss"] < result["history"][0]["critic_loss"]  # the critic learned something too



# CQL's critic must relate the action to where the target lies: the exact family (the actor's (dx, dy) rotates with
# the scene, so it cannot collapse to one action for every state) with 5x5 kernels, whose receptive field covers the
# 32 px map (docs/results/offline.md, "Why CQL's actor stayed constant on toy reach").
CQL_NET = {"family": "exact", "group": "C4", "widths": [2, 4, 8], "kernel_sizes": [5, 5, 5]}


def test_tiny_offline_cql_run_beats_a_random_policy(tmp_path, expert_store):
    """CQL with the paper's defaults (alpha 1, 10 sampled actions, no BC term, entropy temperature 1 at start) and
    lr 1e-3; its critic ranks moving toward the target above moving away, and uniform actions below the data's."""
    import torch

    cfg = {"actor_lr": 1e-3, "critic_lr": 1e-3, "alpha_lr": 1e-3}
    cql_job = job(tmp_path, [expert_store], algo="cql", cql=cfg, network=CQL_NET, steps=400, batch_size=64,
                  eval_episodes=30)
    result = run_job(cql_job)
    rand = random_success(cql_job)
    _, spec = toy_env_spec(SIZE, CQL_NET)
    algo = build_algorithm("cql", spec, CQL_NET, cfg, torch.device("cpu"))
    load_init(algo, result["files"]["checkpoint"], spec)
    batch = Batch.from_numpy(load_datasets([str(expert_store)], spec).arrays)
    toward = torch.zeros_like(batch.action)
    toward[:, :2] = torch.nn.functional.normalize(batch.action[:, :2], dim=1)  # the expert heads for the target

    def q(action: torch.Tensor) -> float:
        with torch.no_grad():
            return torch.min(*algo.critic(batch.heightmap, batch.vector, action)).mean().item()

    q_data, q_ood = q(batch.action), q(torch.rand_like(batch.action) * 2 - 1)
    q_toward, q_away = q(toward), q(-toward)
    print(f"CQL success {result['eval']['success_rate']:.2f}, random {rand:.2f}; Q data {q_data:.2f}, "
          f"uniform {q_ood:.2f}, toward {q_toward:.2f}, away {q_away:.2f}")
    assert result["eval"]["success_rate"] >= rand + 0.3
    assert q_ood < q_data - 1.0  # the conservative penalty pushed Q down away from the data
    assert q_toward > q_away + 1.0  # the critic ranks actions by where they lead in this scene


def test_fine_tuning_starts_from_the_checkpoint_weights(trained):
    import torch

    env, spec = toy_env_spec(SIZE, NET)
    saved = read_checkpoint(trained["files"]["checkpoint"]).modules
    for name in ("cql", "iql"):
        algo = build_algorithm(name, spec, NET, {}, torch.device("cpu"))
        assert load_init(algo, trained["files"]["checkpoint"], spec) == ["actor"]  # BC has no critic
        for key, value in saved["actor"].items():
            torch.testing.assert_close(algo.actor.state_dict()[key], value)
    # the deployed actions are the checkpoint's, not a fresh network's
    fresh = build_algorithm("bc", spec, NET, {}, torch.device("cpu"))
    tuned = build_algorithm("bc", spec, NET, {}, torch.device("cpu"))
    load_init(tuned, trained["files"]["checkpoint"], spec)
    obs, _ = env.reset(seed=1)
    act_saved = torch_policy(tuned.actor, spec, torch.device("cpu"))(obs)
    act_fresh = torch_policy(fresh.actor, spec, torch.device("cpu"))(obs)
    assert not np.allclose(act_saved, act_fresh)


def test_fine_tuning_from_an_online_sac_checkpoint(tmp_path):
    import torch

    from policies.networks import build_actor, build_critic

    _, spec = toy_env_spec(SIZE, NET)
    net_cfg = network_config(spec, NET)
    actor, critic = build_actor(spec, net_cfg), TwinQ(lambda: build_critic(spec, net_cfg))
    path = tmp_path / "online.pt"
    modules = {"actor": actor.state_dict(), "critic": critic.state_dict(), "critic_target": critic.state_dict()}
    write_checkpoint(path, spec, NET, modules, {"kind": "sac-training", "agent": {"updates": 0}})  # as train writes
    algo = build_algorithm("cql", spec, NET, {}, torch.device("cpu"))
    assert load_init(algo, path, spec) == ["actor", "critic"]
    for key, value in actor.state_dict().items():
        torch.testing.assert_close(algo.actor.state_dict()[key], value)
    for key, value in critic.state_dict().items():
        torch.testing.assert_close(algo.critic.state_dict()[key], value)
        torch.testing.assert_close(algo.target_critic.state_dict()[key], value)
    # a checkpoint for another spec is refused
    other = toy_env_spec(16, NET)[1]
    with pytest.raises(SpecError, match="heightmap"):
        load_init(build_algorithm("bc", other, NET, {}, torch.device("cpu")), path, other)


def test_summary_records_the_algorithm_config_as_built(tmp_path, toy_store):
    summary = run_job(job(tmp_path, [toy_store], algo="bc", bc={"lr": "1e-3"}))  # "1e-3": a command-line string
    assert summary["config"]["bc"] == config.to_dict(BCConfig(lr=1e-3))
    saved = json.loads((Path(summary["out_dir"]) / "summary.json").read_text())
    assert saved["provenance"]["commit"] == source_commit() and saved["provenance"]["machine"]["cpus"] >= 1


def test_overrides_typed_after_dataset_are_split_from_paths(toy_store):
    from robot_stack.commands.offline import split_dataset_words

    paths, overrides = split_dataset_words([str(toy_store), "algo=cql", "s3://b/k=v.zarr"])
    assert paths == [str(toy_store), "s3://b/k=v.zarr"] and overrides == ["algo=cql"]


def test_successes_only_keeps_the_successful_episodes(tmp_path):
    path = record_toy(tmp_path / "noisy.zarr", episodes=12, noise=2.0)
    _, spec = toy_env_spec(SIZE, {"family": "cnn", "group": "C4"})
    every, successful = load_datasets([str(path)], spec), load_datasets([str(path)], spec, successes_only=True)
    assert 0 < len(successful) < len(every)
    assert successful.arrays["reward"].sum() == every.arrays["reward"].sum()  # the toy's reward comes at success


def test_fine_tuning_with_evaluation_reports_success_before_and_after(tmp_path, trained, expert_store, toy_store,
                                                                      capsys):
    from robot_stack import cli

    ckpt = trained["files"]["checkpoint"]
    same = run_job(job(tmp_path, [expert_store], algo="iql", network=NET, steps=0, eval_episodes=5, init=ckpt))
    assert same["eval_before"] == same["eval"]  # no update: the same policy on the same eval episodes
    assert "eval_before" not in run_job(job(tmp_path, [toy_store], network=NET, steps=1))
    net = ["network.family=cnn", "network.widths=[1,2,4]", "network.kernel_sizes=[5,3,3]"]
    assert cli.main(["offline", "offline_toy", "--dataset", str(toy_store), "--dataset", str(expert_store),
                     "--init", ckpt, "steps=3", "batch_size=8", "eval_episodes=3", "export=false", "progress=false",
                     f"out_dir={tmp_path / 'cli'}", *net]) == 0
    out = capsys.readouterr().out
    assert "success before fine-tuning" in out and "on the same 3 eval episodes" in out and '"eval_before"' in out


def _old_version(path: Path) -> Path:
    doc = json.loads((path / "zarr.json").read_text())
    doc["attributes"]["robot_stack"]["spec_version"] = 1
    (path / "zarr.json").write_text(json.dumps(doc))
    return path


def test_the_command_refuses_a_bad_store_in_one_line_naming_it(tmp_path, toy_store, no_training, capsys):
    from robot_stack import cli

    empty = tmp_path / "empty.zarr"
    EpisodeRecorder(empty, *make_toy_env(heightmap_size=SIZE).policy_spec_parts[:2]).close()
    nan = record_toy(tmp_path / "nan.zarr", episodes=2)
    actions = zarr.open_group(str(nan), mode="r+")["data/action"]
    values = actions[:]
    values[1, 0] = np.inf
    actions[:] = values
    old = _old_version(record_toy(tmp_path / "old.zarr", episodes=2))
    for store, problem in ((empty, "no committed episodes"), (nan, "data/action has NaN or inf"),
                           (old, "spec version 1; this robot-stack uses spec version 2")):
        code = cli.main(["offline", "offline_toy", "--dataset", str(toy_store), "--dataset", str(store),
                         f"env.heightmap_size={SIZE}", f"out_dir={tmp_path}"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and str(store) in err and problem in err and "\n" not in err, err


def test_cosine_actor_lr_schedule_ends_the_run_at_zero_and_a_bad_one_is_refused(tmp_path, toy_store, monkeypatch):
    seen = []
    original = offline_job.train_loop

    def spy(algo, *args, **kwargs):
        history = original(algo, *args, **kwargs)
        seen.append(algo.actor_opt.param_groups[0]["lr"])
        return history

    monkeypatch.setattr(offline_job, "train_loop", spy)
    run_job(job(tmp_path, [toy_store], algo="bc", actor_lr_schedule="cosine", eval_episodes=0))
    assert seen == [pytest.approx(0.0)]
    with pytest.raises(config.ConfigError, match="actor_lr_schedule 'cosin'"):
        job(tmp_path, [toy_store], actor_lr_schedule="cosin")


def test_actor_average_is_what_is_saved_and_the_last_update_is_evaluated_beside_it(tmp_path, toy_store, monkeypatch):
    weights = {}
    original = offline_job.train_loop

    def spy(algo, *args, average=None, **kwargs):
        history = original(algo, *args, average=average, **kwargs)
        if average is None:
            return history
        weights["last"] = {k: v.clone() for k, v in algo.actor.state_dict().items()}
        weights["average"] = {k: v.clone() for k, v in average.module.state_dict().items()}
        return history

    monkeypatch.setattr(offline_job, "train_loop", spy)
    summary = run_job(job(tmp_path, [toy_store], algo="bc", actor_average=0.9, steps=20))
    saved = read_checkpoint(summary["files"]["checkpoint"]).module("actor", "test")
    assert all(torch.equal(saved[k], weights["average"][k]) for k in saved)
    assert not all(torch.equal(saved[k], weights["last"][k]) for k in saved)
    assert set(summary["eval_last_iterate"]) == set(summary["eval"])
    assert "eval_last_iterate" not in run_job(job(tmp_path, [toy_store], algo="bc", name="plain"))
    with pytest.raises(config.ConfigError, match="actor_average 1.5"):
        job(tmp_path, [toy_store], actor_average=1.5)
