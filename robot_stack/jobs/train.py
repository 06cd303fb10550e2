"""The online training job behind ``robot-stack train``: vector envs -> replay -> SAC, with evals and checkpoints.

Checkpoints (``<out_dir>/checkpoint.pt`` + the ``<out_dir>/buffer-*.npz`` it names, each written atomically) hold
the networks, optimisers, temperature, step and episode counters, RNG states, the eval history and
the full replay buffer. Resuming restores all of that exactly; the one approximation is that the
environments start fresh episodes (an episode cut by the kill is not continued, and its partial
n-step window is dropped). Ctrl-C saves a checkpoint before the job exits.

For reading a run without torch, ``<out_dir>/evals.csv`` (one row per eval: step, success_rate, return, seconds of
training since the run started, summed over resumed sessions; the mean Q, BC loss and temperature over the updates
since the previous eval) and ``<out_dir>/learning_curve.png`` are rewritten
from the eval history after every eval and when a job starts or resumes, so after a resume they match the checkpoint.
``<out_dir>/provenance.jsonl`` gets one line per session (start step, commit, machine, load).

A front-end follows a run through ``Trainer``'s progress observers (``TrainProgress``); ``ProgressBars``, the
command's rich view, is one of them.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import sim
from policies import checkpoint as policies_checkpoint
from policies.checkpoint import write_checkpoint
from policies.core import pick_device
from policies.networks import NetworkConfig
from policies.registry import build_algorithm, network_config
from policies.replay_buffer import NStepAccumulator, ReplayBuffer, Transition, random_rotated_copies
from policies.sac import SAC, SACConfig
from robot_stack import config, provenance
from robot_stack.jobs.evaluation import evaluate, torch_policy
from robot_stack.specs import PolicySpec, mismatches
from robot_stack.symmetry import Group

AGENT_MODULES = ("actor", "critic", "critic_target")
TRAINING_KIND = "sac-training"
EVALS_CSV = "evals.csv"
CURVE_PNG = "learning_curve.png"
# Means over the updates since the previous eval, written beside each eval: whether the critic learns what the task
# is worth (q), how hard the BC term pulls (bc_loss) and the temperature.
UPDATE_STATS = ("q", "bc_loss", "alpha")
EVAL_FIELDS = ("step", "success_rate", "return", "seconds", *UPDATE_STATS)
PHASES = ("demos", "pretrain", "sac", "done")  # a run's phases in order; a resumed run starts at "sac"
PRETRAIN_REPORT_EVERY = 25  # BC pre-training updates between progress reports


class CheckpointError(config.ConfigError):
    """A checkpoint that cannot be resumed by this config; the message says what differs."""


@dataclass
class TrainConfig:
    task: str = "toy_reach"
    env: dict[str, Any] = field(default_factory=dict)  # options for sim.make_env / the toy env
    network: dict[str, Any] = field(default_factory=lambda: {"family": "relaxed", "group": "C8"})
    sac: SACConfig = field(default_factory=SACConfig)
    seed: int = 0
    total_steps: int = 5000  # environment steps, summed over the vector envs (expert steps not counted)
    num_envs: int = 1
    async_envs: bool = False  # gymnasium AsyncVectorEnv (one process per env) instead of SyncVectorEnv
    expert_episodes: int = 20  # scripted-expert episodes seeded into the buffer before training
    expert_noise: float = 0.0
    # "executed": store the actions the (noisy) expert executed; "clean": store the noise-free action it meant at each
    # state its noisy actions reach (DART: demonstrations of recovering, for the BC terms)
    expert_labels: str = "executed"
    expert_successes_only: bool = False  # keep only successful expert episodes (up to 3 x expert_episodes tries)
    random_steps: int = 0  # uniform random actions for the first steps
    learning_starts: int = 64  # buffer size before updates start
    updates_per_step: float = 1.0  # gradient updates per environment step
    buffer_capacity: int = 50000
    eval_every: int = 500
    eval_episodes: int = 10
    eval_at_start: bool = False  # one eval before the first env step (after BC pre-training): the curve's step 0
    checkpoint_every: int = 1000
    out_dir: str = "runs/{task}_{family}_s{seed}"
    resume: bool = True  # continue from out_dir's checkpoint when there is one
    export_onnx: bool = True
    device: str = "auto"
    progress: bool = True
    tensorboard: bool = True
    success_window: int = 20  # training episodes behind the live success rate

    def __post_init__(self) -> None:
        if self.total_steps < 1 or self.num_envs < 1:
            raise ValueError(f"total_steps and num_envs must be >= 1, got {self.total_steps}, {self.num_envs}")
        if self.eval_every < 1 or self.checkpoint_every < 1 or self.eval_episodes < 1:
            raise ValueError("eval_every, checkpoint_every and eval_episodes must be >= 1")
        if self.updates_per_step < 0:
            raise ValueError(f"updates_per_step must be >= 0, got {self.updates_per_step}")
        for key in ("family", "group"):
            if key not in self.network:
                raise ValueError(f"network.{key} is required (e.g. network.family=relaxed network.group=C8)")
        config.check_choice("expert_labels", self.expert_labels, ("executed", "clean"))
        sim.env_config(self.task, self.env)
        config.build(NetworkConfig, dict(self.network), "network")

    @property
    def family(self) -> str:
        return str(self.network["family"])

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir.format(task=self.task, family=self.family, seed=self.seed))


@dataclass
class TrainResult:
    out_dir: Path
    step: int
    evals: list[dict[str, float]]
    interrupted: bool = False
    onnx_path: Path | None = None

    @property
    def files(self) -> list[str]:
        """The run directory's files for a reader: eval table, curve, checkpoint and (if exported) the policy."""
        return [EVALS_CSV, CURVE_PNG, "checkpoint.pt", *([self.onnx_path.name] if self.onnx_path else [])]

    @property
    def final_success(self) -> float:
        return self.evals[-1]["success_rate"] if self.evals else float("nan")


@dataclass(frozen=True)
class TrainProgress:
    """Where a run stands, as ``Trainer`` reports it to its observers: at each phase change, every
    ``PRETRAIN_REPORT_EVERY`` BC pre-training updates, after each expert episode, env step batch and eval."""

    phase: str  # one of PHASES
    step: int  # environment steps of the run (over resumed sessions)
    total: int
    expert_steps: int
    bc_updates: int
    bc_total: int
    steps_per_s: float | None  # env steps per second of this session's SAC phase, updates and evals included
    episodes: int  # training episodes finished
    recent_success: float | None  # over the last ``recent_episodes`` training episodes
    recent_episodes: int
    last_eval: tuple[int, float] | None  # (step, success rate)


Observer = Callable[[TrainProgress], None]


def _index(obs: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    return {k: np.asarray(v[i]) for k, v in obs.items()}


# -- the job ------------------------------------------------------------------------------------------

class Trainer:
    """Owns envs, agent, buffer and bookkeeping; ``run()`` trains until ``total_steps``."""

    def __init__(self, cfg: TrainConfig, agent: SAC | None = None, progress: Observer | None = None) -> None:
        self.cfg = cfg
        self.dir = cfg.run_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.eval_env = sim.make_env(cfg.task, **cfg.env)
        self.spec = sim.policy_spec(self.eval_env, cfg.network["group"], cfg.family)
        self.agent = agent or new_agent(self.spec, cfg)
        self.group = Group.parse(self.spec.group)
        self.buffer = ReplayBuffer(cfg.buffer_capacity, self.spec.observation, self.spec.action.dim, cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.step = 0
        self.expert_steps = 0
        self.episodes = 0
        self.evals: list[dict[str, float]] = []
        self.recent: deque[float] = deque(maxlen=cfg.success_window)
        self.update_stats: dict[str, list[float]] = {k: [] for k in UPDATE_STATS}
        self.writer = None
        self.started = time.perf_counter()
        self.seconds_before = 0.0  # training time of earlier sessions of this run, from the checkpoint
        self.observers: list[Observer] = [progress] if progress else []
        self.phase = PHASES[0]
        self.bc_updates = 0
        self.sac_start: tuple[float, int] | None = None  # (time, step) when this session's SAC phase began

    @property
    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    # -- checkpoints ---------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.dir / "checkpoint.pt"

    def save_checkpoint(self) -> Path:
        """``checkpoint.pt`` in the one checkpoint format (``policies.checkpoint``), plus the buffer file it names."""
        agent = self.agent.state_dict()
        modules = {name: agent.pop(name) for name in AGENT_MODULES}
        # Each save writes its own buffer file before the checkpoint that names it, and removes older ones only
        # afterwards: a kill at any moment leaves a checkpoint.pt whose buffer file is complete and matches it.
        buffer_file = f"buffer-{self.step}-{time.time_ns()}.npz"  # unique even for two saves at one step
        self.buffer.save(self.dir / buffer_file)
        extra = {"kind": TRAINING_KIND, "agent": agent, "config": config.to_dict(self.cfg), "step": self.step,
                 "expert_steps": self.expert_steps, "episodes": self.episodes, "evals": self.evals,
                 "recent": list(self.recent), "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                 "buffer_size": len(self.buffer), "buffer_file": buffer_file, "seconds": self.seconds}
        write_checkpoint(self.checkpoint_path, self.spec, self.cfg.network, modules, extra)
        for old in self.dir.glob("buffer*.npz"):
            if old.name != buffer_file:
                old.unlink(missing_ok=True)
        return self.checkpoint_path

    def load_checkpoint(self, path: Path | None = None) -> None:
        path = Path(path or self.checkpoint_path)
        state = read_checkpoint(path)
        check_compatible(state, self.spec, self.cfg.network, path)
        self.agent.load_state_dict(state["agent"])
        buffer_file = state.get("buffer_file", "buffer.npz")
        self.buffer.load(path.parent / buffer_file)
        if len(self.buffer) != state["buffer_size"]:
            raise CheckpointError(f"{path}: {buffer_file} holds {len(self.buffer)} transitions, the checkpoint "
                                  f"expects {state['buffer_size']} (files from different saves?)")
        self.step, self.expert_steps, self.episodes = state["step"], state["expert_steps"], state["episodes"]
        self.evals = list(state["evals"])
        self.seconds_before = state.get("seconds", 0.0)
        self.recent.extend(state["recent"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])

    # -- data ----------------------------------------------------------------------------------------
    def store(self, tr: Transition) -> None:
        self.buffer.add(tr)
        sac = self.cfg.sac
        for copy in random_rotated_copies(tr, self.group, sac.rotated_copies, self.rng, sac.continuous_rotations):
            self.buffer.add(copy)

    def seed_expert_episodes(self) -> None:
        """``expert_episodes`` scripted-expert episodes into the buffer (with ``expert_successes_only``, successful
        ones only, trying at most three times as many)."""
        cfg = self.cfg
        env = sim.make_env(cfg.task, **cfg.env)
        expert = sim.make_expert(cfg.task, env, cfg.expert_noise, cfg.seed)
        kept, tries = 0, 3 * cfg.expert_episodes if cfg.expert_successes_only else cfg.expert_episodes
        self.report("demos")
        for ep in range(tries):
            if kept == cfg.expert_episodes:
                break
            transitions, success = self._expert_episode(env, expert, cfg.seed * 100_000 + 50_000 + ep)
            if success or not cfg.expert_successes_only:
                for tr in transitions:
                    self.store(tr)
                kept += 1
            self.report()
        env.close()

    def pretrain_actor(self) -> None:
        """``sac.bc_pretrain_updates`` behaviour-cloning steps of the actor on the demonstrations (a fresh run only)."""
        sac = self.cfg.sac
        if not sac.bc_pretrain_updates:
            return
        self.report("pretrain")
        for _ in range(sac.bc_pretrain_updates):
            loss = self.agent.pretrain_actor(self.buffer.sample(sac.batch_size, demo_fraction=1.0))
            self.bc_updates += 1
            if self.bc_updates % PRETRAIN_REPORT_EVERY == 0 or self.bc_updates == sac.bc_pretrain_updates:
                self.report()
        self._log({"train/bc_pretrain_loss": loss})

    def _expert_episode(self, env, expert, seed: int) -> tuple[list[Transition], bool]:
        nstep = NStepAccumulator(self.cfg.sac.n_step, self.cfg.sac.gamma)
        obs, _ = env.reset(seed=seed)
        expert.reset()
        out, done, info = [], False, {}
        while not done:
            action, clean = expert.act_and_label(obs, env)
            next_obs, reward, terminated, truncated, info = env.step(action)
            label = clean if self.cfg.expert_labels == "clean" else action
            for tr in nstep.push(obs, label, reward, next_obs, terminated, truncated):
                tr.expert = True
                out.append(tr)
            obs, done = next_obs, terminated or truncated
            self.expert_steps += 1
        return out, bool(info.get("success", False))

    def evaluate(self) -> dict[str, float]:
        policy = torch_policy(self.agent.actor, self.spec, self.agent.device)
        scores = evaluate(policy, self.eval_env, self.cfg.eval_episodes, self.cfg.seed)
        result = {"step": self.step, "success_rate": scores["success_rate"], "return": scores["mean_return"],
                  "seconds": round(self.seconds, 2)}
        for key, values in self.update_stats.items():
            if values:
                result[key] = round(float(np.mean(values)), 5)
            values.clear()
        self.evals.append(result)
        self._log({"eval/success_rate": result["success_rate"], "eval/return": result["return"]})
        self.write_eval_files()
        self.report()
        return result

    def write_eval_files(self) -> None:
        """evals.csv and learning_curve.png from the whole eval history: rewriting both keeps each eval once."""
        write_evals_csv(self.evals, self.dir / EVALS_CSV)
        label = f"{self.cfg.family} {self.spec.group}"
        plot_evals(self.evals, self.dir / CURVE_PNG, f"{self.cfg.task}  {label}  seed {self.cfg.seed}", label)

    # -- progress ------------------------------------------------------------------------------------
    def report(self, phase: str | None = None) -> None:
        """Tell the observers where the run stands, entering ``phase`` first when given."""
        self.phase = phase or self.phase
        if self.observers:
            progress = self.progress()
            for observer in self.observers:
                observer(progress)

    def progress(self) -> TrainProgress:
        last = self.evals[-1] if self.evals else None
        return TrainProgress(
            phase=self.phase, step=self.step, total=self.cfg.total_steps, expert_steps=self.expert_steps,
            bc_updates=self.bc_updates, bc_total=self.cfg.sac.bc_pretrain_updates, steps_per_s=self._steps_per_s(),
            episodes=self.episodes, recent_success=float(np.mean(self.recent)) if self.recent else None,
            recent_episodes=len(self.recent), last_eval=(int(last["step"]), last["success_rate"]) if last else None)

    def _steps_per_s(self) -> float | None:
        if self.sac_start is None or self.step == self.sac_start[1]:
            return None
        return (self.step - self.sac_start[1]) / (time.perf_counter() - self.sac_start[0])

    def _log(self, scalars: dict[str, float]) -> None:
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(key, value, self.step)

    # -- the loop ------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        if not self.cfg.progress:
            return self._run()
        with ProgressBars() as bars:
            self.observers.append(bars)
            try:
                return self._run()
            finally:
                self.observers.remove(bars)

    def _run(self) -> TrainResult:
        cfg = self.cfg
        if cfg.resume and self.checkpoint_path.exists():
            self.load_checkpoint()
        else:
            if cfg.expert_episodes > 0:
                self.seed_expert_episodes()
                self.pretrain_actor()
            if cfg.eval_at_start:
                self.evaluate()
        config.save(cfg, self.dir / "config.yaml")
        provenance.append_record(self.dir / "provenance.jsonl", provenance.record("train", step=self.step))
        self.write_eval_files()  # drops evals of a killed session that its checkpoint never saw
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.dir / "tb"))
        envs = sim.make_vector_env(cfg.task, cfg.num_envs, asynchronous=cfg.async_envs, **cfg.env)
        interrupted = False
        try:
            self._loop(envs)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            envs.close()
            self.save_checkpoint()
        if interrupted:
            raise KeyboardInterrupt
        if not self.evals or self.evals[-1]["step"] != self.step:
            self.evaluate()
            self.save_checkpoint()
        self.report("done")
        onnx_path = self.export() if cfg.export_onnx else None
        if self.writer is not None:
            self.writer.close()
        return TrainResult(self.dir, self.step, self.evals, False, onnx_path)

    def _loop(self, envs) -> None:
        cfg = self.cfg
        obs, _ = envs.reset(seed=cfg.seed * 1000 + self.step)
        nsteps = [NStepAccumulator(cfg.sac.n_step, cfg.sac.gamma) for _ in range(cfg.num_envs)]
        ep_return = np.zeros(cfg.num_envs)
        owed = 0.0
        self.sac_start = (time.perf_counter(), self.step)
        self.report("sac")
        while self.step < cfg.total_steps:
            obs, ep_return = self._collect(envs, obs, nsteps, ep_return)
            owed += cfg.updates_per_step * cfg.num_envs
            if len(self.buffer) >= cfg.learning_starts:
                owed = self._train(owed)
            if self.step // cfg.eval_every != (self.step - cfg.num_envs) // cfg.eval_every:
                self.evaluate()
            if self.step // cfg.checkpoint_every != (self.step - cfg.num_envs) // cfg.checkpoint_every:
                self.save_checkpoint()
            self.report()

    def _collect(self, envs, obs, nsteps, ep_return):
        cfg = self.cfg
        if self.step < cfg.random_steps:
            actions = self.rng.uniform(-1, 1, (cfg.num_envs, self.spec.action.dim)).astype(np.float32)
        else:
            actions = self.agent.act(obs["heightmap"], self.spec.observation.vector_of(obs, batched=True))
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)
        ep_return += rewards
        for i in range(cfg.num_envs):
            done = bool(terminated[i] or truncated[i])
            final = infos["final_obs"][i] if done else _index(next_obs, i)
            for tr in nsteps[i].push(_index(obs, i), actions[i], float(rewards[i]), final, bool(terminated[i]),
                                     bool(truncated[i])):
                self.store(tr)
            if done:
                success = bool(infos["final_info"]["success"][i])
                self.recent.append(float(success))
                self.episodes += 1
                self._log({"train/episode_return": float(ep_return[i]), "train/success": float(success)})
                ep_return[i] = 0.0
        self.step += cfg.num_envs
        return next_obs, ep_return

    def _train(self, owed: float) -> float:
        info: dict[str, float] = {}
        while owed >= 1.0:
            info = self.agent.update(self.buffer.sample(self.cfg.sac.batch_size, self.cfg.sac.demo_fraction))
            for key, values in self.update_stats.items():
                if key in info:
                    values.append(float(info[key]))
            owed -= 1.0
        if info and self.agent.updates % 100 < max(1, int(self.cfg.updates_per_step * self.cfg.num_envs)):
            self._log({f"train/{k}": v for k, v in info.items()})
        return owed

    def export(self) -> Path | None:
        try:
            from policies.export import export_actor
        except ImportError as exc:
            print(f"ONNX export skipped: policies.export is not available ({exc})")
            return None
        path = self.dir / "policy.onnx"
        summary = {"task": self.cfg.task, "steps": self.step,
                   "eval_success_rate": self.evals[-1]["success_rate"] if self.evals else math.nan}
        export_actor(self.agent.actor, self.spec, path, summary)
        return path


class ProgressBars:
    """A run's rich progress view, one line per phase (expert demos, BC pre-training, online SAC): count, rate,
    the success of the recent training episodes and the last eval. A ``Trainer`` observer; enter it to show it."""

    LABELS = {"demos": "expert demos (steps)", "pretrain": "BC pre-training (updates)",
              "sac": "online SAC (env steps)"}

    def __init__(self, console: Any = None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=16),
                                 MofNCompleteColumn(), _rate_column(), TextColumn("{task.fields[status]}"),
                                 TimeRemainingColumn(elapsed_when_finished=True), console=console)
        self.lines: dict[str, Any] = {}

    def __enter__(self) -> ProgressBars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, p: TrainProgress) -> None:
        if p.phase not in self.lines:  # a new phase: the earlier ones are over
            for task in self.progress.tasks:
                self.progress.update(task.id, total=task.completed)
        if p.phase not in self.LABELS:
            return
        total, done = {"demos": (None, p.expert_steps), "pretrain": (p.bc_total, p.bc_updates),
                       "sac": (p.total, min(p.step, p.total))}[p.phase]
        if p.phase not in self.lines:
            self.lines[p.phase] = self.progress.add_task(self.LABELS[p.phase], total=total, completed=done,
                                                         rate=None, status="")
        sac = p.phase == "sac"
        self.progress.update(self.lines[p.phase], completed=done, rate=p.steps_per_s if sac else None,
                             status=status_text(p) if sac else "")


def status_text(p: TrainProgress) -> str:
    recent = f"{p.recent_success:.0%} (last {p.recent_episodes})" if p.recent_success is not None else "-"
    last = f"{p.last_eval[1]:.0%} @{p.last_eval[0]}" if p.last_eval else "-"
    return f"success {recent}  eval {last}"


def _rate_column() -> Any:
    """Items per second: the trainer's own rate where it sends one (env steps/s of SAC), else rich's estimate."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.fields.get("rate") or task.finished_speed or task.speed
            return Text(f"{speed:5.1f}/s" if speed else "")

    return Rate()


def _replace_with(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` then rename over ``path``: a reader (or a kill) never sees a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_evals_csv(evals: list[dict[str, float]], path: Path) -> None:
    from robot_stack.tables import write_rows

    write_rows(path, evals, EVAL_FIELDS)  # evals of older runs lack seconds: left blank


def read_evals_csv(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as fh:
        return [{k: int(v) if k == "step" else float(v) for k, v in row.items() if v != ""}
                for row in csv.DictReader(fh)]


def plot_evals(evals: list[dict[str, float]], path: Path, title: str, label: str) -> None:
    """Eval success rate and return against environment steps, side by side."""
    from robot_stack.jobs.grid import draw_curves
    from robot_stack.plotting import pyplot

    plt = pyplot()
    steps = np.array([e["step"] for e in evals])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), squeeze=False)
    for ax, metric in zip(axes[0], ("success_rate", "return"), strict=True):
        values = np.array([e[metric] for e in evals], dtype=float)
        draw_curves(ax, {label: (steps, values, np.zeros_like(values))}, metric, metric.replace("_", " "), band=False)
    fig.suptitle(title)
    fig.tight_layout()
    _replace_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint as one mapping: spec and network (as dicts), ``agent`` (the SAC state with its modules)
    and the training state (config, step, evals, rng, buffer file, ...)."""
    ckpt = policies_checkpoint.read_checkpoint(path, CheckpointError, "training checkpoint")
    agent = ckpt.extra.get("agent")
    if agent is None or not all(name in ckpt.modules for name in AGENT_MODULES):
        raise CheckpointError(f"{path}: not a robot-stack training checkpoint (a {ckpt.format} file without the SAC "
                              "agent's state; an offline checkpoint starts a job with `robot-stack offline --init`)")
    if any(key.startswith("first.") for key in ckpt.modules["critic"]):
        raise CheckpointError(f"{path}: a training checkpoint of format 1 (its critic predates the shared twin "
                              "critic): "
                              "it still exports (`robot-stack export`), but cannot be resumed; use resume=false or "
                              "another out_dir")
    return {**ckpt.extra, "spec": ckpt.spec.to_dict(), "network": ckpt.network.to_dict(),
            "agent": {**agent, **ckpt.modules}}


def check_compatible(state: dict[str, Any], spec: PolicySpec, network: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose spec or network config differs from the job's, naming every difference."""
    job_network = network_config(spec, network).to_dict()
    problems = [f"spec {m}" for m in mismatches(state["spec"], spec.to_dict())]
    problems += [f"network {m}" for m in mismatches(state["network"], job_network)]
    if problems:
        raise CheckpointError(f"{path} does not match this config: " + "; ".join(problems)
                              + ". Use another out_dir or resume=false to start over.")


def new_agent(spec: PolicySpec, cfg: TrainConfig) -> SAC:
    torch.manual_seed(cfg.seed)
    return build_algorithm("sac", spec, cfg.network, cfg.sac, pick_device(cfg.device), cfg.seed)


def train(cfg: TrainConfig) -> TrainResult:
    started = time.perf_counter()
    device = pick_device(cfg.device)
    result = Trainer(cfg).run()
    # printed with or without the progress bar: a job logged to a file still ends with where its results are
    print(f"trained {result.step} steps on {device} in {time.perf_counter() - started:.0f} s; "
          f"final eval success {result.final_success:.0%}; run dir {result.out_dir}: {', '.join(result.files)}")
    return result
