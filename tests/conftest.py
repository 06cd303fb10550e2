"""Test-wide settings that must be in place before torch is imported."""

from robot_stack.cli import passive_openmp_threads

passive_openmp_threads()
