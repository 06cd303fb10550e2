"""The robot PC installs only `.[robot]`: no torch, robosuite or escnn, at install or at import time."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "robosuite", "escnn", "mujoco")


def _requirement_names(reqs: list[str]) -> set[str]:
    names = set()
    for req in reqs:
        name = req.split(";")[0]
        for sep in "<>=![ ":
            name = name.split(sep)[0]
        names.add(name.strip().lower())
    return names


def test_robot_extra_pulls_no_heavy_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = _requirement_names(project["dependencies"] + project["optional-dependencies"]["robot"])
    assert not names & set(HEAVY), f"robot install would pull {names & set(HEAVY)}"
    assert {"onnxruntime", "pyrealsense2", "numpy", "zarr"} <= names


def test_robot_pc_modules_import_without_heavy_packages():
    code = (
        "import sys\n"
        "import robot_stack, robot_stack.cli, robot_stack.specs, robot_stack.perception, robot_stack.recorder\n"
        "import robot_stack.runtime\n"
        "from robot_stack.cli import build_parser; build_parser()\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_numpy_is_pinned_below_2():
    import numpy

    assert int(numpy.__version__.split(".")[0]) < 2
