"""Specs every stage reads: workspace, heightmap, camera, observation, action, policy.

No shape or size is written twice in the stack: training, export, the server, the recorder and the
sim all build their arrays from these objects, and compare them with ``mismatches`` when two stages
meet (a policy package and a robot config, a dataset and a training config).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from typing import Any

import numpy as np

# 2: heightmap views (workspace-fixed or gripper-centred: view, extent, channels, gripper footprint)
SPEC_VERSION = 2
VIEWS = ("workspace", "gripper")
GRIPPER_VIEW_SCALE = 1.5  # a gripper-centred map covers 1.5x the workspace (docs/ARCHITECTURE.md), all of it in sight


class SpecError(ValueError):
    """Data that does not fit its spec; the message names the field."""


def check_spec_version(version: Any, where: str, remedy: str = "") -> None:
    """Refuse a package, store or peer whose spec version is not this robot-stack's, naming both versions."""
    if version != SPEC_VERSION:
        hint = f": {remedy}" if remedy else ""
        raise SpecError(f"{where} has spec version {version!r}; this robot-stack uses spec version {SPEC_VERSION}"
                        f"{hint}")


def _from_mapping(cls, data: dict[str, Any]):
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise SpecError(f"{cls.__name__}: unknown keys {unknown}; valid keys: {sorted(valid)}")
    return cls(**data)


@dataclass(frozen=True)
class WorkspaceBox:
    """Axis-aligned box in the world frame (metres); ``z_min`` is the table surface."""

    x_min: float = 0.35
    x_max: float = 0.65
    y_min: float = -0.15
    y_max: float = 0.15
    z_min: float = 0.0
    z_max: float = 0.3

    def __post_init__(self) -> None:
        for axis in "xyz":
            lo, hi = getattr(self, f"{axis}_min"), getattr(self, f"{axis}_max")
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise SpecError(f"workspace {axis} bounds must be finite, got [{lo}, {hi}]")
            if hi <= lo:
                raise SpecError(f"workspace box has no volume: {axis}_max={hi} <= {axis}_min={lo}")

    @property
    def center(self) -> tuple[float, float, float]:
        return ((self.x_min + self.x_max) / 2, (self.y_min + self.y_max) / 2, (self.z_min + self.z_max) / 2)

    @property
    def low(self) -> np.ndarray:
        return np.array([self.x_min, self.y_min, self.z_min])

    @property
    def high(self) -> np.ndarray:
        return np.array([self.x_max, self.y_max, self.z_max])

    def contains(self, xyz: np.ndarray, tol: float = 0.0) -> bool:
        p = np.asarray(xyz)
        return bool(np.all(p >= self.low - tol) and np.all(p <= self.high + tol))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkspaceBox:
        return _from_mapping(cls, {k: float(v) for k, v in data.items()})


@dataclass(frozen=True)
class GripperFootprint:
    """How a gripper-centred view draws the gripper: two finger pads about the centre (metres).

    The pads lie on the closing axis, ``axis_yaw`` radians from the ee's yaw; their centres are
    ``open_span`` apart when the gripper is open and touch (``finger_thickness`` apart) when closed."""

    open_span: float = 0.05  # Panda: pad centres 4.9 cm apart when open (measured in sim)
    finger_thickness: float = 0.01  # along the closing axis
    finger_width: float = 0.02  # across it
    axis_yaw: float = 0.0  # Panda: the fingers close along the ee site's x axis, the yaw direction

    def __post_init__(self) -> None:
        sizes = (self.open_span, self.finger_thickness, self.finger_width)
        if not all(math.isfinite(v) and v > 0 for v in sizes) or not math.isfinite(self.axis_yaw):
            raise SpecError(f"gripper footprint sizes must be positive and finite, got {self}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GripperFootprint:
        return _from_mapping(cls, {k: float(v) for k, v in data.items()})


@dataclass(frozen=True)
class HeightmapSpec:
    """A square orthographic top-down grid of ``size`` cells over ``extent`` metres.

    ``view="workspace"``: centred on the workspace, covering its x/y extent (which must be square), one channel of
    heights above the table. ``view="gripper"``: centred on the ee's x/y, covering ``GRIPPER_VIEW_SCALE`` times the
    workspace, two channels: heights relative to the ee with the gripper drawn in (``gripper``), and the
    gripper's opening (robot_stack.observation). ``extent`` 0 means the view's default.
    """

    size: int = 64
    workspace: WorkspaceBox = field(default_factory=WorkspaceBox)
    view: str = "workspace"
    extent: float = 0.0
    gripper: GripperFootprint = field(default_factory=GripperFootprint)

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 4:
            raise SpecError(f"heightmap size must be an integer >= 4, got {self.size!r}")
        wx = self.workspace.x_max - self.workspace.x_min
        wy = self.workspace.y_max - self.workspace.y_min
        if not math.isclose(wx, wy, rel_tol=1e-6):
            raise SpecError(f"heightmap needs a square workspace footprint, got {wx:.4f} m x {wy:.4f} m")
        if self.view not in VIEWS:
            raise SpecError(f"heightmap view {self.view!r} is not one of {list(VIEWS)}")
        if not math.isfinite(self.extent) or self.extent < 0:
            raise SpecError(f"heightmap extent must be >= 0 metres (0: the view's default), got {self.extent}")
        if self.extent == 0:
            object.__setattr__(self, "extent", round(wx * (GRIPPER_VIEW_SCALE if self.view == "gripper" else 1.0), 9))
        elif self.view == "workspace" and not math.isclose(self.extent, wx, rel_tol=1e-6):
            raise SpecError(f"a workspace view covers the workspace ({wx} m); got extent {self.extent}")

    @property
    def cell_size(self) -> float:
        return self.extent / self.size

    @property
    def max_height(self) -> float:
        return self.workspace.z_max - self.workspace.z_min

    @property
    def channels(self) -> int:
        return 2 if self.view == "gripper" else 1

    @property
    def gripper_centred(self) -> bool:
        return self.view == "gripper"

    @property
    def value_range(self) -> tuple[float, float]:
        """Bounds of channel 0: heights above the table, or relative to the ee (gripper view)."""
        return (-self.max_height, self.max_height) if self.gripper_centred else (0.0, self.max_height)

    def to_dict(self) -> dict[str, Any]:
        out = {"size": self.size, "workspace": self.workspace.to_dict(), "view": self.view, "extent": self.extent,
               "channels": self.channels}
        return {**out, "gripper": self.gripper.to_dict()} if self.gripper_centred else out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeightmapSpec:
        data = dict(data)
        ws = WorkspaceBox.from_dict(data.pop("workspace", {}))
        channels = data.pop("channels", None)
        grip = GripperFootprint.from_dict(data.pop("gripper", {}))
        spec = _from_mapping(cls, {**data, "workspace": ws, "gripper": grip})
        if channels is not None and int(channels) != spec.channels:
            raise SpecError(f"heightmap view {spec.view!r} has {spec.channels} channels, the data says {channels}")
        return spec


@dataclass(frozen=True)
class FieldSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def check(self, value: Any, batched: bool = False) -> np.ndarray:
        arr = np.asarray(value)
        shape = arr.shape[1:] if batched else arr.shape
        if tuple(shape) != tuple(self.shape):
            want = ("[B, " if batched else "[") + ", ".join(map(str, self.shape)) + "]"
            raise SpecError(f"field {self.name!r}: expected shape {want}, got {list(arr.shape)}")
        if arr.dtype != np.dtype(self.dtype):
            raise SpecError(f"field {self.name!r}: expected dtype {self.dtype}, got {arr.dtype}")
        return arr


@dataclass(frozen=True)
class ObservationSpec:
    """Named observation fields; ``heightmap`` is float32[C, H, W], the rest flat float32 vectors."""

    fields: tuple[FieldSpec, ...]

    @classmethod
    def create(cls, heightmap: HeightmapSpec, gripper_dim: int = 2, heightmap_channels: int | None = None,
               extra: dict[str, int] | None = None) -> ObservationSpec:
        channels = heightmap.channels if heightmap_channels is None else heightmap_channels
        items = [FieldSpec("heightmap", (channels, heightmap.size, heightmap.size)),
                 FieldSpec("gripper", (gripper_dim,))]
        items += [FieldSpec(name, (dim,)) for name, dim in (extra or {}).items()]
        return cls(tuple(items))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def __getitem__(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise SpecError(f"observation has no field {name!r}; fields: {list(self.names)}")

    @property
    def heightmap_size(self) -> int:
        return self["heightmap"].shape[-1]

    @property
    def heightmap_channels(self) -> int:
        return self["heightmap"].shape[0]

    @property
    def vector_dim(self) -> int:
        """Total width of the non-image fields, in ``names`` order."""
        return sum(f.shape[0] for f in self.fields if f.name != "heightmap")

    def vector_of(self, obs: dict[str, Any], batched: bool = False) -> np.ndarray:
        """The networks' vector input: every non-heightmap field, flattened and concatenated in ``names`` order
        (``[vector_dim]``, or ``[B, vector_dim]`` when ``batched``)."""
        lead = (len(obs["heightmap"]),) if batched else ()
        parts = [np.asarray(obs[f.name], np.float32).reshape(*lead, -1) for f in self.fields if f.name != "heightmap"]
        return np.concatenate(parts, axis=-1) if parts else np.zeros((*lead, 0), np.float32)

    @cached_property
    def _exact_fields(self) -> tuple[tuple[str, tuple[int, ...], np.dtype], ...]:
        return tuple((f.name, tuple(f.shape), np.dtype(f.dtype)) for f in self.fields)

    def check(self, obs: dict[str, Any], batched: bool = False) -> dict[str, np.ndarray]:
        """The observation as checked arrays; ``SpecError`` naming the problem when it does not fit."""
        exact = None if batched else self._check_exact(obs)
        return exact if exact is not None else self._check_any(obs, batched)

    def _check_exact(self, obs: Any) -> dict[str, np.ndarray] | None:
        """The per-step path (the control loop, the recorder, the server): arrays of exactly the right shape and
        dtype, all finite, are accepted as they are; anything else (None) goes through ``_check_any``."""
        fields = self._exact_fields
        if type(obs) is not dict or len(obs) != len(fields):
            return None
        out = {}
        for name, shape, dtype in fields:
            arr = obs.get(name)
            if type(arr) is not np.ndarray or arr.shape != shape or arr.dtype != dtype or not np.isfinite(arr).all():
                return None
            out[name] = arr
        return out

    def _check_any(self, obs: Any, batched: bool) -> dict[str, np.ndarray]:
        if not isinstance(obs, dict):
            raise SpecError(f"observation must be a dict of arrays, got {type(obs).__name__}")
        missing = [n for n in self.names if n not in obs]
        extra = [k for k in obs if k not in self.names]
        if missing or extra:
            raise SpecError(f"observation keys do not match: missing {missing}, unexpected {extra}")
        out = {f.name: f.check(obs[f.name], batched) for f in self.fields}
        for name, arr in out.items():
            if not np.all(np.isfinite(arr)):
                raise SpecError(f"field {name!r} contains NaN or inf")
        return out

    def zeros(self, batch: int | None = None) -> dict[str, np.ndarray]:
        lead = () if batch is None else (batch,)
        return {f.name: np.zeros(lead + f.shape, dtype=f.dtype) for f in self.fields}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: {"shape": list(f.shape), "dtype": f.dtype} for f in self.fields}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObservationSpec:
        return cls(tuple(FieldSpec(k, tuple(int(s) for s in v["shape"]), v.get("dtype", "float32"))
                         for k, v in data.items()))


ACTION_NAMES = ("dx", "dy", "dz", "dtheta", "gripper")


@dataclass(frozen=True)
class ActionSpec:
    """(dx, dy, dz, dtheta, gripper) in [-1, 1]; scaled by ``dpos`` metres and ``dtheta`` radians."""

    dpos: float = 0.05
    dtheta: float = math.pi / 8
    names: tuple[str, ...] = ACTION_NAMES

    def __post_init__(self) -> None:
        if tuple(self.names) != ACTION_NAMES:
            raise SpecError(f"action names must be {ACTION_NAMES}, got {tuple(self.names)}")
        if self.dpos <= 0 or self.dtheta < 0:
            raise SpecError(f"action step sizes must be positive, got dpos={self.dpos}, dtheta={self.dtheta}")

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def low(self) -> np.ndarray:
        return -np.ones(self.dim, dtype=np.float32)

    @property
    def high(self) -> np.ndarray:
        return np.ones(self.dim, dtype=np.float32)

    def clip(self, action: np.ndarray) -> tuple[np.ndarray, int]:
        """Clip to [-1, 1]; NaN is refused. Returns the clipped action and how many entries were clipped."""
        a = np.asarray(action, dtype=np.float32)
        if a.shape[-1:] != (self.dim,):
            raise SpecError(f"action must have {self.dim} entries {self.names}, got shape {list(a.shape)}")
        if not np.all(np.isfinite(a)):
            raise SpecError(f"action contains NaN or inf: {a.tolist()}")
        clipped = np.clip(a, -1.0, 1.0)
        return clipped, int(np.count_nonzero(clipped != a))

    def to_metric(self, action: np.ndarray) -> np.ndarray:
        """[-1, 1] action -> (dx, dy, dz in metres, dtheta in radians, gripper in [-1, 1])."""
        a = np.asarray(action, dtype=np.float64)
        return np.concatenate([a[..., :3] * self.dpos, a[..., 3:4] * self.dtheta, a[..., 4:5]], axis=-1)

    def to_dict(self) -> dict[str, Any]:
        return {"dpos": self.dpos, "dtheta": self.dtheta, "names": list(self.names)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActionSpec:
        data = dict(data)
        if "names" in data:
            data["names"] = tuple(data["names"])
        return _from_mapping(cls, data)


@dataclass(frozen=True)
class PolicySpec:
    """What a policy consumes and produces; carried in ONNX metadata and checkpoints."""

    observation: ObservationSpec
    action: ActionSpec
    heightmap: HeightmapSpec
    group: str = "C8"
    family: str = "relaxed"
    version: int = SPEC_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"observation": self.observation.to_dict(), "action": self.action.to_dict(),
                "heightmap": self.heightmap.to_dict(), "group": self.group, "family": self.family,
                "version": self.version}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())  # key order carries the field order

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicySpec:
        return cls(ObservationSpec.from_dict(data["observation"]), ActionSpec.from_dict(data["action"]),
                   HeightmapSpec.from_dict(data["heightmap"]), data.get("group", "C8"),
                   data.get("family", "relaxed"), int(data.get("version", SPEC_VERSION)))

    @classmethod
    def from_json(cls, text: str) -> PolicySpec:
        return cls.from_dict(json.loads(text))


def mismatches(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Human-readable differences between two specs (or their dicts), e.g. 'heightmap.size: 64 != 128'."""
    a = expected.to_dict() if hasattr(expected, "to_dict") else expected
    b = actual.to_dict() if hasattr(actual, "to_dict") else actual
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            sub = f"{path}.{key}" if path else str(key)
            if key not in b:
                out.append(f"{sub}: missing")
            elif key not in a:
                out.append(f"{sub}: unexpected")
            else:
                out += mismatches(a[key], b[key], sub)
        return out
    if isinstance(a, float) or isinstance(b, float):
        same = isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(a, b, rel_tol=1e-9)
    else:
        same = list(a) == list(b) if isinstance(a, list | tuple) and isinstance(b, list | tuple) else a == b
    return [] if same else [f"{path or 'value'}: expected {a!r}, got {b!r}"]


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels; ``depth_scale`` converts raw depth units to metres."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    depth_scale: float = 0.001

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise SpecError(f"camera size must be positive, got {self.width}x{self.height}")
        if self.fx <= 0 or self.fy <= 0 or self.depth_scale <= 0:
            raise SpecError(f"fx, fy and depth_scale must be positive, got {self.fx}, {self.fy}, "
                            f"{self.depth_scale}")

    @classmethod
    def from_fovy(cls, fovy_deg: float, width: int, height: int, depth_scale: float = 1.0) -> CameraIntrinsics:
        f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2)
        return cls(f, f, (width - 1) / 2, (height - 1) / 2, width, height, depth_scale)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CameraIntrinsics:
        return _from_mapping(cls, data)


@dataclass(frozen=True)
class CameraSpec:
    """Intrinsics plus the camera-to-world pose (4x4, OpenCV axes: x right, y down, z forward)."""

    intrinsics: CameraIntrinsics
    extrinsics: tuple[tuple[float, ...], ...] = ((1.0, 0, 0, 0), (0, 1.0, 0, 0), (0, 0, 1.0, 0), (0, 0, 0, 1.0))
    name: str = "camera"

    def __post_init__(self) -> None:
        m = np.asarray(self.extrinsics, dtype=np.float64)
        if m.shape != (4, 4) or not np.all(np.isfinite(m)):
            raise SpecError(f"camera extrinsics must be a finite 4x4 matrix, got shape {m.shape}")
        rot = m[:3, :3]
        if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-5) or not np.allclose(m[3], [0, 0, 0, 1]):
            raise SpecError("camera extrinsics must be a rigid transform (orthonormal rotation, last row 0 0 0 1)")

    @property
    def pose(self) -> np.ndarray:
        return np.asarray(self.extrinsics, dtype=np.float64)

    @classmethod
    def create(cls, intrinsics: CameraIntrinsics, pose: np.ndarray, name: str = "camera") -> CameraSpec:
        return cls(intrinsics, tuple(tuple(float(v) for v in row) for row in np.asarray(pose)), name)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "intrinsics": self.intrinsics.to_dict(),
                "extrinsics": [list(r) for r in self.extrinsics]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CameraSpec:
        return cls.create(CameraIntrinsics.from_dict(data["intrinsics"]), np.asarray(data["extrinsics"]),
                          data.get("name", "camera"))

    def to_yaml(self, path) -> None:
        import yaml

        with open(path, "w") as fh:
            yaml.safe_dump(self.to_dict(), fh, sort_keys=False)

    @classmethod
    def from_yaml(cls, path) -> CameraSpec:
        import yaml

        with open(path) as fh:
            return cls.from_dict(yaml.safe_load(fh))


def look_down_pose(position: tuple[float, float, float], yaw: float = 0.0) -> np.ndarray:
    """Camera-to-world pose of a camera at ``position`` looking straight down (-z world).

    With yaw 0 the image x axis points along world +x and image y along world -y.
    """
    c, s = math.cos(yaw), math.sin(yaw)
    rot_z = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    down = np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]])  # cam x=+x, cam y=-y, cam z=-z
    pose = np.eye(4)
    pose[:3, :3] = rot_z @ down
    pose[:3, 3] = position
    return pose
