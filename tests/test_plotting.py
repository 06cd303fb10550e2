"""robot_stack.plotting: the curves with bands and the relaxed-weight grids every figure shares."""

from __future__ import annotations

import numpy as np

from robot_stack.plotting import draw_curves, learning_curve, pyplot, weight_grids

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_band_is_filled_between_low_and_high_in_its_line_colour():
    fig, ax = pyplot().subplots()
    x = np.arange(3)
    draw_curves(ax, {"a": (x, x * 2.0, None, None), "b": (x, x * 1.0, x - 0.5, x + 0.5)},
                styles={"b": {"color": "grey"}}, marker="o")
    lines, bands = ax.get_lines(), ax.collections
    assert [line.get_label() for line in lines] == ["a", "b"] and lines[1].get_color() == "grey"
    assert len(bands) == 1 and np.allclose(bands[0].get_facecolor()[0][:3], _rgb("grey"))
    edges = bands[0].get_paths()[0].vertices[:, 1]
    assert edges.min() == -0.5 and edges.max() == 2.5
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    pyplot().close(fig)


def test_a_one_point_line_with_a_band_is_drawn_as_an_error_bar():
    from matplotlib.container import ErrorbarContainer

    fig, ax = pyplot().subplots()
    draw_curves(ax, {"one": (np.array([0.0]), np.array([0.4]), np.array([0.1]), np.array([0.9])),
                     "many": (np.arange(2.0), np.array([0.2, 0.3]), np.zeros(2), np.ones(2))})
    (bar,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert bar.get_label() == "one"
    segment = bar.lines[2][0].get_segments()[0]
    assert np.allclose(segment[:, 1], [0.1, 0.9])  # the bar spans the band, low to high
    assert len(ax.collections) == 2  # the error bar's segments and the other line's filled band
    pyplot().close(fig)


def _rgb(color: str) -> tuple[float, ...]:
    from matplotlib.colors import to_rgb

    return to_rgb(color)


def test_learning_curve_and_weight_grids_write_pngs(tmp_path):
    path = learning_curve(tmp_path / "c.png", [(0, 0.1), (10, 0.5)], "t", lines={"random": 0.1},
                          points={"served": (10, 0.4)}, live=[(5, 0.2), (10, 0.3)])
    assert open(path, "rb").read(8) == PNG
    layer = {"layer": 0, "elements": ["e", "r1", "r2", "r3"], "weights": np.full((4, 2), 0.125).tolist()}
    for panels in ({}, {"one": [layer], "two": [layer, {**layer, "layer": 1}]}):
        assert open(weight_grids(tmp_path / "w.png", panels), "rb").read(8) == PNG
