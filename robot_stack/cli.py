"""The ``robot-stack`` command: one subcommand per job (README.md, "The jobs").

Each subcommand lives in ``robot_stack/commands/<name>.py`` and exposes ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Command modules import torch, robosuite and
the like inside ``run`` only, so ``robot-stack --help`` and the robot-PC commands stay light.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

COMMANDS = ("demo", "train", "sweep", "collect", "offline", "evaluate", "export", "serve", "run", "data",
            "replay", "calibrate", "bench")


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"robot_stack.commands.{name}")


class CommandParser(argparse.ArgumentParser):
    """The top-level parser: it reads the command word, then that command's own parser reads the rest with
    ``parse_intermixed_args``, so options and ``key=value`` overrides come in any order (argparse's intermixed
    parsing does not support subparsers, so the top level cannot use it itself)."""

    commands: dict[str, argparse.ArgumentParser]

    def parse_args(self, args: Sequence[str] | None = None,
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        argv = list(sys.argv[1:] if args is None else args)
        if not argv or argv[0] not in self.commands:
            return super().parse_args(argv, namespace)  # help, nothing, or an unknown command: argparse says so
        parsed = self.commands[argv[0]].parse_intermixed_args(argv[1:], namespace)
        parsed.command = argv[0]
        return parsed


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="robot-stack",
        description="Relaxed-equivariant manipulation policies: train in sim, record to zarr, fine-tune "
        "offline, deploy through ONNX. Each job reads a YAML file from launch/ and accepts key=value "
        "overrides.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=argparse.ArgumentParser)
    parser.commands = {}
    for name in COMMANDS:
        module = _load(name)
        cmd = sub.add_parser(name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP),
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module)
        parser.commands[name] = cmd
    return parser


def quiet_libraries() -> None:
    """Hide start-up chatter that says nothing to a user: robosuite's macro-file and optional-model notices
    (kept: its errors) and escnn's note that SO(3) would be slow without py3nj (we use 2D groups only).
    ``ROBOT_STACK_VERBOSE=1`` shows everything."""
    import logging
    import os
    import warnings

    if os.environ.get("ROBOT_STACK_VERBOSE"):
        return
    logging.getLogger("robosuite_logs").addFilter(lambda record: record.levelno >= logging.ERROR)
    warnings.filterwarnings("ignore", message=".*py3nj.*")


def passive_openmp_threads() -> None:
    """OpenMP workers that spin while idle turn any other busy process into a 10x slowdown on a 2-core machine
    (a conv step measured 238 ms spinning vs 29 ms passive under load); must be set before torch is imported."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    from robot_stack.config import ConfigError
    from robot_stack.specs import SpecError

    passive_openmp_threads()
    quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    try:
        return int(args._module.run(args) or 0)
    except (ConfigError, SpecError, FileNotFoundError) as exc:
        print(f"robot-stack {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as exc:
        if not _is_project_error(exc):
            raise
        print(f"robot-stack {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"robot-stack {args.command}: interrupted", file=sys.stderr)
        return 130


def _is_project_error(exc: BaseException) -> bool:
    """Errors our packages raise for bad input (NetworkError, CameraError, ...) are messages for the user; a
    library's ValueError is a bug to show with its traceback."""
    return type(exc).__module__.split(".")[0] in ("robot_stack", "policies", "sim", "hardware")


if __name__ == "__main__":
    sys.exit(main())
