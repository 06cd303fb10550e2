"""The per-task pictures of docs/sim.md: the scene, the top-down depth frame and the heightmap the policy sees.

    python -m sim.figures [--out docs/img] [--steps 8] [TASK ...]

Each task is reset with seed 0 and its scripted expert runs ``--steps`` control steps first, so the gripper is
in view near the objects.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mujoco
import numpy as np

import sim

SCENE_CAMERA = "frontview"  # one of robosuite's fixed scene cameras


def scene_rgb(env, width: int = 320, height: int = 240) -> np.ndarray:
    renderer = mujoco.Renderer(env._model, height, width)
    try:
        renderer.update_scene(env._data, camera=SCENE_CAMERA)
        return renderer.render()
    finally:
        renderer.close()


def task_figure(task: str, out: Path, steps: int) -> Path:
    from robot_stack.plotting import pyplot

    plt = pyplot()

    env = sim.make_env(task, heightmap_size=64, camera="gl")
    obs, _ = env.reset(seed=0)
    expert = sim.make_expert(task, env, noise=0.0, seed=0)
    for _ in range(steps):
        obs, *_ = env.step(expert.act(obs, env))
    depth = env.camera.read().depth_m()
    depth = np.where(depth > 0, depth, np.nan)  # 0 is "no return": shown blank
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    axes[0].imshow(scene_rgb(env))
    axes[0].set_title(f"{task}: scene ({SCENE_CAMERA})")
    shown = axes[1].imshow(depth, cmap="viridis_r")
    axes[1].set_title("top-down depth frame (m)")
    fig.colorbar(shown, ax=axes[1], fraction=0.046)
    shown = axes[2].imshow(obs["heightmap"][0], origin="lower", cmap="viridis")
    axes[2].set_title("heightmap (m above table; +x right, +y up)")
    fig.colorbar(shown, ax=axes[2], fraction=0.046)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path = out / f"sim_{task}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    env.close()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tasks", nargs="*", default=list(sim.TASKS), help=f"tasks (default: {list(sim.TASKS)})")
    parser.add_argument("--out", default="docs/img", help="folder for sim_<task>.png")
    parser.add_argument("--steps", type=int, default=8, help="expert steps before the picture")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for task in args.tasks:
        print(f"wrote {task_figure(task, out, args.steps)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
