"""Grippers on a UR arm, behind one small interface: ``command(close)``, ``closure()``, ``close()``.

``DigitalOutputGripper``: a pneumatic or I/O-driven gripper on a standard digital output; it cannot report
where its fingers are, so its closure is the last command (0 open, 1 closed). ``RobotiqGripper``: a Robotiq
2F/Hand-E through the Robotiq URCap's socket server on the controller (port 63352: ``SET ACT 1``, ``SET GTO 1``,
``SET POS n``, ``GET POS`` ... one line each, ``ack`` or ``NAME value`` back); its closure is the measured
finger position (``GET POS`` / 255), so an object held reads as partly closed, as the sim reports it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from robot_stack.devices import ArmError


class Gripper(Protocol):
    def command(self, close: bool) -> None: ...

    def closure(self) -> float: ...

    def close(self) -> None: ...


@dataclass
class RobotiqConfig:
    """``arm.ur.robotiq``: the URCap's socket server (on the controller, ``host`` empty = the arm's host)."""

    host: str = ""
    port: int = 63352
    speed: int = 255          # 0-255
    force: int = 100          # 0-255
    timeout: float = 2.0      # s for one socket reply
    activate_timeout: float = 5.0  # s for the activation (the fingers open and close once)

    def __post_init__(self) -> None:
        for name in ("speed", "force"):
            if not 0 <= getattr(self, name) <= 255:
                raise ValueError(f"robotiq.{name} must be 0-255, got {getattr(self, name)}")
        if not 0 < self.port < 65536 or self.timeout <= 0 or self.activate_timeout <= 0:
            raise ValueError("robotiq: port must be 1-65535 and the timeouts > 0")


class DigitalOutputGripper:
    """``set_output(output, level) -> bool`` is the IO interface's ``setStandardDigitalOut``."""

    def __init__(self, set_output: Callable[[int, bool], Any], output: int, close_high: bool) -> None:
        self.set_output, self.output, self.close_high = set_output, output, close_high
        self._closed = False

    def command(self, close: bool) -> None:
        if self.output >= 0 and not self.set_output(self.output, close == self.close_high):
            raise ArmError(f"UR refused to set digital output {self.output} (the gripper)")
        self._closed = close

    def closure(self) -> float:
        return 1.0 if self._closed else 0.0

    def close(self) -> None:
        pass


class RobotiqGripper:
    """A Robotiq gripper through the URCap socket (module docstring); activated when constructed."""

    def __init__(self, cfg: RobotiqConfig, host: str, sleep: Callable[[float], None] = time.sleep) -> None:
        self.cfg = cfg
        self.where = f"{cfg.host or host}:{cfg.port}"
        try:
            self.sock = socket.create_connection((cfg.host or host, cfg.port), timeout=cfg.timeout)
        except OSError as exc:
            raise ArmError(f"cannot reach the Robotiq URCap socket at {self.where}: {exc} (is the URCap "
                           "installed and the gripper activated on the pendant?)") from exc
        self.stream = self.sock.makefile("rw", newline="\n")
        self._activate(sleep)

    def _activate(self, sleep: Callable[[float], None]) -> None:
        if self._get("STA") != 3:
            self._set("ACT", 1)
            waited = 0.0
            while self._get("STA") != 3:
                if waited > self.cfg.activate_timeout:
                    raise ArmError(f"the Robotiq gripper at {self.where} did not activate in "
                                   f"{self.cfg.activate_timeout:g} s")
                sleep(0.05)
                waited += 0.05
        self._set("SPE", self.cfg.speed)
        self._set("FOR", self.cfg.force)
        self._set("GTO", 1)

    def command(self, close: bool) -> None:
        self._set("POS", 255 if close else 0)

    def closure(self) -> float:
        return self._get("POS") / 255.0

    def close(self) -> None:
        try:
            self.stream.close()
            self.sock.close()
        except OSError:
            pass

    def _line(self, text: str) -> str:
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
            reply = self.stream.readline().strip()
        except OSError as exc:
            raise ArmError(f"Robotiq socket {self.where}: {text!r} failed: {exc}") from exc
        if not reply:
            raise ArmError(f"Robotiq socket {self.where} closed on {text!r}")
        return reply

    def _set(self, name: str, value: int) -> None:
        reply = self._line(f"SET {name} {value}")
        if reply != "ack":
            raise ArmError(f"the Robotiq gripper refused SET {name} {value}: {reply!r}")

    def _get(self, name: str) -> int:
        reply = self._line(f"GET {name}").split()
        if len(reply) != 2 or reply[0] != name or not reply[1].lstrip("-").isdigit():
            raise ArmError(f"the Robotiq gripper answered GET {name} with {' '.join(reply)!r}")
        return int(reply[1])
