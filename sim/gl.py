"""The one place that picks MuJoCo's GL backend: offscreen by default, so every command and a bare ``pytest`` render
without a display and without the Makefile's environment.

MuJoCo (and robosuite) read ``MUJOCO_GL`` when they are first imported, and PyOpenGL reads ``PYOPENGL_PLATFORM``
the same way, so ``use_offscreen_gl()`` must run before either is imported: ``sim/__init__.py`` calls it, and every
path to mujoco goes through the ``sim`` package (``tests/conftest.py`` calls it too, for tests that import mujoco
directly). A user's own ``MUJOCO_GL`` is kept; otherwise EGL when it can load (Mesa's software renderer or a GPU
driver), else OSMesa when Debian's ``libosmesa6`` is installed. ``PYOPENGL_PLATFORM`` is set to match when unset.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

OFFSCREEN = ("egl", "osmesa")
# glvnd's libEGL.so.1 only dispatches to a vendor library: one of these must be installed as well.
EGL_VENDORS = ("libEGL_mesa.so.0", "libEGL_nvidia.so.0")


def _loads(name: str) -> bool:
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def egl_available() -> bool:
    """libEGL and a vendor behind it load (about 2 ms; nothing is initialised)."""
    return _loads("libEGL.so.1") and any(_loads(v) for v in EGL_VENDORS)


def osmesa_available() -> bool:
    """libOSMesa is installed (looked up, not loaded: loading it takes a sizeable fraction of a second)."""
    return ctypes.util.find_library("OSMesa") is not None


def choose_backend() -> str | None:
    """The offscreen backend this machine can use, ``None`` when neither library is there."""
    if egl_available():
        return "egl"
    if osmesa_available():
        return "osmesa"
    return None


def use_offscreen_gl() -> str | None:
    """Set ``MUJOCO_GL`` (and a matching ``PYOPENGL_PLATFORM``) unless the user already did; returns the backend
    in force (``None``: none found, MuJoCo falls back to GLFW, which needs a display). Call it before mujoco,
    robosuite or OpenGL is imported; child processes inherit the choice through the environment."""
    gl = os.environ.get("MUJOCO_GL", "").strip().lower()
    platform = os.environ.get("PYOPENGL_PLATFORM", "").strip().lower()
    if not gl:
        # A user's PYOPENGL_PLATFORM alone names the backend too (MuJoCo refuses a mismatched pair).
        gl = platform if platform in OFFSCREEN else choose_backend()
        if gl is None:
            return None
        os.environ["MUJOCO_GL"] = gl
    if gl in OFFSCREEN and not platform:
        os.environ["PYOPENGL_PLATFORM"] = gl
    return gl
