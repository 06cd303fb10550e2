"""The one place that picks matplotlib's backend for every figure the stack writes; the drawing the figures share
(curves with confidence bands, relaxed-weight grids); the demo report's figures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend: files only, so it works on Ray workers and machines without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# Per line: x, y, and the band's low and high edges (both None: no band).
Curve = tuple[Any, Any, Any, Any]


def draw_curves(ax: Any, lines: dict[str, Curve], *, styles: dict[str, dict[str, Any]] | None = None,
                band_alpha: float = 0.25, legend: bool = True, **style: Any) -> None:
    """A line per label with its band filled from low to high in the line's colour; a line of one point with a band
    is that point with an error bar (a band over one x would not show). ``style`` (``ax.plot`` keywords) applies to
    every line, ``styles[label]`` to one; axis labels, limits and the title stay with the caller."""
    for label, (x, y, low, high) in lines.items():
        kwargs = {**style, **(styles or {}).get(label, {})}
        has_band = low is not None and high is not None
        if has_band and np.size(x) == 1:
            ax.errorbar(x, y, yerr=[np.subtract(y, low), np.subtract(high, y)], label=label, capsize=4,
                        **{"marker": "o", **kwargs})
            continue
        (line,) = ax.plot(x, y, label=label, **kwargs)
        if has_band:
            ax.fill_between(x, low, high, color=line.get_color(), alpha=band_alpha, lw=0)
    if legend and lines:
        ax.legend(fontsize=8)


# -- the demo report's figures (robot_stack.jobs.demo): plain numbers in, one PNG out ----------------------------

@dataclass
class StripFrame:
    """One panel of an episode strip, everything in world metres (x right, y up)."""

    step: int
    heightmap: np.ndarray  # [S, S] metres above the table, row = +y, col = +x
    extent: tuple[float, float, float, float]  # x_min, x_max, y_min, y_max the heightmap covers
    gripper: tuple[float, float, float, float]  # ee x, y, yaw (rad), closure (0 open .. 1 closed)
    objects: dict[str, tuple[float, float, float]]  # name -> x, y, yaw; "goal" and "cube" are drawn
    action: np.ndarray  # [5] in [-1, 1]: dx, dy, dz, dtheta, gripper
    success: bool = False


def save_figure(fig: Any, path: str | Path) -> str:
    """Saved with a tight bounding box, so no title, label or legend outside the axes is cut."""
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.15)
    pyplot().close(fig)
    return str(path)


def learning_curve(path: str | Path, evals: list[tuple[int, float]], title: str, *,
                   lines: dict[str, float], points: dict[str, tuple[int, float]],
                   live: list[tuple[int, float]] | None = None) -> str:
    """Success rate against env steps: the evals, horizontal ``lines`` (baselines) and single ``points``."""
    fig, ax = pyplot().subplots(figsize=(7.5, 4.2))
    curves = {"training episodes (last 20)": live, "evaluation (deterministic)": evals}
    draw_curves(ax, {label: (*zip(*points, strict=True), None, None) for label, points in curves.items() if points},
                styles={"training episodes (last 20)": {"alpha": 0.35, "lw": 1},
                        "evaluation (deterministic)": {"marker": "o", "lw": 2}}, legend=False, color="tab:blue")
    for (label, value), style in zip(lines.items(), (("0.45", ":"), ("tab:green", "--"), ("0.2", "-.")),
                                     strict=False):
        ax.axhline(value, color=style[0], ls=style[1], lw=1.5, label=f"{label}: {value:.0%}")
    for (label, (step, value)), (marker, size, color) in zip(points.items(), POINT_STYLES, strict=False):
        ax.plot([step], [value], marker, ms=size, mfc="none", mew=2, color=color, ls="none", zorder=5,
                label=f"{label}: {value:.0%}")
    ax.set(xlabel="environment steps of online SAC (demonstrations not counted)", ylabel="success rate",
           ylim=(-0.03, 1.03), title=title)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return save_figure(fig, path)


POINT_STYLES = (("*", 16, "tab:red"), ("D", 10, "tab:purple"), ("s", 10, "tab:brown"))


def latency_histogram(path: str | Path, samples_ms: list[float], title: str) -> str:
    """Histogram of one control period's policy round trip, with the p50 and p99 marked."""
    fig, ax = pyplot().subplots(figsize=(6.5, 3.8))
    samples = np.asarray(samples_ms, dtype=float)
    if samples.size:
        ax.hist(samples, bins=50, color="tab:blue")
        for q, ls in ((50, "-"), (99, "--")):
            value = float(np.percentile(samples, q))
            ax.axvline(value, color="tab:red", ls=ls, lw=1.2, label=f"p{q} {value:.2f} ms")
        ax.legend(fontsize=8)
    ax.set(xlabel="round trip per control period (ms)", ylabel="control periods", title=title)
    return save_figure(fig, path)


def weight_grid(path: str | Path, rows: list[dict[str, Any]], title: str) -> str:
    """Each relaxed layer's weights w_l(h) as a grid, one row per layer and filter bank, one column per group
    element h, each row divided by its mean: a layer whose rows read 1.0 everywhere is exactly equivariant (a bank's
    weight may differ from another bank's, not between group elements). ``rows``: the layers of
    ``policies.networks.diagnostics.relaxed_weights_report`` that have weights."""
    return weight_grids(path, {title: rows})


def weight_grids(path: str | Path, panels: dict[str, list[dict[str, Any]]],
                 empty: str = "no relaxed group-convolution layers") -> str:
    """One ``weight_grid`` per network, side by side, titled by its key; with none, a figure that says ``empty``."""
    grids = {title: _normalised_weights(rows) for title, rows in panels.items()}
    rows_n = max((g.shape[0] for g, _ in grids.values()), default=1)
    cols_n = max((g.shape[1] for g, _ in grids.values()), default=1)
    fig, axes = pyplot().subplots(1, max(1, len(grids)), figsize=(max(1, len(grids)) * (1.2 * cols_n + 3.2),
                                                                  0.34 * rows_n + 1.6), squeeze=False)
    if not grids:
        axes[0][0].text(0.5, 0.5, empty, ha="center", va="center")
        axes[0][0].set_axis_off()
    for ax, (title, (grid, labels)) in zip(axes[0], grids.items(), strict=False):
        shown = _draw_weight_grid(ax, grid, labels, panels[title][0]["elements"])
        fig.colorbar(shown, ax=ax, label="w_l(h) / mean over h")
        ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def _normalised_weights(rows: list[dict[str, Any]]) -> tuple[np.ndarray, list[str]]:
    """Every layer's banks as rows over the group elements, each divided by its mean, and the rows' labels."""
    banks = np.concatenate([np.asarray(r["weights"], dtype=float).T for r in rows], axis=0)
    labels = [f"layer {r['layer']} bank {b}" for r in rows for b in range(len(np.asarray(r["weights"]).T))]
    return banks / banks.mean(axis=1, keepdims=True), labels


def _draw_weight_grid(ax: Any, grid: np.ndarray, labels: list[str], elements: list[Any]) -> Any:
    spread = max(float(np.abs(grid - 1.0).max()), 0.05)
    shown = ax.imshow(grid, cmap="RdBu_r", vmin=1 - spread, vmax=1 + spread, aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(grid.shape[1]), [str(e) for e in elements], fontsize=8)
    ax.set_yticks(range(grid.shape[0]), labels, fontsize=8)
    ax.set_xlabel("group element h")
    return shown


def episode_strip(path: str | Path, frames: list[StripFrame], title: str, bounds: tuple[float, float, float, float],
                  arrow_m: float, goal_radius: float, cube_size: float) -> str:
    """Top-down panels of one episode: the heightmap the policy saw, the goal, the cube, the gripper (fingers
    across its closing axis) and the commanded (dx, dy) as an arrow ``arrow_m`` metres long at full scale."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(frames), figsize=(2.7 * len(frames), 3.3), squeeze=False)
    high = max(0.06, *(float(np.percentile(f.heightmap, 99.5)) for f in frames))
    for ax, frame in zip(axes[0], frames, strict=True):
        _strip_panel(ax, frame, bounds, high, arrow_m, goal_radius, cube_size)
    shown = [key for key in STRIP_LEGEND if key in frames[0].objects or key in ("gripper", "action")]
    handles = [plt.Line2D([], [], color=c, marker=m, ls=ls, label=label)
               for c, m, ls, label in (STRIP_LEGEND[key] for key in shown)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.06))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


GRIPPER_COLOR = "tab:blue"
STRIP_LEGEND = {"goal": ("tab:green", "o", "none", "goal (success radius)"),
                "cube": ("tab:orange", "s", "none", "cube"),
                "gripper": (GRIPPER_COLOR, "o", "none", "gripper and its fingers"),
                "action": ("tab:red", "", "-", "commanded (dx, dy)")}


def _strip_panel(ax: Any, frame: StripFrame, bounds: tuple[float, float, float, float], high: float,
                 arrow_m: float, goal_radius: float, cube_size: float) -> None:
    from matplotlib import colormaps
    from matplotlib.patches import Circle, Rectangle

    cmap = colormaps["Greys"]
    ax.set_facecolor(cmap(0.0))  # the table, where the view does not reach
    ax.imshow(frame.heightmap, origin="lower", extent=frame.extent, cmap=cmap, vmin=0.0, vmax=high)
    if "goal" in frame.objects:
        gx, gy, _ = frame.objects["goal"]
        ax.add_patch(Circle((gx, gy), goal_radius, fill=False, ec="tab:green", lw=2))
    if "cube" in frame.objects:
        cx, cy, yaw = frame.objects["cube"]
        ax.add_patch(Rectangle((cx - cube_size / 2, cy - cube_size / 2), cube_size, cube_size, fill=False,
                               ec="tab:orange", lw=2, angle=float(np.degrees(yaw)), rotation_point="center"))
    _gripper(ax, frame.gripper)
    x, y = frame.gripper[:2]
    dx, dy = (float(v) * arrow_m for v in frame.action[:2])
    if abs(dx) + abs(dy) > 1e-6:
        ax.annotate("", xy=(x + dx, y + dy), xytext=(x, y),
                    arrowprops={"arrowstyle": "-|>", "color": "tab:red", "lw": 2.2, "mutation_scale": 14})
    ax.set_xlim(bounds[0], bounds[1])
    ax.set_ylim(bounds[2], bounds[3])
    ax.set_xticks([])
    ax.set_yticks([])
    dz, grip = float(frame.action[2]), "close" if frame.action[4] > 0 else "open"
    ax.set_title(f"step {frame.step}" + ("  (success)" if frame.success else ""), fontsize=9)
    ax.set_xlabel(f"dz {dz:+.1f}   gripper: {grip}", fontsize=8)


def _gripper(ax: Any, gripper: tuple[float, float, float, float]) -> None:
    x, y, yaw, closure = gripper
    half = 0.005 + 0.02 * (1.0 - float(np.clip(closure, 0.0, 1.0)))  # finger pads close along the yaw axis
    ux, uy = np.cos(yaw), np.sin(yaw)
    for side in (-1.0, 1.0):
        fx, fy = x + side * half * ux, y + side * half * uy
        ax.plot([fx - 0.01 * uy, fx + 0.01 * uy], [fy + 0.01 * ux, fy - 0.01 * ux], color=GRIPPER_COLOR, lw=3)
    ax.plot([x], [y], "o", color=GRIPPER_COLOR, ms=4)
