"""Test-wide settings that must be in place before torch is imported."""

import signal

from robot_stack.cli import passive_openmp_threads
from sim.gl import use_offscreen_gl

passive_openmp_threads()
# Offscreen MuJoCo without the Makefile's environment, before any test module imports mujoco (a user's MUJOCO_GL wins).
use_offscreen_gl()

# pytest started in the background of a non-interactive shell (`cmd &`) inherits SIGINT ignored, and so would
# every job the Ctrl-C tests start, since an ignored signal stays ignored across exec. A terminal's Ctrl-C
# reaches a process with the default disposition: give the test process (and through it its children) that.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
