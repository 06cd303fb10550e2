"""Intel RealSense depth camera: a live device or a recording played back through the same class.

A live device runs through an ``rs.pipeline``; a recording is opened with ``rs.context().load_device``
and played sensor by sensor in non-real-time mode, so no frame is dropped and every frame keeps its
recorded timestamp. Both paths share the filters (decimation, spatial, temporal, hole filling) and the
optional colour image aligned to the depth image. Intrinsics come from the device or the recording
(after decimation, from the filtered frame).

``write_recording`` makes a real recording without a camera (``rs.software_device`` + ``rs.recorder``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hardware.camera_config import RealSenseConfig
from robot_stack.devices import Camera, CameraError, DepthFrame
from robot_stack.specs import CameraIntrinsics, CameraSpec, SpecError

RECORDING_SUFFIXES = (".db3", ".bag")


class EndOfRecording(CameraError):
    """The recording has no more frames."""


def _rs():
    try:
        import pyrealsense2 as rs
    except ImportError as exc:  # pragma: no cover - the robot extra installs it
        raise CameraError("pyrealsense2 is not installed (pip install '.[robot]')") from exc
    return rs


class RealSenseCamera(Camera):
    """``robot_stack.devices.Camera`` for a RealSense: ``read()`` gives the next filtered depth frame."""

    def __init__(self, config: RealSenseConfig | None = None) -> None:
        self.config = config or RealSenseConfig()
        self._rs = _rs()
        self._pipeline = None
        self._sensors: list = []
        self._queue = None
        self._playback = None
        self._index = 0
        self._filters = self._make_filters()
        self._align = self._rs.align(self._rs.stream.depth) if self.config.color else None
        if self.config.recording:
            self._open_recording(Path(self.config.recording))
        else:
            self._open_live()
        self._pending = self._next_frameset()  # the first frame fixes the (post-filter) intrinsics
        self._spec = self._spec_from(self._pending)

    @property
    def spec(self) -> CameraSpec:
        return self._spec

    @property
    def is_playback(self) -> bool:
        return self._playback is not None

    def read(self) -> DepthFrame:
        frames, self._pending = (self._pending, None) if self._pending is not None else (self._next_frameset(), None)
        depth_frame = frames[0]
        depth = np.array(depth_frame.get_data(), dtype=np.uint16, copy=True)
        color = None
        if frames[1] is not None:
            color = _resize_nearest(np.array(frames[1].get_data(), copy=True), depth.shape)
        frame = DepthFrame(depth, self._spec, timestamp=depth_frame.get_timestamp() / 1000.0, index=self._index,
                           color=color)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.stop()
            self._pipeline = None
        for sensor in self._sensors:
            sensor.stop()
            sensor.close()
        self._sensors = []

    # -- opening -------------------------------------------------------------------------------------

    def _open_recording(self, path: Path) -> None:
        if path.suffix not in RECORDING_SUFFIXES:
            raise CameraError(f"recording {str(path)!r} must be a {' or '.join(RECORDING_SUFFIXES)} file")
        if not path.is_file():
            raise CameraError(f"recording {str(path)!r} not found")
        rs = self._rs
        try:
            device = rs.context().load_device(str(path))
        except RuntimeError as exc:
            raise CameraError(f"cannot open recording {str(path)!r}: {exc}") from exc
        self._playback = device.as_playback()
        self._playback.set_real_time(False)
        depth_sensor = device.first_depth_sensor()
        self._depth_scale = depth_sensor.get_depth_scale()
        wanted = [(depth_sensor, rs.stream.depth)]
        if self.config.color:
            color_sensor = _first_with_stream(device, rs.stream.color)
            if color_sensor is None:
                raise CameraError(f"recording {str(path)!r} has no colour stream (set color: false)")
            wanted.append((color_sensor, rs.stream.color))
        self._queue = rs.syncer(64) if self.config.color else rs.frame_queue(64, keep_frames=True)
        for sensor, stream in wanted:
            profile = next(p for p in sensor.get_stream_profiles() if p.stream_type() == stream)
            sensor.open(profile)
            sensor.start(self._queue)
            self._sensors.append(sensor)

    def _open_live(self) -> None:
        rs, cfg = self._rs, self.config
        if len(rs.context().query_devices()) == 0:
            raise CameraError("no RealSense camera connected (or no permission for its USB device); "
                              "set 'recording' to play a file instead")
        rs_config = rs.config()
        if cfg.serial:
            rs_config.enable_device(cfg.serial)
        rs_config.enable_stream(rs.stream.depth, cfg.width, cfg.height, rs.format.z16, cfg.fps)
        if cfg.color:
            rs_config.enable_stream(rs.stream.color, cfg.width, cfg.height, rs.format.rgb8, cfg.fps)
        self._pipeline = rs.pipeline()
        try:
            profile = self._pipeline.start(rs_config)
        except RuntimeError as exc:
            self._pipeline = None
            raise CameraError(f"cannot start the RealSense ({cfg.serial or 'first device'}, {cfg.width}x"
                              f"{cfg.height} @ {cfg.fps} fps): {exc}") from exc
        self._depth_scale = profile.get_device().first_depth_sensor().get_depth_scale()

    def _make_filters(self) -> list:
        rs, cfg = self._rs, self.config
        filters = []
        if cfg.decimation > 1:
            decimation = rs.decimation_filter()
            decimation.set_option(rs.option.filter_magnitude, cfg.decimation)
            filters.append(decimation)
        if cfg.spatial:
            spatial = rs.spatial_filter()
            spatial.set_option(rs.option.filter_smooth_alpha, cfg.spatial_alpha)
            spatial.set_option(rs.option.filter_smooth_delta, cfg.spatial_delta)
            filters.append(spatial)
        if cfg.temporal:
            temporal = rs.temporal_filter()
            temporal.set_option(rs.option.filter_smooth_alpha, cfg.temporal_alpha)
            temporal.set_option(rs.option.filter_smooth_delta, cfg.temporal_delta)
            filters.append(temporal)
        if cfg.hole_filling >= 0:
            filters.append(rs.hole_filling_filter(cfg.hole_filling))
        return filters

    # -- frames --------------------------------------------------------------------------------------

    def _next_frameset(self) -> tuple:
        """(filtered depth frame, aligned colour frame or None)."""
        raw = self._wait()
        if self._align is not None:
            frameset = self._align.process(raw.as_frameset())
            depth, color = frameset.get_depth_frame(), frameset.get_color_frame()
        else:
            depth = raw.as_frameset().get_depth_frame() if raw.is_frameset() else raw
            color = None
        for f in self._filters:
            depth = f.process(depth)
        return depth.as_depth_frame(), color

    def _wait(self):
        timeout = self.config.timeout_ms
        if self._pipeline is not None:
            ok, frames = self._pipeline.try_wait_for_frames(timeout)
            if not ok:
                raise CameraError(f"no frame from the RealSense within {timeout} ms (cable or power?)")
            return frames
        deadline = time.monotonic() + timeout / 1000.0
        while True:
            wait = self._queue.try_wait_for_frames if self.config.color else self._queue.try_wait_for_frame
            ok, frames = wait(50)
            if ok and (not self.config.color or frames.get_depth_frame()):
                return frames
            stopped = self._playback.current_status() == self._rs.playback_status.stopped
            if stopped and not ok:
                raise EndOfRecording(f"end of recording {self.config.recording!r} after {self._index} frames")
            if time.monotonic() > deadline:
                raise CameraError(f"no frame from recording {self.config.recording!r} within {timeout} ms")

    def _spec_from(self, frames: tuple) -> CameraSpec:
        intr = frames[0].profile.as_video_stream_profile().get_intrinsics()
        try:
            intrinsics = CameraIntrinsics(float(intr.fx), float(intr.fy), float(intr.ppx), float(intr.ppy),
                                          int(intr.width), int(intr.height), float(self._depth_scale))
            return CameraSpec.create(intrinsics, np.asarray(self.config.extrinsics, dtype=np.float64), self.config.name)
        except SpecError as exc:
            raise CameraError(f"unusable camera model from the RealSense: {exc}") from exc


def _first_with_stream(device, stream):
    for sensor in device.query_sensors():
        if any(p.stream_type() == stream for p in sensor.get_stream_profiles()):
            return sensor
    return None


def _resize_nearest(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Colour aligned to full-resolution depth, sampled down to a decimated depth image."""
    if image.shape[:2] == shape:
        return image
    rows = (np.arange(shape[0]) * image.shape[0]) // shape[0]
    cols = (np.arange(shape[1]) * image.shape[1]) // shape[1]
    return image[rows][:, cols]


def write_recording(path: str | Path, depth_frames: Sequence[np.ndarray], intrinsics: CameraIntrinsics,
                    timestamps_s: Sequence[float], fps: int = 30) -> Path:
    """Record uint16 depth images through a software device: a real ``.db3`` file, no camera needed."""
    rs = _rs()
    path = Path(path)
    if len(depth_frames) != len(timestamps_s) or not depth_frames:
        raise CameraError(f"need one timestamp per frame and at least one frame, got {len(depth_frames)} frames "
                          f"and {len(timestamps_s)} timestamps")
    for i, img in enumerate(depth_frames):
        if img.dtype != np.uint16 or img.shape != (intrinsics.height, intrinsics.width):
            raise CameraError(f"frame {i}: expected uint16 [{intrinsics.height}, {intrinsics.width}], got "
                              f"{img.dtype} {list(img.shape)}")
    device = rs.software_device()
    sensor = device.add_sensor("Depth")
    profile = sensor.add_video_stream(_video_stream(rs, intrinsics, fps)).as_video_stream_profile()
    sensor.add_read_only_option(rs.option.depth_units, float(intrinsics.depth_scale))
    recorder = rs.recorder(str(path), device)
    queue = rs.frame_queue(4)
    sensor.open(profile)
    sensor.start(queue)
    for i, (img, stamp) in enumerate(zip(depth_frames, timestamps_s, strict=True)):
        pixels = np.ascontiguousarray(img)  # kept alive until the frame is consumed below (docs/ARCHITECTURE.md)
        frame = rs.software_video_frame()  # a fresh frame object every time: reusing one corrupts the heap
        frame.pixels = pixels
        frame.bpp = 2
        frame.stride = intrinsics.width * 2
        frame.timestamp = float(stamp) * 1000.0
        frame.domain = rs.timestamp_domain.hardware_clock
        frame.frame_number = i
        frame.profile = profile
        frame.depth_units = float(intrinsics.depth_scale)
        sensor.on_video_frame(frame)
        queue.wait_for_frame(2000)
        del pixels
    sensor.stop()
    sensor.close()
    del recorder  # the file is complete once the recorder is released
    return path


def _video_stream(rs, intrinsics: CameraIntrinsics, fps: int):
    intr = rs.intrinsics()
    intr.width, intr.height = intrinsics.width, intrinsics.height
    intr.fx, intr.fy, intr.ppx, intr.ppy = intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy
    intr.model = rs.distortion.brown_conrady
    intr.coeffs = [0.0] * 5
    stream = rs.video_stream()
    stream.type, stream.index, stream.uid = rs.stream.depth, 0, 0
    stream.width, stream.height, stream.fps, stream.bpp = intrinsics.width, intrinsics.height, fps, 2
    stream.fmt = rs.format.z16
    stream.intrinsics = intr
    return stream
