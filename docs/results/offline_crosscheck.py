"""Cross-check of policies/cql.py and policies/iql.py against d3rlpy on one small vector dataset.

Run with a Python that has d3rlpy next to this repository's packages (see docs/offline_crosscheck.md):
    /tmp/d3/bin/python docs/results/offline_crosscheck.py [steps] [out.json]
Both sides get the same transitions (d3rlpy's own transition picker builds ours), the same MLPs
(256-256 ReLU, as d3rlpy's default vector encoder), the same hyperparameters and batch size, and are
evaluated on the same toy reach seeds with the deterministic action tanh(mean).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import d3rlpy  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from policies.core import Batch  # noqa: E402
from policies.cql import CQL, CQLConfig  # noqa: E402
from policies.data import TransitionArrays  # noqa: E402
from policies.iql import IQL, IQLConfig  # noqa: E402
from robot_stack.jobs.evaluation import evaluate as evaluate_policy  # noqa: E402
from sim.toy import make_toy_env, make_toy_expert  # noqa: E402

GAMMA, TAU, LR, BATCH, HIDDEN = 0.99, 5e-3, 3e-4, 64, 256
EXPECTILE, BETA, MAX_WEIGHT = 0.8, 3.0, 100.0
CQL_ALPHA, CQL_SAMPLES = 1.0, 10
EVAL_EPISODES, EVAL_SEED = 50, 10_000


def vector_obs(env) -> np.ndarray:
    """[gripper x, y, target x, y (workspace half-widths), height, closed]: the toy task without pixels."""
    base = env.unwrapped
    return np.concatenate([base.gripper_xy, base.target_xy, [base._z, base._closed]]).astype(np.float32)


def record(episodes: int, noise: float, seed: int) -> list[dict]:
    env = make_toy_env(heightmap_size=16)
    expert = make_toy_expert(env, noise=noise, seed=seed)
    out = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed * 1000 + ep)
        steps = {"obs": [], "action": [], "reward": []}
        done, terminated = False, False
        while not done:
            action = expert.act(obs, env)
            steps["obs"].append(vector_obs(env))
            obs, reward, terminated, truncated, _ = env.step(action)
            steps["action"].append(action)
            steps["reward"].append(reward)
            done = terminated or truncated
        out.append({k: np.asarray(v, np.float32) for k, v in steps.items()} | {"terminated": terminated})
    return out


def mdp_dataset(episodes: list[dict]) -> d3rlpy.dataset.MDPDataset:
    obs = np.concatenate([e["obs"] for e in episodes])
    act = np.concatenate([e["action"] for e in episodes])
    rew = np.concatenate([e["reward"] for e in episodes])[:, None]
    term, tout = np.zeros(len(obs), np.float32), np.zeros(len(obs), np.float32)
    ends = np.cumsum([len(e["obs"]) for e in episodes]) - 1
    for end, e in zip(ends, episodes, strict=True):
        (term if e["terminated"] else tout)[end] = 1.0
    return d3rlpy.dataset.MDPDataset(obs, act, rew, term, tout,
                                     action_space=d3rlpy.constants.ActionSpace.CONTINUOUS)


def our_transitions(dataset: d3rlpy.dataset.MDPDataset) -> TransitionArrays:
    """Exactly d3rlpy's transitions (its BasicTransitionPicker), in policies.data's layout."""
    picker = d3rlpy.dataset.BasicTransitionPicker()
    rows = [picker(ep, i) for ep in dataset.episodes for i in range(ep.transition_count)]
    n = len(rows)
    dummy = np.zeros((n, 1, 1, 1), np.float32)  # the MLPs below read only the vector
    return TransitionArrays({
        "heightmap": dummy, "vector": np.stack([r.observation for r in rows]).astype(np.float32),
        "action": np.stack([r.action for r in rows]).astype(np.float32),
        "reward": np.array([r.reward[0] for r in rows], np.float32), "next_heightmap": dummy,
        "next_vector": np.stack([r.next_observation for r in rows]).astype(np.float32),
        "done": np.array([r.terminal for r in rows], np.float32)})


def mlp(inp: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, out))


class Actor(nn.Module):
    """mean and log-std; ``std_parameter``: a state-independent log-std (d3rlpy's IQL policy)."""

    def __init__(self, obs_dim: int, std_parameter: bool) -> None:
        super().__init__()
        self.std_parameter = std_parameter
        self.net = mlp(obs_dim, 5 if std_parameter else 10)
        self.log_std = nn.Parameter(torch.zeros(1, 5)) if std_parameter else None

    def forward(self, hm: torch.Tensor, vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(vec)
        if self.std_parameter:
            return out, self.log_std.expand_as(out)
        return out[:, :5], out[:, 5:]


class Critic(nn.Module):
    def __init__(self, obs_dim: int) -> None:
        super().__init__()
        self.net = mlp(obs_dim + 5, 1)

    def forward(self, hm: torch.Tensor, vec: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([vec, action], 1))


def evaluate(act) -> dict[str, float]:
    """The stack's one evaluation routine, with the state-vector policy ``act`` reading the env's state."""
    env = make_toy_env(heightmap_size=16)
    scores = evaluate_policy(lambda _obs: act(vector_obs(env)), env, EVAL_EPISODES, train_seed=0)
    return {"success_rate": scores["success_rate"], "mean_return": scores["mean_return"]}


def run_ours(name: str, data: TransitionArrays, steps: int, log_every: int, seed: int, **kw) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    obs_dim = data.arrays["vector"].shape[1]
    if name == "iql":
        actor = Actor(obs_dim, std_parameter=True)
        cfg = IQLConfig(gamma=GAMMA, actor_lr=LR, critic_lr=LR, value_lr=LR, tau=TAU, expectile=EXPECTILE,
                        beta=BETA, max_weight=MAX_WEIGHT, **kw)
        algo = IQL(actor, lambda: Critic(obs_dim), cfg, make_value=lambda: Critic(obs_dim))
        keys = {"critic_loss": "q_loss", "value_loss": "v_loss", "actor_loss": "actor_loss"}
    else:
        actor = Actor(obs_dim, std_parameter=False)
        cfg = CQLConfig(gamma=GAMMA, actor_lr=LR, critic_lr=LR, alpha_lr=LR, tau=TAU, alpha=CQL_ALPHA,
                        num_sampled=CQL_SAMPLES, init_temperature=1.0, **kw)
        algo = CQL(actor, lambda: Critic(obs_dim), cfg)
        keys = {"td_loss": "td_loss", "cql_penalty": "conservative_loss", "actor_loss": "actor_loss",
                "q_data": "q_data"}
    log, window, t0 = [], [], time.perf_counter()
    for step in range(1, steps + 1):
        info = algo.update(Batch.from_numpy(data.sample(BATCH, rng)))
        window.append(info)
        if step % log_every == 0:
            row = {new: float(np.mean([w[old] for w in window])) for old, new in keys.items()}
            if name == "cql":
                row["conservative_loss"] *= 2  # d3rlpy sums the penalty over its 2 critics
            log.append({"step": step, **row})
            window = []
    seconds = time.perf_counter() - t0

    @torch.no_grad()
    def act(o: np.ndarray) -> np.ndarray:
        mean, _ = algo.actor(torch.zeros(1, 1, 1, 1), torch.as_tensor(o)[None])
        return torch.tanh(mean)[0].numpy()

    return {"log": log, "eval": evaluate(act), "train_seconds": seconds}


def run_d3rlpy(name: str, dataset, steps: int, log_every: int, seed: int) -> dict:
    d3rlpy.seed(seed)
    enc = d3rlpy.models.VectorEncoderFactory(hidden_units=[HIDDEN, HIDDEN])
    if name == "iql":
        algo = d3rlpy.algos.IQLConfig(
            batch_size=BATCH, gamma=GAMMA, actor_learning_rate=LR, critic_learning_rate=LR, tau=TAU,
            expectile=EXPECTILE, weight_temp=BETA, max_weight=MAX_WEIGHT, actor_encoder_factory=enc,
            critic_encoder_factory=enc, value_encoder_factory=enc).create(device="cpu:0")
        keys = {"q_loss": "q_loss", "v_loss": "v_loss", "actor_loss": "actor_loss"}
    else:
        algo = d3rlpy.algos.CQLConfig(
            batch_size=BATCH, gamma=GAMMA, actor_learning_rate=LR, critic_learning_rate=LR, temp_learning_rate=LR,
            alpha_learning_rate=0.0, initial_alpha=1.0, conservative_weight=CQL_ALPHA, alpha_threshold=0.0,
            n_action_samples=CQL_SAMPLES, initial_temperature=1.0, tau=TAU, actor_encoder_factory=enc,
            critic_encoder_factory=enc).create(device="cpu:0")
        keys = {"critic_loss": "critic_loss", "conservative_loss": "conservative_loss", "actor_loss": "actor_loss"}
    t0 = time.perf_counter()
    results = algo.fit(dataset, n_steps=steps, n_steps_per_epoch=log_every, show_progress=False,
                       logger_adapter=d3rlpy.logging.NoopAdapterFactory(), save_interval=10 ** 9)
    seconds = time.perf_counter() - t0
    log = []
    for epoch, metrics in results:
        row = {new: float(metrics[old]) for old, new in keys.items() if old in metrics}
        if name == "cql":  # critic_loss = TD (summed over critics) + penalty: split it like ours
            row["td_loss"] = row.pop("critic_loss") - row["conservative_loss"]
        log.append({"step": epoch * log_every, **row})
    return {"log": log, "eval": evaluate(lambda o: algo.predict(o[None])[0]), "train_seconds": seconds}


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("offline_crosscheck.json")
    log_every = max(1, steps // 10)
    episodes = record(40, 0.1, seed=1) + record(60, 1.5, seed=2)
    dataset = mdp_dataset(episodes)
    data = our_transitions(dataset)
    report = {"d3rlpy": d3rlpy.__version__, "torch": torch.__version__, "steps": steps, "batch": BATCH,
              "transitions": len(data), "episodes": len(episodes), "reward_mean": float(data.arrays["reward"].mean()),
              "hyper": {"gamma": GAMMA, "tau": TAU, "lr": LR, "hidden": [HIDDEN, HIDDEN], "expectile": EXPECTILE,
                        "beta": BETA, "max_weight": MAX_WEIGHT, "cql_alpha": CQL_ALPHA, "cql_samples": CQL_SAMPLES},
              "random": evaluate(lambda o: np.random.default_rng().uniform(-1, 1, 5)), "runs": {}}
    runs = [("iql", "ours", {"actor_loss": "gaussian"}), ("iql", "ours_deterministic", {}), ("iql", "d3rlpy", None),
            ("cql", "ours", {}), ("cql", "d3rlpy", None)]
    for name, who, kw in runs:
        res = (run_d3rlpy(name, dataset, steps, log_every, 0) if kw is None
               else run_ours(name, data, steps, log_every, 0, **kw))
        report["runs"][f"{name}_{who}"] = res
        print(name, who, res["eval"], f"{res['train_seconds']:.0f}s", res["log"][-1], flush=True)
    out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
