"""Offline RL datasets of several sizes by one command, each with its quality stated.

``robot-stack collect collect_offline task=T`` (``sizes`` set) records one store per size, each holding exactly
that many transitions as ``robot-stack offline`` counts them (whole episodes, the last one cut short to land on the
size). Episode i of every store is reset with ``seed + i`` and acted by the scripted expert with Gaussian action
noise ``noise[i % len(noise)]``, the noise drawn from a generator seeded with ``seed``: a smaller store holds the
first episodes of a larger one. The quality of each store (transitions, episodes, success share, mean return, and
per noise level the episodes and successes) is printed as a table and written beside the stores as
``<task>_datasets.json`` and ``<task>_datasets.md``. ``store_quality`` describes any store the recorder wrote, a
real robot's included.

A store already at a size's path is kept if it holds exactly that size and was recorded with the same settings
(``collect.recorded_settings``: task, the env as it resolves, policy, label, noise, seed, max_steps); one of the
same settings that was to hold that size but holds fewer, as a stopped run leaves it, is recorded again; any other is
refused, naming the difference.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

from robot_stack import config, provenance
from robot_stack.jobs.collect import CollectJob, collect, recorded_settings

MISSING = object()  # a setting the store's metadata lacks (recorded before it was written there)


def store_quality(path: str | Path) -> dict[str, Any]:
    """What an offline learner gets from a store: ``EpisodeDataset.episode_stats`` (transitions as it counts them,
    episodes, success share, mean return and length per episode), the episodes cut short, and per noise level
    (when the episodes record one) the episodes and successes."""
    from robot_stack.recorder import EpisodeDataset

    ds = EpisodeDataset(path, cache=False)
    infos = [ds.episode_meta(int(i)) for i in ds.episode_ids]
    row = {"store": str(path), **ds.episode_stats(), "cut_episodes": sum(bool(m.get("cut")) for m in infos)}
    if infos and all("noise" in m for m in infos):
        row["by_noise"] = _by_noise(infos)
    return row


def _by_noise(infos: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for level in sorted({float(m["noise"]) for m in infos}):
        chosen = [m for m in infos if float(m["noise"]) == level]
        out[f"{level:g}"] = {"episodes": len(chosen), "successes": sum(bool(m.get("success")) for m in chosen)}
    return out


def check_sizes(job: CollectJob) -> None:
    """The store of every size must get its own path: ``out`` names ``{transitions}`` when there are several."""
    if len(job.sizes) > 1 and "{transitions}" not in job.out:
        raise config.ConfigError(f"sizes {job.sizes} need one store each: out ({job.out!r}) must contain "
                                 f"{{transitions}}, e.g. runs/datasets/{{task}}_{{transitions}}.zarr")


def make_datasets(job: CollectJob) -> dict[str, Any]:
    """One store per size in ``job.sizes`` (an existing store of exactly that size and these settings is kept, a
    smaller one recorded again), described; returns the rows and the paths of the quality files."""
    check_sizes(job)
    rows = []
    for size in job.sizes:
        out = job.out.format(task=job.task, transitions=size)
        t0 = time.perf_counter()
        made = _make_store(job, size, out)
        rows.append({"size": size, **store_quality(out), "made": made,
                     "wall_s": round(time.perf_counter() - t0, 1)})
    return {"rows": rows, "files": write_quality(job, rows)}


def _make_store(job: CollectJob, size: int, out: str) -> str:
    """Record the store of ``size`` at ``out`` unless one of that size and this job's settings is there; one of the
    same settings that was to hold ``size`` but holds fewer (a stopped run's) is recorded again. Returns what was
    done, for the table."""
    from robot_stack.recorder import store

    made = "recorded"
    if store.is_store(out):
        _check_same_settings(job, out)
        have, target = _transitions_in(out)
        if have == size:
            return "kept"
        if have > size or target != size:
            raise config.ConfigError(f"{out} already holds a store of {have} transitions, not {size}: delete it or "
                                     f"give another out")
        shutil.rmtree(out)
        made = f"re-recorded (a stopped run left {have})"
    collect(dataclasses.replace(job, sizes=[], transitions=size, out=out))
    return made


def _transitions_in(out: str) -> tuple[int, int | None]:
    """The transitions a store holds, and those its run was to record (None: not recorded by collect)."""
    from robot_stack.recorder import EpisodeDataset

    ds = EpisodeDataset(out, cache=False)
    return ds.episode_stats()["transitions"], ds.meta.get("target_transitions")


def _check_same_settings(job: CollectJob, out: str) -> None:
    """A store is kept (or completed) only if it was recorded with this job's settings (``recorded_settings``)."""
    from robot_stack.recorder import EpisodeDataset

    meta = EpisodeDataset(out, cache=False).meta
    diffs = [_difference(key, meta.get(key, MISSING), want) for key, want in recorded_settings(job).items()
             if meta.get(key, MISSING) != want]
    if diffs:
        raise config.ConfigError(f"{out} already holds a store recorded with other settings: {'; '.join(diffs)}; "
                                 f"delete it or give another out")


def _difference(key: str, had: Any, want: Any) -> str:
    if had is MISSING:
        return f"{key} not recorded (an older store; here {want!r})"
    if isinstance(had, dict) and isinstance(want, dict):
        return "; ".join(f"{key}.{k} {had.get(k)!r} (here {want.get(k)!r})" for k in sorted(set(had) | set(want))
                         if had.get(k) != want.get(k))
    return f"{key} {had!r} (here {want!r})"


def write_quality(job: CollectJob, rows: list[dict[str, Any]]) -> dict[str, str]:
    """``<task>_datasets.json`` (the rows, the collect config, provenance) and ``.md`` beside the first store; rows
    an earlier run wrote there for other stores stay."""
    folder = Path(rows[0]["store"]).parent
    paths = {"json": folder / f"{job.task}_datasets.json", "md": folder / f"{job.task}_datasets.md"}
    rows = _merged(paths["json"], rows)
    record = {"task": job.task, "collect": config.to_dict(job), "stores": rows,
              "provenance": provenance.record("collect")}
    paths["json"].write_text(json.dumps(record, indent=2, default=str) + "\n")
    paths["md"].write_text(quality_markdown(job, rows))
    return {k: str(v) for k, v in paths.items()}


def _merged(path: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of an earlier run's file for other stores, then these; by size."""
    earlier = json.loads(path.read_text())["stores"] if path.is_file() else []
    mine = {r["store"] for r in rows}
    return sorted([r for r in earlier if r["store"] not in mine] + rows, key=lambda r: r["transitions"])


def quality_markdown(job: CollectJob, rows: list[dict[str, Any]]) -> str:
    view = job.sim.get("view", "default")
    size = job.sim.get("heightmap_size", "default")
    head = (f"# {job.task} offline datasets\n\nScripted expert, episode i with action noise std noise[i % "
            f"{len(job.noise) if isinstance(job.noise, list) else 1}] of {job.noise}; view {view}, heightmap "
            f"{size} px; seed {job.seed}.\n\n")
    return head + quality_table(rows)


def quality_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per store."""
    lines = ["| store | transitions | episodes | success share | mean return | mean length | per noise std: "
             "successes / episodes | made | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mix = ", ".join(f"{k}: {v['successes']}/{v['episodes']}" for k, v in r.get("by_noise", {}).items()) or "-"
        share = "n/a" if r["success_share"] is None else f"{r['success_share']:.2f}"
        lines.append(f"| {r['store']} | {r['transitions']} | {r['episodes']} ({r['cut_episodes']} cut) | "
                     f"{share} | {r['mean_return']:.2f} | {r['mean_length']:.1f} | {mix} | "
                     f"{r.get('made', '-')} | {r.get('wall_s', '-')} |")
    return "\n".join(lines) + "\n"
