"""Settings of the RealSense camera (a section of launch files such as launch/calibrate.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field


def _default_pose() -> list[list[float]]:
    # 0.6 m above the default workspace centre, looking straight down (robot_stack.specs.look_down_pose).
    return [[1.0, 0.0, 0.0, 0.5], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.6], [0.0, 0.0, 0.0, 1.0]]


@dataclass
class RealSenseConfig:
    """A live RealSense (``recording`` empty) or the playback of a ``.db3`` / ``.bag`` recording.

    Filters run in librealsense's recommended order: decimation, spatial, temporal, hole filling.
    ``hole_filling`` is -1 (off) or librealsense's mode 0 (fill from left), 1 (farthest), 2 (nearest).
    """

    recording: str = ""
    serial: str = ""
    width: int = 640
    height: int = 480
    fps: int = 30
    color: bool = False
    decimation: int = 1
    spatial: bool = False
    spatial_alpha: float = 0.5
    spatial_delta: float = 20.0
    temporal: bool = False
    temporal_alpha: float = 0.4
    temporal_delta: float = 20.0
    hole_filling: int = -1
    timeout_ms: int = 2000
    name: str = "realsense"
    extrinsics: list[list[float]] = field(default_factory=_default_pose)

    def __post_init__(self) -> None:
        if self.decimation < 1 or self.decimation > 8:
            raise ValueError(f"decimation must be 1 (off) to 8, got {self.decimation}")
        if self.hole_filling not in (-1, 0, 1, 2):
            raise ValueError(f"hole_filling must be -1 (off), 0, 1 or 2, got {self.hole_filling}")
        if self.width <= 0 or self.height <= 0 or self.fps <= 0:
            raise ValueError(f"width, height and fps must be positive, got {self.width}, {self.height}, {self.fps}")
        if self.timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be positive, got {self.timeout_ms}")
