"""The data jobs: inspect, validate, render and merge episode stores."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np


def info(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from robot_stack.recorder import EpisodeDataset

    ds = EpisodeDataset(args.path, cache=False)
    console = Console()
    head, stats = ds.header, ds.episode_stats()
    rate = stats["success_share"]
    console.print(f"[bold]{args.path}[/]: schema {head['schema_version']}, {stats['episodes']} episodes, "
                  f"{stats['steps']} steps, {stats['transitions']} transitions, success "
                  f"{'n/a' if rate is None else f'{rate:.0%}'}, mean return {stats['mean_return']:.2f}, "
                  f"compressor {head.get('compressor')}")
    console.print(f"observation {head['obs_spec']}  action {head['action_spec']}")
    if head.get("meta"):
        console.print(f"store metadata: {head['meta']}")
    arrays = Table(title="arrays")
    for col in ("key", "shape", "dtype", "chunks", "stored MB", "ratio"):
        arrays.add_column(col)
    for name, arr in sorted(ds.group["data"].arrays()):
        stored = _stored_bytes(Path(args.path) / "data" / name)
        raw = arr.nbytes
        arrays.add_row(name, str(arr.shape), str(arr.dtype), str(arr.chunks), f"{stored / 1e6:.2f}",
                       f"{raw / stored:.1f}x" if stored else "-")
    console.print(arrays)
    eps = Table(title="episodes (first 20)")
    for col in ("#", "steps", "success", "task", "policy", "seed"):
        eps.add_column(col)
    for i, m in enumerate(ds.state.infos[:20]):
        eps.add_row(str(i), str(m.get("length")), str(m.get("success")), str(m.get("task", "")),
                    f"{m.get('policy_id', '')} {m.get('policy_version', '')}".strip(), str(m.get("seed", "")))
    console.print(eps)
    return 0


def _stored_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def validate(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from robot_stack.recorder import store
    from robot_stack.recorder.validate import validate

    if args.repair:
        group, _ = store.open_group(args.path, "r+")
        for msg in store.repair(args.path, group):
            print(f"repaired: {msg}")
    with Progress(transient=True) as bar:
        task = bar.add_task("checking chunks", total=None)
        issues = validate(args.path, progress=lambda name: bar.update(task, description=f"checking {name}"))
    for issue in issues:
        print(f"{args.path}: {issue}")
    if not issues:
        print(f"{args.path}: ok")
    return 1 if issues else 0


def view(args: argparse.Namespace) -> int:
    import imageio.v3 as iio

    from robot_stack.recorder import EpisodeDataset

    if args.every < 1 or args.scale < 1 or args.fps <= 0:
        raise ValueError(f"--every and --scale must be >= 1 and --fps > 0, got {args.every}, {args.scale}, {args.fps}")
    out = Path(args.out or f"episode{args.episode}.gif")
    if out.suffix.lower() not in (".gif", ".mp4", ".png"):
        print(f"robot-stack data: --out must end in .gif, .mp4 or .png, got {out.name}", file=sys.stderr)
        return 2
    if out.suffix.lower() == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            print("robot-stack data: .mp4 needs the imageio-ffmpeg package; use .gif or .png", file=sys.stderr)
            return 2
    ep = EpisodeDataset(args.path, cache=False).episode(args.episode, extras=False)
    frames = [render_step(ep.obs["heightmap"][t], ep.action[t], float(ep.reward[t]), t, args.scale)
              for t in range(0, len(ep), args.every)]
    if out.suffix.lower() == ".png":
        iio.imwrite(out, np.concatenate(frames, axis=1))
    elif out.suffix.lower() == ".gif":
        iio.imwrite(out, np.stack(frames), duration=1000.0 / args.fps, loop=0)
    else:
        iio.imwrite(out, np.stack(frames), fps=args.fps)
    print(f"wrote {out} ({len(frames)} frames of episode {args.episode}, {len(ep)} steps)")
    return 0


def render_step(heightmap: np.ndarray, action: np.ndarray, reward: float, step: int, scale: int) -> np.ndarray:
    """An RGB frame: the heightmap (world +y up), the (dx, dy) arrow from the centre, a bar per action entry."""
    from matplotlib import colormaps

    hm = np.asarray(heightmap, dtype=np.float32)[0]
    top = float(hm.max()) or 1.0
    rgb = (colormaps["viridis"](np.clip(hm / top, 0, 1))[..., :3] * 255).astype(np.uint8)
    img = np.repeat(np.repeat(rgb[::-1], scale, axis=0), scale, axis=1)  # row 0 = +y at the top
    size = img.shape[0]
    c = (size - 1) / 2
    dx, dy = float(action[0]), float(action[1])
    for s in np.linspace(0.0, 1.0, 4 * size):  # the arrow shaft, red
        x, y = int(round(c + s * dx * c * 0.9)), int(round(c - s * dy * c * 0.9))
        img[max(0, y - 1):y + 2, max(0, x - 1):x + 2] = (230, 30, 30)
    bars = np.full((max(12, size // 8), size, 3), 255, np.uint8)
    width = size // len(action)
    for i, a in enumerate(np.clip(action, -1, 1)):  # one bar per action entry, centred at zero
        mid, h = bars.shape[0] // 2, int(round(a * (bars.shape[0] // 2 - 1)))
        lo, hi = sorted((mid, mid - h))
        bars[lo:hi + 1, i * width + 2:(i + 1) * width - 2] = (40, 90, 200) if i != 4 else (40, 160, 60)
    bars[:, :3] = (255, 200, 0) if reward > 0 else (200, 200, 200)  # reward marker
    del step
    return np.concatenate([img, bars], axis=0)


def merge(args: argparse.Namespace) -> int:
    from rich.progress import track

    from robot_stack.recorder import EpisodeDataset, store
    from robot_stack.specs import SpecError, mismatches

    if not args.sources:
        raise SpecError("data merge needs at least one source store: robot-stack data merge OUT SRC [SRC ...]")
    sources = [EpisodeDataset(p, cache=False) for p in args.sources]
    first = sources[0]
    for ds in sources[1:]:
        diffs = mismatches(first.header["obs_spec"], ds.header["obs_spec"]) + mismatches(
            first.header["action_spec"], ds.header["action_spec"])
        if diffs or set(ds.keys) != set(first.keys):
            raise SpecError(f"cannot merge {ds.path} into {first.path}: " + "; ".join(
                diffs or [f"arrays {sorted(ds.keys)} != {sorted(first.keys)}"]))
    out = Path(args.path)
    group, header = _merge_target(out, first)
    existing = set(dict(group["data"].arrays()))
    if existing and existing != set(first.keys):
        raise SpecError(f"{out} has arrays {sorted(existing)}, the sources have {sorted(first.keys)}")
    end = store.read_state(group).n_steps
    work = [(ds, i) for ds in sources for i in ds.episode_ids]
    for ds, i in track(work, description=f"merging into {out}"):
        ep = ds.episode(int(i))
        arrays = _episode_arrays(ep)
        store.append_steps(group, arrays, header)
        end += len(ep)
        store.commit(group, end, {**ep.meta, "merged_from": ds.path, "source_episode": int(i)})
    print(f"merged {len(work)} episodes from {len(sources)} stores into {out} ({end} steps)")
    return 0


def _merge_target(out: Path, first: Any):
    from robot_stack.recorder import store
    from robot_stack.specs import ActionSpec, ObservationSpec, SpecError, mismatches

    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        store.create(out, ObservationSpec.from_dict(first.header["obs_spec"]),
                     ActionSpec.from_dict(first.header["action_spec"]), first.header.get("meta", {}),
                     first.header.get("compressor"), first.header.get("chunk_bytes", store.DEFAULT_CHUNK_BYTES))
    group, header = store.open_group(out, "r+")
    diffs = mismatches(first.header["obs_spec"], header["obs_spec"]) + mismatches(
        first.header["action_spec"], header["action_spec"])
    if diffs:
        raise SpecError(f"{out} holds another spec: " + "; ".join(diffs))
    store.repair(out, group)
    return group, header


def _episode_arrays(ep: Any) -> dict[str, np.ndarray]:
    return {**ep.obs, "action": ep.action, "reward": ep.reward, "terminal": ep.terminal,
            "timestamp": ep.timestamp, **ep.extras}


ACTIONS = {"info": info, "validate": validate, "view": view, "merge": merge}
