"""``robot-stack bench training``: the training loop of each task's default config, and its issue-19 target.

For every task with a launch file (``launch/train_<task>.yaml``: push, lift, stack, door; ``tasks=push,lift`` picks),
its config as written but one env in this process (``num_envs=1``, no subprocesses) and one torch thread:

* ``update_ms.<task>``: one SAC update (buffer sample at the config's demo share, critic, actor, temperature, soft
  update) on transitions this loop stored, about half of them flagged expert so the BC / Q-filter terms run;
* ``env_steps_per_s.<task>``: env stepping with the actor choosing and storing (n-step + rotated copies), no updates;
* ``loop_env_steps_per_s.<task>``: the whole loop (``Trainer._collect`` + ``Trainer._train`` at the config's
  ``updates_per_step``), what a run sees between evals;
* ``projected_run_s.<task>``: a whole run from those rates: (training + expert + eval env steps) / env rate + updates
  x update time + BC pre-training updates x their time. Expert steps are ``expert_episodes x horizon`` (every try a
  success), eval steps ``evals x eval_episodes x horizon`` (no episode ends early): both bounds, one each way.

Baseline in the same run (DESIGN.md §7): the push update of today's default before issue 19 (workspace view 64 px,
one channel, relaxed C4, widths 2-4-8-8-8, global-pool end, batch 32, plain BC term: ``launch/sweep_push_cpu.yaml``
on the old ``train_push``), its calls interleaved with the new default's: ``update_time_ratio.push_new_vs_today``.
Target (issue 19, Accept "Speed"): a 5k-step push run, updates included, within 20 minutes on one core:
``projected_run_s.push <= 1200``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from robot_stack.benchmarks import BenchReport
from robot_stack.provenance import load_average

TASKS = ("push", "lift", "stack", "door")
LAUNCH = Path(__file__).resolve().parents[2] / "launch"
# The push default before issue 19: launch/train_push_v1.yaml with launch/sweep_push_cpu.yaml's overrides.
TODAY_PUSH = ("train_push_v1.yaml", ["network.group=C4", "sac.batch_size=32", "sac.gamma=0.95", "sac.bc_weight=1.0",
                                     "sac.rotated_copies=0", "updates_per_step=0.3"])
BENCH_OVERRIDES = ["num_envs=1", "async_envs=false", "tensorboard=false", "progress=false", "export_onnx=false",
                   "resume=false"]


def _options(options: list[str]) -> dict[str, str]:
    out = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or key != "tasks":
            raise ValueError(f"bench training: unknown option {item!r}; valid: tasks=push,lift")
        out[key] = value
    return out


class _Loop:
    """A ``Trainer`` for one launch file and its env, stepped like ``Trainer._loop`` without evals or checkpoints."""

    def __init__(self, launch: Path, overrides: list[str], out_dir: str) -> None:
        import sim
        from policies.replay_buffer import NStepAccumulator
        from robot_stack import config
        from robot_stack.jobs.train import TrainConfig, Trainer

        self.cfg = config.load(TrainConfig, launch, [*overrides, *BENCH_OVERRIDES, f"out_dir={out_dir}"])
        self.trainer = Trainer(self.cfg)
        self.envs = sim.make_vector_env(self.cfg.task, 1, asynchronous=False, **self.cfg.env)
        self.obs, _ = self.envs.reset(seed=0)
        self.nsteps = [NStepAccumulator(self.cfg.sac.n_step, self.cfg.sac.gamma)]
        self.ret = np.zeros(1)
        self.owed = 0.0  # updates due, as in Trainer._loop
        self.horizon = int(self.trainer.eval_env.unwrapped.horizon)

    def collect(self, steps: int) -> None:
        for _ in range(steps):
            self.obs, self.ret = self.trainer._collect(self.envs, self.obs, self.nsteps, self.ret)

    def flag_experts(self) -> None:
        """About half the stored transitions marked expert, so demo share, BC term and Q-filter run as in a run."""
        buf = self.trainer.buffer
        buf.expert[:len(buf)] = np.arange(len(buf)) % 2 == 0

    def update(self) -> None:
        sac = self.cfg.sac
        self.trainer.agent.update(self.trainer.buffer.sample(sac.batch_size, sac.demo_fraction))

    def pretrain(self) -> None:
        sac = self.cfg.sac
        self.trainer.agent.pretrain_actor(self.trainer.buffer.sample(sac.batch_size, demo_fraction=1.0))

    def loop(self, steps: int) -> None:
        for _ in range(steps):
            self.obs, self.ret = self.trainer._collect(self.envs, self.obs, self.nsteps, self.ret)
            self.owed = self.trainer._train(self.owed + self.cfg.updates_per_step)

    def projected_run_s(self, env_rate: float, update_s: float, pretrain_s: float) -> float:
        cfg = self.cfg
        evals = -(-cfg.total_steps // cfg.eval_every)
        env_steps = cfg.total_steps + cfg.expert_episodes * self.horizon + evals * cfg.eval_episodes * self.horizon
        return env_steps / env_rate + cfg.total_steps * cfg.updates_per_step * update_s \
            + cfg.sac.bc_pretrain_updates * pretrain_s

    def close(self) -> None:
        self.envs.close()
        self.trainer.eval_env.close()


def _seconds(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return time.perf_counter() - start


def _interleaved_update_s(loops: list[_Loop], calls: int) -> list[float]:
    """Seconds per update of each loop's agent, their calls alternated (the median of per-call times)."""
    times: list[list[float]] = [[] for _ in loops]
    for i in range(calls):
        order = range(len(loops)) if i % 2 == 0 else reversed(range(len(loops)))
        for j in order:
            times[j].append(_seconds(loops[j].update, 1))
    return [float(np.median(t)) for t in times]


def run(quick: bool, options: list[str]) -> BenchReport:
    import torch

    opts = _options(options)
    tasks = tuple(opts["tasks"].split(",")) if "tasks" in opts else TASKS
    tasks = tuple(t for t in tasks if (LAUNCH / f"train_{t}.yaml").exists())
    steps, updates, pretrains = (12, 6, 4) if quick else (150, 40, 30)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    report = BenchReport("training")
    report.notes.append(f"CPU, one torch thread (was {threads}), one env in-process; per task {steps} env steps, "
                        f"{updates} updates, {steps} loop steps; tasks with a launch file: {', '.join(tasks)}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for task in tasks:
                loops = [_Loop(LAUNCH / f"train_{task}.yaml", [], f"{tmp}/{task}")]
                if task == "push":
                    loops.append(_Loop(LAUNCH / TODAY_PUSH[0], TODAY_PUSH[1], f"{tmp}/push_today"))
                for loop in loops:
                    loop.collect(max(8, loop.cfg.sac.batch_size // 2))  # enough transitions for a batch
                    loop.flag_experts()
                    loop.update()  # warm-up
                main = loops[0]
                env_rate = steps / _seconds(lambda m=main: m.collect(1), steps)
                update_s = _interleaved_update_s(loops, updates)
                pretrain_s = _seconds(main.pretrain, pretrains) / pretrains if main.cfg.sac.bc_pretrain_updates else 0.0
                loop_rate = steps / _seconds(lambda m=main: m.loop(1), steps)
                report.add(f"update_ms.{task}", 1e3 * update_s[0], "ms")
                report.add(f"env_steps_per_s.{task}", env_rate, "1/s")
                report.add(f"loop_env_steps_per_s.{task}", loop_rate, "1/s")
                if pretrain_s:
                    report.add(f"bc_pretrain_update_ms.{task}", 1e3 * pretrain_s, "ms")
                report.add(f"projected_run_s.{task}", main.projected_run_s(env_rate, update_s[0], pretrain_s), "s")
                cfg = main.cfg
                report.notes.append(
                    f"{task}: {cfg.total_steps} steps at {cfg.updates_per_step:g} updates/step, "
                    f"{cfg.sac.bc_pretrain_updates} BC pre-training updates, {cfg.expert_episodes} expert episodes, "
                    f"{-(-cfg.total_steps // cfg.eval_every)} evals x {cfg.eval_episodes} episodes, horizon "
                    f"{main.horizon}; view {cfg.env.get('view', 'workspace')} {cfg.env.get('heightmap_size', 64)} px, "
                    f"{cfg.network['family']} {cfg.network['group']} end {cfg.network.get('end', 'pool')}, batch "
                    f"{cfg.sac.batch_size}; load average after it {load_average()}")
                if task == "push":
                    report.add("update_ms.push_today_default", 1e3 * update_s[1], "ms")
                    report.add("update_time_ratio.push_new_vs_today", update_s[0] / update_s[1], "x")
                for loop in loops:
                    loop.close()
    finally:
        torch.set_num_threads(threads)
    if "push" in tasks:
        report.target("projected_run_s.push", "<=", 1200.0)
    report.notes.append("issue 19 target: a 5k-step push run, updates included, within 20 minutes on one core "
                        "(projected_run_s.push <= 1200); update_time_ratio > 1 = the new push default's update is "
                        "slower than today's (the speed-ups of this commit apply to both)")
    return report
