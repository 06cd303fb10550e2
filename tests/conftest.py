"""Test-wide settings that must be in place before torch is imported."""

import signal

from robot_stack.cli import passive_openmp_threads

passive_openmp_threads()

# pytest started in the background of a non-interactive shell (`cmd &`) inherits SIGINT ignored, and so would
# every job the Ctrl-C tests start, since an ignored signal stays ignored across exec. A terminal's Ctrl-C
# reaches a process with the default disposition: give the test process (and through it its children) that.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
