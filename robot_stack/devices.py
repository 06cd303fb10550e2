"""One small interface per device kind: ``Camera`` gives depth frames, ``Arm`` takes motion commands.

Real devices live in ``hardware/``, simulated ones in ``sim/`` and ``hardware/sim_arm.py``; the control
loop, the recorder and the tests see only these interfaces.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from robot_stack.specs import CameraSpec


class CameraError(RuntimeError):
    """The camera is missing, lost, or gave a frame that cannot be used."""


class ArmError(RuntimeError):
    """The arm refused a command or lost its connection."""


@dataclass
class DepthFrame:
    """One depth image with the camera model that produced it.

    ``depth`` is raw sensor units ([H, W] uint16, multiply by ``spec.intrinsics.depth_scale``) or float
    metres (float32, depth_scale 1). ``timestamp`` is seconds on the camera's clock.
    """

    depth: np.ndarray
    spec: CameraSpec
    timestamp: float = 0.0
    index: int = 0
    color: np.ndarray | None = None

    def depth_m(self) -> np.ndarray:
        return self.depth.astype(np.float32) * np.float32(self.spec.intrinsics.depth_scale)


class Camera(abc.ABC):
    """A depth camera: ``read()`` blocks until the next frame."""

    @property
    @abc.abstractmethod
    def spec(self) -> CameraSpec: ...

    @abc.abstractmethod
    def read(self) -> DepthFrame: ...

    def close(self) -> None:  # noqa: B027 - optional for cameras that hold nothing
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class ArmState:
    """End-effector pose in the world frame and the gripper: 0 open, 1 closed."""

    ee_pos: np.ndarray
    ee_yaw: float = 0.0
    gripper: float = 0.0
    timestamp: float = 0.0
    extra: dict = field(default_factory=dict)


@dataclass
class ArmCommand:
    """A relative motion in metric units, already through the safety filter.

    ``dpos`` metres in the world frame, ``dyaw`` radians about world z, ``gripper`` in [-1, 1]
    (-1 open, +1 close).
    """

    dpos: np.ndarray
    dyaw: float = 0.0
    gripper: float = -1.0


class Arm(abc.ABC):
    """A manipulator driven by relative end-effector commands at the control rate."""

    @abc.abstractmethod
    def reset(self) -> ArmState:
        """Move to the home pose (and, in sim, start a new episode)."""

    @abc.abstractmethod
    def state(self) -> ArmState: ...

    @abc.abstractmethod
    def apply(self, command: ArmCommand) -> ArmState:
        """Execute one control period's motion."""

    @abc.abstractmethod
    def hold(self) -> ArmState:
        """Keep the current pose for one control period (a missed deadline)."""

    def limit_command(self, command: ArmCommand) -> tuple[ArmCommand, bool]:
        """``command`` within this arm's own limits (beyond the safety filter's, e.g. a joint's range), and
        whether they changed it. The control loop applies, records and counts what this returns; ``apply``
        must enforce the same limits for callers that skip it."""
        return command, False

    def stop(self) -> None:  # noqa: B027 - a sim arm has nothing to stop
        """Stop all motion; used when the policy falls silent or the camera is lost."""

    def close(self) -> None:  # noqa: B027
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
