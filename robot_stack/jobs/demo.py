"""The demo job: the whole stack on its embedded defaults, in sim, on a laptop.

collect expert episodes -> train a relaxed-equivariant policy -> export ONNX -> serve it -> run the sim robot through
the server with the recorder on -> fine-tune offline on the recorded episodes -> report (table + PNGs)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sim
from policies.networks import FAMILIES
from robot_stack import config
from robot_stack.plotting import pyplot
from robot_stack.runtime.control import LoopConfig
from robot_stack.symmetry import Group, GroupError


@dataclass
class DemoConfig:
    task: str = "reach"
    heightmap_size: int = 64
    family: str = "relaxed"
    group: str = "C4"
    expert_episodes: int = 30
    expert_noise: float = 0.2
    train_steps: int = 800
    finetune_steps: int = 300
    batch_size: int = 32
    eval_episodes: int = 20
    robot_episodes: int = 10
    rate_hz: float = 10.0
    seed: int = 0
    out: str = ""  # default runs/demo-<time>
    step_budget_s: float = 180.0  # a step that takes longer than this is reported as running long

    def __post_init__(self) -> None:
        config.check_choice("task", self.task, sim.TASKS)
        config.check_choice("family", self.family, FAMILIES)
        try:
            Group.parse(self.group)
        except GroupError as exc:
            raise config.ConfigError(f"group: {exc}") from exc
        for key in COUNTS:
            if getattr(self, key) < 1:
                raise config.ConfigError(f"{key}: must be at least 1, got {getattr(self, key)}")
        LoopConfig(rate_hz=self.rate_hz)


COUNTS = ("heightmap_size", "expert_episodes", "train_steps", "finetune_steps", "batch_size", "eval_episodes",
          "robot_episodes")


QUICK = {"expert_episodes": 12, "train_steps": 250, "finetune_steps": 60, "eval_episodes": 8,
         "robot_episodes": 3, "rate_hz": 20.0, "batch_size": 32}


@dataclass
class Demo:
    cfg: DemoConfig
    out: Path = field(init=False)
    timings: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out = Path(self.cfg.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
        self.out.mkdir(parents=True, exist_ok=True)

    def run(self) -> dict[str, Any]:
        from rich.console import Console

        self.console = Console()
        self.console.rule(f"robot-stack demo -> {self.out}")
        t0 = time.perf_counter()
        self._step("1/6 collect expert episodes", self.collect)
        self._step("2/6 train a relaxed-equivariant policy (offline BC)", self.train)
        self._step("3/6 export to ONNX and check the package", self.export)
        self._step("4/6 serve it and run the sim robot through the server, recording", self.deploy)
        self._step("5/6 fine-tune offline with IQL on the recorded episodes", self.finetune)
        self._step("6/6 report", self.write_report)
        self.report["total_seconds"] = time.perf_counter() - t0
        self._save_json()
        self.console.print(f"[bold]demo finished in {self.report['total_seconds']:.0f} s; report: "
                           f"{self.out / 'report.md'}[/]")
        return self.report

    def _step(self, title: str, fn) -> None:
        self.console.rule(title)
        t0 = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
        self.timings[title] = seconds
        if seconds > self.cfg.step_budget_s:
            self.console.print(f"[yellow]note: '{title}' ran long: {seconds:.0f} s (budget "
                               f"{self.cfg.step_budget_s:.0f} s) - a loaded or slow machine?[/]")

    # ------------------------------------------------------------------ steps

    def sim_cfg(self) -> dict[str, Any]:
        return {"heightmap_size": self.cfg.heightmap_size}

    def collect(self) -> None:
        from robot_stack.jobs.collect import CollectJob, collect
        from robot_stack.jobs.evaluation import evaluate, random_policy

        job = CollectJob(task=self.cfg.task, out=str(self.out / "expert.zarr"), episodes=self.cfg.expert_episodes,
                         noise=self.cfg.expert_noise, seed=self.cfg.seed, sim=self.sim_cfg())
        self.report["expert"] = collect(job)
        env = sim.make_env(self.cfg.task, **self.sim_cfg())
        self.report["random"] = evaluate(random_policy(env, self.cfg.seed), env, self.cfg.eval_episodes,
                                         self.cfg.seed)
        env.close()
        self.console.print(f"expert success {self.report['expert']['success_rate']:.0%} over "
                           f"{self.report['expert']['committed']} episodes; random policy "
                           f"{self.report['random']['success_rate']:.0%}")

    def network(self) -> dict[str, Any]:
        return {"family": self.cfg.family, "group": self.cfg.group}

    def offline_job(self, algo: str, steps: int, datasets: list[str], name: str, init: str | None = None):
        from robot_stack.jobs.offline import OfflineJob

        return OfflineJob(task=self.cfg.task, env=self.sim_cfg(), algo=algo, network=self.network(),
                          iql={"actor_lr": 3e-4, "critic_lr": 3e-4, "value_lr": 3e-4}, bc={"lr": 1e-3},
                          datasets=datasets, init=init, steps=steps, batch_size=self.cfg.batch_size,
                          seed=self.cfg.seed, eval_episodes=self.cfg.eval_episodes, out_dir=str(self.out), name=name,
                          log_every=max(10, steps // 20))

    def train(self) -> None:
        from robot_stack.jobs.offline import run_job

        summary = run_job(self.offline_job("bc", self.cfg.train_steps, [str(self.out / "expert.zarr")], "train_bc"))
        self.report["train"] = _slim(summary)
        self.console.print(f"trained policy: success {summary['eval']['success_rate']:.0%} in sim "
                           f"({summary['train_seconds']:.0f} s of training)")

    def export(self) -> None:
        from robot_stack.runtime import load_policy_package

        package = self.out / "train_bc" / "policy.onnx"
        policy = load_policy_package(str(package))
        self.report["package"] = {"path": str(package), "bytes": package.stat().st_size,
                                  "family": policy.spec.family, "group": policy.spec.group}
        self.report["diagnostics"] = self.diagnostics()
        self.console.print(f"package {package} ({package.stat().st_size / 1024:.0f} KiB, {policy.spec.family} "
                           f"{policy.spec.group}); equivariance error "
                           f"{self.report['diagnostics']['equivariance_error']:.2e}")

    def diagnostics(self) -> dict[str, Any]:
        import numpy as np
        import torch

        from policies.checkpoint import load_actor
        from policies.networks.diagnostics import equivariance_error, plot_relaxed_weights, relaxed_weights_report
        from robot_stack.recorder import EpisodeDataset

        actor = load_actor(self.out / "train_bc" / "checkpoint.pt")[0]
        ds = EpisodeDataset(str(self.out / "expert.zarr"))
        obs = ds.transitions()["obs"]
        pick = np.random.default_rng(self.cfg.seed).choice(len(obs["heightmap"]), size=16)
        hm = torch.as_tensor(np.asarray(obs["heightmap"])[pick], dtype=torch.float32)
        vec = torch.as_tensor(np.asarray(obs["gripper"])[pick], dtype=torch.float32)
        err = equivariance_error(actor, hm, vec)
        rows = relaxed_weights_report(actor)
        png = None
        if any("weights" in r for r in rows):
            png = str(plot_relaxed_weights(actor, self.out / "relaxed_weights.png", "demo actor"))
        return {"equivariance_error": err["network"], "per_element": err["per_element"],
                "relaxed_layers": [{k: r[k] for k in ("layer", "type", "spread") if k in r} for r in rows],
                "relaxed_weights_png": png}

    def deploy(self) -> None:
        from robot_stack.jobs.run import RunConfig, run_episodes

        cfg = config.build(RunConfig, {
            "policy": {"package": str(self.out / "train_bc" / "policy.onnx"), "spawn_server": True},
            "arm": {"kind": "sim", "task": self.cfg.task, "seed": self.cfg.seed + 20_000, "sim": self.sim_cfg()},
            "loop": {"rate_hz": self.cfg.rate_hz, "episodes": self.cfg.robot_episodes, "max_steps": 25},
            "record": {"enabled": True, "path": str(self.out / "robot.zarr")}})
        # the loop's and the server's lines are plain text: "[...]" in them is not rich markup
        results = run_episodes(cfg, log=lambda line: self.console.print(line, markup=False, highlight=False))
        latencies = [ms for r in results for ms in r.latency.recent]
        self.report["robot"] = {
            "episodes": len(results), "success_rate": _mean([r.success for r in results]),
            "missed_deadlines": sum(r.missed_deadlines for r in results), "held": sum(r.held for r in results),
            "latency_ms": _percentiles(latencies), "latency_samples": latencies}
        self.validate_recording()

    def validate_recording(self) -> None:
        from robot_stack.recorder import EpisodeDataset
        from robot_stack.recorder.validate import validate

        problems = validate(str(self.out / "robot.zarr"))
        self.report["robot"]["recorded_episodes"] = len(EpisodeDataset(str(self.out / "robot.zarr")))
        self.report["robot"]["validate_problems"] = [str(p) for p in problems]

    def finetune(self) -> None:
        from robot_stack.jobs.offline import run_job

        datasets = [str(self.out / "expert.zarr"), str(self.out / "robot.zarr")]
        summary = run_job(self.offline_job("iql", self.cfg.finetune_steps, datasets, "finetune_iql",
                                           init=str(self.out / "train_bc" / "checkpoint.pt")))
        self.report["finetune"] = _slim(summary)

    # ------------------------------------------------------------------ report

    def write_report(self) -> None:
        self.report["before"] = self.report["train"]["eval"]
        self.report["after"] = self.report["finetune"]["eval"]
        self.report["timings_s"] = dict(self.timings)
        self.report["config"] = config.to_dict(self.cfg)
        pngs = {"learning_curve": self.plot_learning_curves(), "latency": self.plot_latency(),
                "episode_strip": self.episode_strip()}
        if self.report["diagnostics"].get("relaxed_weights_png"):
            pngs["relaxed_weights"] = self.report["diagnostics"]["relaxed_weights_png"]
        self.report["pngs"] = pngs
        table = self.table_rows()
        self.print_table(table)
        (self.out / "report.md").write_text(self.markdown(table, pngs))

    def table_rows(self) -> list[tuple[str, str]]:
        r = self.report
        lat = r["robot"]["latency_ms"]
        rows = [("random policy success (sim eval)", _pct(r["random"]["success_rate"])),
                ("expert success (collection)", _pct(r["expert"]["success_rate"])),
                ("trained policy success, before fine-tuning (sim eval)", _pct(r["before"]["success_rate"])),
                ("served policy success on the sim robot (through the server)", _pct(r["robot"]["success_rate"])),
                ("after IQL fine-tuning (sim eval)", _pct(r["after"]["success_rate"])),
                ("policy round trip p50 / p99 (ms)", f"{lat['p50']:.2f} / {lat['p99']:.2f}"),
                ("missed control deadlines", str(r["robot"]["missed_deadlines"])),
                ("recorded robot episodes (validate problems)",
                 f"{r['robot']['recorded_episodes']} ({len(r['robot']['validate_problems'])})"),
                ("actor equivariance error (C4, held-out obs)", f"{r['diagnostics']['equivariance_error']:.2e}")]
        for layer in r["diagnostics"]["relaxed_layers"]:
            rows.append((f"relaxed layer {layer['layer']} ({layer['type']}) weight spread",
                         f"{layer.get('spread', float('nan')):.3g}"))
        return rows

    def print_table(self, rows: list[tuple[str, str]]) -> None:
        from rich.table import Table

        table = Table(title="robot-stack demo report")
        table.add_column("what")
        table.add_column("measured", justify="right")
        for name, value in rows:
            table.add_row(name, value)
        self.console.print(table)

    def markdown(self, rows: list[tuple[str, str]], pngs: dict[str, str]) -> str:
        lines = ["# robot-stack demo report", "",
                 f"Task `{self.cfg.task}`, {self.cfg.family} {self.cfg.group}, {self.cfg.heightmap_size} px; "
                 f"every figure measured in this run ({time.strftime('%Y-%m-%d %H:%M')}).", "",
                 "| what | measured |", "|---|---|"]
        lines += [f"| {a} | {b} |" for a, b in rows]
        lines += ["", "| step | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in self.timings.items()]
        lines += [""] + [f"![{name}]({Path(p).name})" for name, p in pngs.items() if p]
        return "\n".join(lines) + "\n"

    def plot_learning_curves(self) -> str:
        plt = pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for ax, key, title in ((axes[0], "train", "BC training"), (axes[1], "finetune", "IQL fine-tuning")):
            history = self.report[key]["history"]
            steps = [h["step"] for h in history]
            for name in history[0] if history else []:
                if name != "step" and "loss" in name:
                    ax.plot(steps, [h[name] for h in history], label=name)
            ax.set_title(f"{title}: eval success {_pct(self.report[key]['eval']['success_rate'])}")
            ax.set_xlabel("gradient step")
            ax.legend(fontsize=7)
        return _save(fig, self.out / "learning_curve.png")

    def plot_latency(self) -> str:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5, 3.2))
        samples = self.report["robot"]["latency_samples"]
        ax.hist(samples, bins=40, color="tab:blue")
        lat = self.report["robot"]["latency_ms"]
        ax.set_title(f"policy round trip over loopback: p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms")
        ax.set_xlabel("ms")
        ax.set_ylabel("control periods")
        return _save(fig, self.out / "latency_histogram.png")

    def episode_strip(self) -> str:
        import imageio.v3 as iio
        import numpy as np

        from robot_stack.jobs.data import render_step
        from robot_stack.recorder import EpisodeDataset

        ep = EpisodeDataset(str(self.out / "robot.zarr")).episode(0)
        hms, actions, rewards = ep.obs["heightmap"], ep.action, ep.reward
        picks = np.linspace(0, len(actions) - 1, num=min(8, len(actions))).astype(int)
        frames = [render_step(hms[i], actions[i], float(rewards[i]), int(i), 3) for i in picks]
        path = self.out / "episode_strip.png"
        iio.imwrite(path, np.concatenate(frames, axis=1))
        return str(path)

    def _save_json(self) -> None:
        data = dict(self.report)
        data["robot"] = {k: v for k, v in data["robot"].items() if k != "latency_samples"}
        with open(self.out / "report.json", "w") as fh:
            json.dump(data, fh, indent=2, default=str)


def _slim(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in ("out_dir", "eval", "train_seconds", "transitions", "history")}


def _mean(values: list) -> float | None:
    return float(sum(values) / len(values)) if values else None


def _percentiles(samples: list[float]) -> dict[str, float]:
    import numpy as np

    if not samples:
        return {"p50": float("nan"), "p99": float("nan")}
    return {"p50": float(np.percentile(samples, 50)), "p99": float(np.percentile(samples, 99))}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return str(path)
