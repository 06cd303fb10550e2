"""sim.gl picks an offscreen MuJoCo backend unless the user chose one; `import sim` applies it in any process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sim import gl

GL_VARS = ("MUJOCO_GL", "PYOPENGL_PLATFORM")


@pytest.fixture
def clean_env(monkeypatch):
    for var in GL_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_unset_picks_egl_then_osmesa_with_matching_pyopengl(clean_env):
    clean_env.setattr(gl, "egl_available", lambda: True)
    assert gl.use_offscreen_gl() == "egl"
    assert (os.environ["MUJOCO_GL"], os.environ["PYOPENGL_PLATFORM"]) == ("egl", "egl")
    for var in GL_VARS:
        clean_env.delenv(var)
    clean_env.setattr(gl, "egl_available", lambda: False)
    clean_env.setattr(gl, "osmesa_available", lambda: True)
    assert gl.use_offscreen_gl() == "osmesa"
    assert (os.environ["MUJOCO_GL"], os.environ["PYOPENGL_PLATFORM"]) == ("osmesa", "osmesa")


def test_no_library_leaves_the_environment_alone(clean_env):
    clean_env.setattr(gl, "egl_available", lambda: False)
    clean_env.setattr(gl, "osmesa_available", lambda: False)
    assert gl.use_offscreen_gl() is None
    assert not any(var in os.environ for var in GL_VARS)


def test_a_users_choice_is_kept(clean_env):
    clean_env.setattr(gl, "egl_available", lambda: True)
    clean_env.setenv("MUJOCO_GL", "osmesa")
    assert gl.use_offscreen_gl() == "osmesa"
    assert (os.environ["MUJOCO_GL"], os.environ["PYOPENGL_PLATFORM"]) == ("osmesa", "osmesa")
    # PYOPENGL_PLATFORM alone names the backend too.
    clean_env.delenv("MUJOCO_GL")
    clean_env.setenv("PYOPENGL_PLATFORM", "osmesa")
    assert gl.use_offscreen_gl() == "osmesa"
    assert os.environ["MUJOCO_GL"] == "osmesa"
    # Both set: neither is touched, even a pair MuJoCo will refuse (the user's to fix).
    clean_env.setenv("MUJOCO_GL", "glfw")
    clean_env.setenv("PYOPENGL_PLATFORM", "egl")
    assert gl.use_offscreen_gl() == "glfw"
    assert (os.environ["MUJOCO_GL"], os.environ["PYOPENGL_PLATFORM"]) == ("glfw", "egl")


RENDER = """
import os, sim, mujoco
m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom type="box" size=".1 .1 .1"/></worldbody></mujoco>')
d = mujoco.MjData(m)
mujoco.mj_forward(m, d)
r = mujoco.Renderer(m, 32, 32)
r.update_scene(d)
assert r.render().shape == (32, 32, 3)
r.close()
print(os.environ["MUJOCO_GL"], os.environ["PYOPENGL_PLATFORM"])
"""


@pytest.mark.parametrize("user", [None, "osmesa"])
def test_import_sim_renders_offscreen_without_the_makefile(user):
    pytest.importorskip("mujoco")
    backend = user or gl.choose_backend()
    if backend is None or (backend == "osmesa" and not gl.osmesa_available()):
        pytest.skip(f"no {backend or 'offscreen GL'} library on this machine")
    env = {k: v for k, v in os.environ.items() if k not in GL_VARS}
    if user:
        env["MUJOCO_GL"] = user
    out = subprocess.run([sys.executable, "-c", RENDER], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [backend, backend]
