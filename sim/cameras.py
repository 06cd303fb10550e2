"""Top-down sim depth cameras with the same interface as a real one (``robot_stack.devices.Camera``).

Both implementations look at the same MuJoCo scene from the same pinhole camera and return float32
depth in metres (z-depth along the optical axis, OpenCV axes, depth_scale 1), row 0 at the image top:

* ``RayCastDepthCamera``: one ``mujoco.mj_multiRay`` call per frame, no GL needed, with its culling off
  (``unculled_rays``): it equals a per-pixel ``mujoco.mj_ray``.
* ``RenderDepthCamera``: ``mujoco.Renderer`` depth (EGL on a GPU, Mesa's software EGL or OSMesa on a CPU).

``spec`` is given in the stack's world frame (robot base x/y, table top z = 0); ``frame_origin`` is where
that frame's origin lies in MuJoCo's world, so a sim frame carries extrinsics exactly like a calibrated
real camera. Both read 0 ("no return") where nothing lies within ``MAX_RANGE``. Optional Gaussian depth
noise and pixel dropout (reported as 0) mimic a sensor.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import mujoco
import numpy as np

from robot_stack.devices import Camera, CameraError, DepthFrame
from robot_stack.specs import CameraIntrinsics, CameraSpec, look_down_pose

# robosuite puts collision geoms in group 0, visual geoms in group 1 and its invisible controller targets
# in group 2. Both cameras see group 0 only (visual meshes cost mj_multiRay ~40x more, measured); the env
# moves what a real pipeline's robot self-filter would remove into MASKED_GROUP.
VISIBLE_GEOM_GROUPS = np.array([1, 0, 0, 0, 0, 0], dtype=np.uint8)
MASKED_GROUP = 3
MAX_RANGE = 5.0  # metres of z-depth; nothing hit within it reads 0 ("no return"), like a real sensor


@dataclass(frozen=True)
class DepthNoise:
    std: float = 0.0  # metres
    dropout: float = 0.0  # fraction of pixels that read 0


def top_down_spec(center_xyz: tuple[float, float, float], height: float, footprint: float, resolution: int,
                  name: str = "sim_top_down") -> CameraSpec:
    """A camera ``height`` above ``center_xyz`` looking down, whose image just covers a square ``footprint``
    (metres, at the height of ``center_xyz``) plus a 10% margin."""
    fovy = math.degrees(2.0 * math.atan(0.55 * footprint / height))
    intrinsics = CameraIntrinsics.from_fovy(fovy, resolution, resolution, depth_scale=1.0)
    cx, cy, cz = center_xyz
    return CameraSpec.create(intrinsics, look_down_pose((cx, cy, cz + height)), name)


@contextlib.contextmanager
def unculled_rays(model: mujoco.MjModel) -> Iterator[None]:
    """Turn off ``mj_multiRay``'s culling while the block runs.

    MuJoCo 3.3's ``mj_multiRay`` skips a body whose BVH-root bounding sphere the ray misses, but places that
    sphere at ``xipos + bvh centre`` without rotating the centre by ``ximat`` (wrong for a body with an offset,
    rotated inertial frame: the door's latch, whose sphere lands 15 cm off and culls the whole handle bar), and
    skips a geom whose AABB-corner azimuth/elevation window the ray is outside (no margin: a long geom passing
    under the camera is nearer the nadir mid-edge than at any corner, so part of the door panel is dropped).
    Both tests run only for bodies with a BVH; with ``body_bvhadr`` -1 every visible geom is intersected, as
    ``mj_ray`` does. The scene has ~10 visible primitives, so this costs about nothing (measured, docs/sim.md).
    The collision midphase needs the BVH, hence the restore.
    """
    saved = model.body_bvhadr.copy()
    model.body_bvhadr[:] = -1
    try:
        yield
    finally:
        model.body_bvhadr[:] = saved


def fovy_deg(intrinsics: CameraIntrinsics) -> float:
    return math.degrees(2.0 * math.atan(0.5 * intrinsics.height / intrinsics.fy))


class SimDepthCamera(Camera):
    """Shared part: the spec, the MuJoCo pose, frame counting, noise. Subclasses implement ``_render``."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, spec: CameraSpec,
                 frame_origin: np.ndarray, noise: DepthNoise = DepthNoise(), seed: int | None = None) -> None:
        intr = spec.intrinsics
        if not (math.isclose(intr.fx, intr.fy) and math.isclose(intr.cx, (intr.width - 1) / 2)
                and math.isclose(intr.cy, (intr.height - 1) / 2)):
            raise CameraError(f"sim cameras need square pixels and a centred principal point, got {intr}")
        self._model, self._data, self._spec = model, data, spec
        self._pose_mj = spec.pose.copy()
        self._pose_mj[:3, 3] += np.asarray(frame_origin, dtype=np.float64)
        self._noise = noise
        self._rng = np.random.default_rng(seed)
        self._index = 0

    @property
    def spec(self) -> CameraSpec:
        return self._spec

    def seed(self, seed: int | None) -> None:
        self._rng = np.random.default_rng(seed)

    def read(self) -> DepthFrame:
        depth = self._render()
        depth = self._add_noise(depth)
        self._index += 1
        return DepthFrame(depth=depth, spec=self._spec, timestamp=float(self._data.time), index=self._index)

    def _add_noise(self, depth: np.ndarray) -> np.ndarray:
        if self._noise.std > 0.0:
            hit = depth > 0
            depth = np.where(hit, depth + self._rng.normal(0.0, self._noise.std, depth.shape), 0.0)
            depth = np.maximum(depth, 0.0).astype(np.float32)
        if self._noise.dropout > 0.0:
            depth = np.where(self._rng.random(depth.shape) < self._noise.dropout, 0.0, depth).astype(np.float32)
        return depth

    def _render(self) -> np.ndarray:
        raise NotImplementedError


class RayCastDepthCamera(SimDepthCamera):
    """GL-free depth: one ray per pixel centre through ``mujoco.mj_multiRay``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        intr = self._spec.intrinsics
        u = (np.arange(intr.width) - intr.cx) / intr.fx
        v = (np.arange(intr.height) - intr.cy) / intr.fy
        uu, vv = np.meshgrid(u, v)
        # Camera-frame rays with unit z: mj_multiRay's distance is then the z-depth a real sensor reports.
        rays_cam = np.stack([uu, vv, np.ones_like(uu)], axis=-1).reshape(-1, 3)
        norms = np.linalg.norm(rays_cam, axis=1)
        self._unit_rays = np.ascontiguousarray((rays_cam / norms[:, None]) @ self._pose_mj[:3, :3].T).reshape(-1)
        self._z_per_unit = (1.0 / norms).reshape(intr.height, intr.width)
        self._origin = np.ascontiguousarray(self._pose_mj[:3, 3])
        self._nray = intr.width * intr.height
        self._geomid = np.zeros(self._nray, dtype=np.int32)
        self._dist = np.zeros(self._nray, dtype=np.float64)

    def _render(self) -> np.ndarray:
        with unculled_rays(self._model):
            mujoco.mj_multiRay(self._model, self._data, self._origin, self._unit_rays, VISIBLE_GEOM_GROUPS, 1, -1,
                               self._geomid, self._dist, self._nray, MAX_RANGE)
        intr = self._spec.intrinsics
        depth = self._dist.reshape(intr.height, intr.width) * self._z_per_unit
        return np.where((depth >= 0) & (depth <= MAX_RANGE), depth, 0.0).astype(np.float32)


class RenderDepthCamera(SimDepthCamera):
    """OpenGL depth through ``mujoco.Renderer`` and a free camera placed at the spec's pose."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        rot = self._pose_mj[:3, :3]
        if not np.allclose(rot[:, 2], [0.0, 0.0, -1.0], atol=1e-6):
            raise CameraError("the GL sim camera supports only cameras looking straight down (-z)")
        intr = self._spec.intrinsics
        # The free camera's field of view is global to the model; nothing else in the stack renders with it.
        self._model.vis.global_.fovy = fovy_deg(intr)
        self._renderer = mujoco.Renderer(self._model, intr.height, intr.width)
        self._renderer.enable_depth_rendering()
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self._camera.distance = 1.0
        self._camera.lookat[:] = self._pose_mj[:3, 3] + np.array([0.0, 0.0, -1.0])
        self._camera.elevation = -90.0
        # Image x along camera x (world +x at yaw 0): azimuth = yaw of camera x + 90 degrees.
        self._camera.azimuth = math.degrees(math.atan2(rot[1, 0], rot[0, 0])) + 90.0
        self._option = mujoco.MjvOption()
        self._option.geomgroup[:] = VISIBLE_GEOM_GROUPS
        self._option.sitegroup[:] = 0

    def _render(self) -> np.ndarray:
        self._renderer.update_scene(self._data, camera=self._camera, scene_option=self._option)
        depth = self._renderer.render().astype(np.float32)
        # Not "depth >= far": the float depth buffer reads an empty pixel back as ~0.3% short of the far plane
        # (529.8 of 530.5 m in the door scene), so empty pixels used to pass as real depth.
        return np.where(depth <= MAX_RANGE, depth, 0.0).astype(np.float32)

    def close(self) -> None:
        self._renderer.close()


CAMERA_CLASSES = {"raycast": RayCastDepthCamera, "gl": RenderDepthCamera}
