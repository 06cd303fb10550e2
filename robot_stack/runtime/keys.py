"""Operator keys for ``robot-stack run``: read single keys from stdin when it is a terminal, else nothing."""

from __future__ import annotations

import os
import select
import sys
from typing import IO

KEYS = {"s": "start", "x": "stop", " ": "stop", "y": "success", "n": "failure", "q": "quit", "u": "unlock"}
HELP = ("keys: s start episode, x/space stop (hold), y mark success, n mark failure, q quit, "
        "u unlock a protective stop (once the cell is clear)")


class KeyReader:
    """Non-blocking key reader. On a TTY it puts the terminal in cbreak mode until ``close``."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdin
        self.enabled = bool(self.stream) and _isatty(self.stream)
        self._saved = None
        if self.enabled:
            import termios
            import tty

            fd = self.stream.fileno()
            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)

    def poll(self) -> list[str]:
        """Commands typed since the last call (names from ``KEYS``); unknown keys are ignored."""
        if not self.enabled:
            return []
        fd = self.stream.fileno()
        out = []
        while select.select([fd], [], [], 0)[0]:
            data = os.read(fd, 64).decode(errors="ignore")
            if not data:
                break
            out += [KEYS[c] for c in data.lower() if c in KEYS]
        return out

    def close(self) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ScriptedKeys:
    """Keys fed by a test or a script: ``{period_index: [command, ...]}``."""

    def __init__(self, schedule: dict[int, list[str]]) -> None:
        self.schedule = schedule
        self.calls = 0
        self.enabled = True

    def poll(self) -> list[str]:
        out = self.schedule.get(self.calls, [])
        self.calls += 1
        return list(out)

    def close(self) -> None:
        pass
