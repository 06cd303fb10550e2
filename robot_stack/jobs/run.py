"""The run job: the real-time control loop (sim or UR arm, local or remote policy), recorded.

camera -> HeightmapProjector -> policy (local OnnxPolicy or remote PolicyClient) -> SafetyFilter -> arm,
at ``loop.rate_hz``. See launch/sim_robot.yaml and launch/real_ur.yaml, and docs/deploy.md."""

from __future__ import annotations

import math
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from robot_stack.config import ConfigError, build, check_choice
from robot_stack.jobs.serving import spawn_server
from robot_stack.runtime.control import LoopConfig
from robot_stack.runtime.safety import SafetyConfig
from robot_stack.specs import (
    VIEWS,
    ActionSpec,
    GripperFootprint,
    HeightmapSpec,
    ObservationSpec,
    PolicySpec,
    SpecError,
    WorkspaceBox,
)


@dataclass
class PolicySource:
    """Where actions come from: ``package`` in-process, ``server`` remote, or ``spawn_server`` (loopback)."""

    package: str = ""
    server: str = ""
    spawn_server: bool = False
    token_env: str = "ROBOT_STACK_TOKEN"
    threads: int = 1


@dataclass
class ArmSection:
    kind: Literal["sim", "ur"] = "sim"
    task: str = "toy_reach"
    seed: int | None = 0
    sim: dict = field(default_factory=dict)    # sim.make_env options
    ur: dict = field(default_factory=dict)     # hardware.ur.URConfig fields

    def __post_init__(self) -> None:
        # only the kind's own section: a UR section needs fields a sim run has no use for
        if self.kind == "sim":
            import sim

            sim.env_config(self.task, self.sim, "sim")
        else:
            from hardware.ur import URConfig

            build(URConfig, self.ur, "ur")


@dataclass
class CameraSection:
    kind: Literal["sim", "realsense"] = "sim"
    realsense: dict = field(default_factory=dict)  # hardware.camera_config.RealSenseConfig fields (calibration)

    def __post_init__(self) -> None:
        if self.kind == "realsense":
            from hardware.camera_config import RealSenseConfig

            build(RealSenseConfig, self.realsense, "realsense")


@dataclass
class RobotSection:
    """The real robot's heightmap and action scaling (the sim takes these from its env).

    ``view`` is the heightmap view (``workspace`` or ``gripper``, robot_stack.specs.VIEWS), ``extent`` the metres
    it covers (0: the view's default) and ``gripper`` the finger pads a gripper view draws; channels and shapes
    follow from the ``HeightmapSpec`` built here (``heightmap_spec``), and all of it must match the package's."""

    heightmap_size: int = 64
    workspace: WorkspaceBox = field(default_factory=WorkspaceBox)
    view: str = "workspace"
    extent: float = 0.0
    gripper: GripperFootprint = field(default_factory=GripperFootprint)
    dpos: float = 0.05
    dtheta: float = 0.39269908169872414

    def __post_init__(self) -> None:
        check_choice("view", self.view, VIEWS)
        try:
            HeightmapSpec(self.heightmap_size, self.workspace, self.view)
        except SpecError as exc:  # one line naming the key
            raise ConfigError(f"{'heightmap_size' if 'size' in str(exc) else 'workspace'}: {exc}") from None
        try:
            self.heightmap_spec()
        except SpecError as exc:
            raise ConfigError(f"extent: {exc}") from None
        if not (math.isfinite(self.dpos) and self.dpos > 0):
            raise ConfigError(f"dpos: must be a positive number of metres, got {self.dpos}")
        if not (math.isfinite(self.dtheta) and self.dtheta >= 0):
            raise ConfigError(f"dtheta: must be a number of radians >= 0 (0: no yaw), got {self.dtheta}")

    def heightmap_spec(self) -> HeightmapSpec:
        return HeightmapSpec(self.heightmap_size, self.workspace, self.view, self.extent, self.gripper)


@dataclass
class RecordSection:
    """``keep_depth`` stores each step's raw depth frame too, so the store can be re-projected into another view
    later (``robot-stack data reproject``); about 0.3 MB a step at 640x480 z16."""

    enabled: bool = True
    path: str = "runs/episodes.zarr"
    keep_depth: bool = False


@dataclass
class RunConfig:
    policy: PolicySource = field(default_factory=PolicySource)
    arm: ArmSection = field(default_factory=ArmSection)
    camera: CameraSection = field(default_factory=CameraSection)
    robot: RobotSection = field(default_factory=RobotSection)
    loop: LoopConfig = field(default_factory=LoopConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    record: RecordSection = field(default_factory=RecordSection)


def make_arm(cfg: RunConfig, log: Callable[[str], None] = print):
    if cfg.arm.kind == "sim":
        from hardware.sim_arm import SimArm

        return SimArm.from_task(cfg.arm.task, seed=cfg.arm.seed, **cfg.arm.sim)
    from hardware.ur import URArm, URConfig

    return URArm(build(URConfig, cfg.arm.ur, "arm.ur"), log=log)


def make_camera(cfg: RunConfig, arm: Any):
    if cfg.camera.kind == "sim":
        if not hasattr(arm, "camera"):
            raise SystemExit("camera.kind=sim needs arm.kind=sim")
        return arm.camera()
    from hardware.camera_config import RealSenseConfig
    from hardware.realsense import RealSenseCamera

    return RealSenseCamera(build(RealSenseConfig, cfg.camera.realsense, "camera.realsense"))


def robot_parts(cfg: RunConfig, arm: Any) -> tuple[ObservationSpec, ActionSpec, HeightmapSpec]:
    if hasattr(arm, "obs_spec"):
        return arm.obs_spec, arm.action_spec, arm.hm_spec
    hm = cfg.robot.heightmap_spec()
    return ObservationSpec.create(hm), ActionSpec(cfg.robot.dpos, cfg.robot.dtheta), hm


def robot_spec_for(parts: tuple[ObservationSpec, ActionSpec, HeightmapSpec], policy_spec: PolicySpec) -> PolicySpec:
    """The robot's spec with the package's group and family: only structural differences are refused."""
    return PolicySpec(parts[0], parts[1], parts[2], policy_spec.group, policy_spec.family, policy_spec.version)


def make_policy(cfg: RunConfig, parts, cleanup: list, log: Callable[[str], None] = print):
    from robot_stack.runtime import PolicyClient, load_policy_package, read_spec
    from robot_stack.runtime.realtime import zmq_context

    src = cfg.policy
    if src.server or src.spawn_server:
        endpoint = src.server
        if src.spawn_server:
            # a local server answers inside the loop's period: it gets the loop's priority
            proc, endpoint = spawn_server(src.package, src.token_env, rt_priority=cfg.loop.rt_priority, log=log)
            cleanup.append(proc.stop)
        client = PolicyClient(endpoint, token=os.environ.get(src.token_env) or None,
                              context=zmq_context(cfg.loop.rt_priority))
        cleanup.append(client.close)
        client.hello(robot_spec_for(parts, client.spec))
        return client, client.spec
    if not src.package:
        raise SystemExit("policy: set package (local ONNX), server (endpoint) or spawn_server: true")
    spec, _ = read_spec(src.package)
    policy = load_policy_package(src.package, robot_spec_for(parts, spec), threads=src.threads)
    return policy, policy.spec


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, systemd stop, a supervisor) ends the run the way Ctrl-C does: the arm is stopped, the
    episode closed and recorded, the server and the recorder shut down. Python's default for SIGTERM is to exit
    at once, with no clean-up at all."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_config(cfg: RunConfig, keys: Any = None, log=print) -> int:
    results = run_episodes(cfg, keys, log)
    return 3 if results and results[-1].reason == "camera_lost" else 0


def run_episodes(cfg: RunConfig, keys: Any = None, log=print) -> list:
    """Run the loop as ``cfg`` says; returns one ``EpisodeResult`` per episode."""
    from hardware.sim_arm import projector_for
    from robot_stack.runtime import ControlLoop, SafetyFilter
    from robot_stack.runtime.keys import HELP as KEY_HELP
    from robot_stack.runtime.keys import KeyReader

    cleanup: list = []
    arm = make_arm(cfg, log)
    cleanup.append(arm.close)
    recorder = None
    try:
        camera = make_camera(cfg, arm)
        cleanup.append(camera.close)
        parts = robot_parts(cfg, arm)
        policy, spec = make_policy(cfg, parts, cleanup, log)
        if cfg.record.enabled:
            from robot_stack.recorder import EpisodeRecorder

            recorder = EpisodeRecorder(cfg.record.path, parts[0], parts[1],
                                       {"robot": cfg.arm.kind, "task": cfg.arm.task, "policy": cfg.policy.package,
                                        "policy_group": spec.group, "policy_family": spec.family},
                                       keep_depth=cfg.record.keep_depth)
            cleanup.append(recorder.close)
        keys = keys if keys is not None else KeyReader()
        cleanup.append(keys.close)
        if getattr(keys, "enabled", False):
            log(KEY_HELP)
        safety = SafetyFilter(cfg.safety, parts[1])
        loop = ControlLoop(arm, camera, projector_for(camera, parts[2]), policy, safety, spec, cfg.loop,
                           recorder=recorder, keys=keys, log=log)
        results = loop.run()
    finally:
        for fn in reversed(cleanup):
            try:
                fn()
            except Exception as exc:  # keep closing the rest (the recorder must get its close)
                log(f"cleanup: {type(exc).__name__}: {exc}")
    done = sum(r.success for r in results)
    log(f"{len(results)} episode(s), {done} successful" + (f", recorded to {cfg.record.path}" if recorder else ""))
    return results
