"""URArm (hardware/ur.py) against in-process stand-ins for ur_rtde: no ur_rtde package, no robot.

The stand-ins play ``RTDEControlInterface``, ``RTDEReceiveInterface`` and ``RTDEIOInterface`` (the driver's
gripper is a standard digital output) with the same positional signatures as ur_rtde's Python bindings, and
record every call. Behind them a small controller model keeps the TCP pose in the robot base frame: ``moveL``
puts it on the target, ``servoL`` sets a target the arm covers a fraction of between two pose reads (a lagging
arm), ``moveJ`` turns wrist 3 (and refuses to model any other joint moving). They are injected through
``URArm(cfg, rtde=(control, receive, io))`` or, for ``robot-stack run``'s own path, as the ``rtde_control`` /
``rtde_receive`` / ``rtde_io`` modules in ``sys.modules``. Expected poses are computed here with scipy's
``Rotation``, independently of the driver's own conversions.

The ur_rtde API the driver relies on, checked against ur_rtde's sources (rtde_control_interface.h/.cpp,
rtde_receive_interface.cpp, rtde_io_interface.h) and its pybind11 bindings:

- ``RTDEControlInterface(hostname, frequency=-1.0, ...)``, ``RTDEReceiveInterface(hostname, frequency=-1.0,
  ...)``, ``RTDEIOInterface(hostname, ...)``: host, then frequency; a failed connection raises RuntimeError.
- ``servoL(pose, speed, acceleration, time, lookahead_time, gain) -> bool``, positional only in the bindings;
  speed and acceleration unused; lookahead in [0.03, 0.2] s and gain in [100, 2000], else std::range_error
  (ValueError in Python); False on a protective or emergency stop or when the control script is not running.
- ``moveL(pose, speed=0.25, acceleration=1.2, asynchronous=False) -> bool``: m/s and m/s^2.
- ``moveJ(q, speed=1.05, acceleration=1.4, asynchronous=False) -> bool``: six joint positions in radians, rad/s
  and rad/s^2 of the leading joint (the oldest releases check speed <= 1 and acceleration <= 2, like moveL's);
  blocking, False when the move did not complete. A list of lists selects the path overload instead.
- A pose is ``[x, y, z, rx, ry, rz]`` in the base frame: metres and an axis-angle rotation vector (radians);
  ``getActualTCPPose()`` returns the same.
- ``servoStop(a=10.0)``, ``speedStop(a=10.0)``, ``stopScript()``, ``disconnect()``; ``isConnected()`` on the
  control and receive interfaces. After its connection drops, the receive interface keeps returning the last
  pose it received, so the driver asks ``isConnected()`` before trusting a pose.
- ``RTDEIOInterface.setStandardDigitalOut(output_id 0-7, signal_level) -> bool``; its ``disconnect()`` exists
  only in newer releases.
- ``RTDEReceiveInterface.getActualQ() -> list[float]``: the six actual joint positions in radians, base first,
  wrist 3 last.

The controller model's wrist 3 turns by minus the tool's yaw change about the base z axis, the nearest way
round (the IK solution nearest the current joints), as a UR's does with the tool pointing down; the other
joints stay put (translations do not turn the model's base joint).
"""

from __future__ import annotations

import math
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hardware.ur import URArm, URConfig, _matrix_to_rotvec
from robot_stack.config import ConfigError, load
from robot_stack.devices import ArmCommand, ArmError, Camera, DepthFrame
from robot_stack.jobs.run import RunConfig, make_arm, robot_parts
from robot_stack.runtime import ControlLoop, LoopConfig, SafetyConfig, SafetyFilter
from robot_stack.specs import ActionSpec, CameraIntrinsics, CameraSpec, PolicySpec, WorkspaceBox, look_down_pose

LAUNCH = Path(__file__).resolve().parent.parent / "launch" / "real_ur.yaml"
HOST = "10.0.0.7"
MOTION = ("moveL", "moveJ", "servoL", "servoStop", "speedStop", "stopScript", "setStandardDigitalOut")


# ---- frames, computed independently of the driver ---------------------------------------------------------
def transform(yaw: float, t: list[float], tilt: float = 0.0) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = (Rotation.from_euler("z", yaw) * Rotation.from_euler("x", tilt)).as_matrix()
    m[:3, 3] = t
    return m


BASE_TO_WORLD = transform(math.pi / 2, [0.1, -0.4, -0.02])  # base turned 90 deg, 2 cm below the table top


def tool_down(yaw: float) -> np.ndarray:
    return (Rotation.from_euler("z", yaw) * Rotation.from_euler("x", math.pi)).as_matrix()


def base_pose(world_from_base: np.ndarray, pos: list[float], yaw: float) -> list[float]:
    world = np.eye(4)
    world[:3, :3], world[:3, 3] = tool_down(yaw), pos
    base = np.linalg.inv(world_from_base) @ world
    return [*base[:3, 3], *Rotation.from_matrix(base[:3, :3]).as_rotvec()]


def world_pose(world_from_base: np.ndarray, pose: list[float]) -> tuple[np.ndarray, np.ndarray]:
    base = np.eye(4)
    base[:3, :3], base[:3, 3] = Rotation.from_rotvec(pose[3:]).as_matrix(), pose[:3]
    world = world_from_base @ base
    return world[:3, 3], world[:3, :3]


# ---- the ur_rtde stand-ins --------------------------------------------------------------------------------
class Controller:
    """The UR controller behind the stand-ins; ``calls`` is every call made on any interface, in order."""

    def __init__(self, tcp: list[float], follow: float = 1.0, wrist3: float = 0.0) -> None:
        self.tcp = np.asarray(tcp, dtype=np.float64)
        self.q = np.array([0.0, -math.pi / 2, math.pi / 2, -math.pi / 2, -math.pi / 2, wrist3])
        self.wrist3_targets: list[float] = []  # wrist 3 at each servoL target, had the arm reached it
        self.target: np.ndarray | None = None
        self.follow = follow
        self.connected = True
        self.calls: list[tuple[str, tuple]] = []
        self.raises: dict[str, Exception] = {}
        self.returns: dict[str, Any] = {}

    def call(self, name: str, *args: Any) -> Any:
        self.calls.append((name, args))
        if name in self.raises:
            raise self.raises[name]
        return self.returns.get(name, True)

    def named(self, *names: str) -> list[tuple[str, tuple]]:
        return [c for c in self.calls if c[0] in names]

    def read(self) -> list[float]:
        if self.target is not None:  # time passed since the last read: the arm moved on towards its target
            self.tcp[:3] += self.follow * (self.target[:3] - self.tcp[:3])
            self.move_to(self.target[3:])
        return self.tcp.tolist()

    def wrist3_at(self, rotvec: np.ndarray) -> float:
        turn = tool_yaw(rotvec) - tool_yaw(self.tcp[3:])
        return float(self.q[5] - ((turn + math.pi) % (2 * math.pi) - math.pi))

    def move_to(self, rotvec: np.ndarray) -> None:
        self.q[5] = self.wrist3_at(rotvec)
        self.tcp[3:] = rotvec

    def move_joints(self, q: np.ndarray) -> None:
        if not np.allclose(q[:5], self.q[:5], atol=1e-12):
            raise AssertionError(f"the stand-in models wrist 3 turning alone, got {q} from {self.q}")
        turn = Rotation.from_euler("z", -(q[5] - self.q[5]))  # the tool's yaw turns by minus wrist 3's turn
        self.tcp[3:] = (turn * Rotation.from_rotvec(self.tcp[3:])).as_rotvec()
        self.q[5], self.target = q[5], None


def tool_yaw(rotvec: np.ndarray) -> float:
    m = Rotation.from_rotvec(rotvec).as_matrix()
    return math.atan2(m[1, 0], m[0, 0])


class FakeControl:
    def __init__(self, ctl: Controller, hostname: str, frequency: float = -1.0) -> None:
        self.ctl = ctl
        ctl.call("RTDEControlInterface", hostname, frequency)

    def servoL(self, pose, speed, acceleration, time, lookahead_time, gain) -> bool:
        ok = self.ctl.call("servoL", list(pose), speed, acceleration, time, lookahead_time, gain)
        if ok:
            self.ctl.target = np.asarray(pose, dtype=np.float64)
            self.ctl.wrist3_targets.append(self.ctl.wrist3_at(self.ctl.target[3:]))
        return ok

    def moveL(self, pose, speed=0.25, acceleration=1.2, asynchronous=False) -> bool:
        ok = self.ctl.call("moveL", list(pose), speed, acceleration)
        if ok:
            self.ctl.move_to(np.asarray(pose[3:], dtype=np.float64))
            self.ctl.tcp[:3], self.ctl.target = pose[:3], None
        return ok

    def moveJ(self, q, speed=1.05, acceleration=1.4, asynchronous=False) -> bool:
        ok = self.ctl.call("moveJ", list(q), speed, acceleration)
        if ok:
            self.ctl.move_joints(np.asarray(q, dtype=np.float64))
        return ok

    def servoStop(self, a=10.0) -> bool:
        self.ctl.target = None
        return self.ctl.call("servoStop")

    def speedStop(self, a=10.0) -> bool:
        return self.ctl.call("speedStop")

    def stopScript(self) -> None:
        self.ctl.call("stopScript")

    def isConnected(self) -> bool:
        self.ctl.call("control.isConnected")
        return self.ctl.connected

    def disconnect(self) -> None:
        self.ctl.call("control.disconnect")


class FakeReceive:
    def __init__(self, ctl: Controller, hostname: str, frequency: float = -1.0) -> None:
        self.ctl = ctl
        ctl.call("RTDEReceiveInterface", hostname, frequency)

    def getActualTCPPose(self) -> list[float]:
        self.ctl.call("getActualTCPPose")
        return self.ctl.read()

    def getActualQ(self) -> list[float]:
        answer = self.ctl.call("getActualQ")
        self.ctl.read()
        return self.ctl.q.tolist() if answer is True else answer

    def isConnected(self) -> bool:
        self.ctl.call("receive.isConnected")
        return self.ctl.connected

    def disconnect(self) -> None:
        self.ctl.call("receive.disconnect")


class FakeIO:
    def __init__(self, ctl: Controller, hostname: str) -> None:
        self.ctl = ctl
        ctl.call("RTDEIOInterface", hostname)

    def setStandardDigitalOut(self, output_id: int, signal_level: bool) -> bool:
        return self.ctl.call("setStandardDigitalOut", output_id, signal_level)

    def disconnect(self) -> None:
        self.ctl.call("io.disconnect")


def rtde_modules(ctl: Controller) -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    control, receive, io = (types.ModuleType(n) for n in ("rtde_control", "rtde_receive", "rtde_io"))
    control.RTDEControlInterface = lambda *a: FakeControl(ctl, *a)
    receive.RTDEReceiveInterface = lambda *a: FakeReceive(ctl, *a)
    io.RTDEIOInterface = lambda *a: FakeIO(ctl, *a)
    return control, receive, io


# ---- fixtures ---------------------------------------------------------------------------------------------
HOME = [0.5, 0.0, 0.15]
START_YAW = 0.3
SAFETY = SafetyConfig(workspace=WorkspaceBox(0.35, 0.65, -0.15, 0.15, 0.0, 0.3), margin=0.02, max_step=0.02,
                      max_dyaw=0.2, gripper_min_periods=0)
ACTION = ActionSpec(dpos=0.05, dtheta=math.pi / 8)


def make_arm_with(follow: float = 1.0, log: Any = print, wrist3: float = 0.0, clock: Any = time.monotonic,
                  **cfg: Any) -> tuple[URArm, Controller]:
    cfg = {"host": HOST, "base_to_world": BASE_TO_WORLD.tolist(), "home": HOME, **cfg}
    world_from_base = np.asarray(cfg["base_to_world"])
    ctl = Controller(base_pose(world_from_base, [0.45, 0.05, 0.2], START_YAW), follow, wrist3)
    return URArm(URConfig(**cfg), rtde=rtde_modules(ctl), log=log, clock=clock), ctl


def last_servo(ctl: Controller) -> tuple:
    return ctl.named("servoL")[-1][1]


# ---- commands and frames ----------------------------------------------------------------------------------
def test_reset_moves_home_in_the_base_frame_with_the_tool_down_and_the_gripper_open():
    arm, ctl = make_arm_with(speed=0.1, acceleration=0.3)
    state = arm.reset()
    assert [c[0] for c in ctl.named(*MOTION)] == ["setStandardDigitalOut", "servoStop", "moveL", "moveJ"]
    assert ctl.named("setStandardDigitalOut")[0][1] == (0, False)  # close_high: open is the low level
    pose, speed, acceleration = ctl.named("moveL")[0][1]
    np.testing.assert_allclose(pose, base_pose(BASE_TO_WORLD, HOME, START_YAW), atol=1e-12)
    assert (speed, acceleration) == (0.1, 0.3)
    np.testing.assert_allclose(state.ee_pos, HOME, atol=1e-12)
    assert state.ee_yaw == pytest.approx(START_YAW) and state.gripper == 0.0


@pytest.mark.parametrize("start_deg, home_deg", [(265.0, 0.0), (-268.0, 30.0), (0.0, -120.0)])
def test_reset_unwinds_wrist3_at_home_turning_it_alone(start_deg, home_deg):
    arm, ctl = make_arm_with(wrist3=math.radians(start_deg), home_wrist3_deg=home_deg, joint_speed=0.4,
                             joint_acceleration=0.8)
    others = ctl.q[:5].copy()
    state = arm.reset()
    assert [c[0] for c in ctl.named(*MOTION)] == ["setStandardDigitalOut", "servoStop", "moveL", "moveJ"]
    np.testing.assert_allclose(ctl.named("moveL")[0][1][0], base_pose(BASE_TO_WORLD, HOME, START_YAW), atol=1e-12)
    q, speed, acceleration = ctl.named("moveJ")[0][1]
    np.testing.assert_allclose(q, [*others, math.radians(home_deg)], atol=1e-12)
    assert (speed, acceleration) == (0.4, 0.8)
    assert ctl.q[5] == pytest.approx(math.radians(home_deg))
    np.testing.assert_allclose(state.ee_pos, HOME, atol=1e-12)  # the TCP, on wrist 3's axis, stayed at home
    expected = math.remainder(math.radians(start_deg - home_deg), 2 * math.pi)  # wrist 3 turns by minus the yaw
    assert yaw_change(state.ee_yaw, START_YAW) == pytest.approx(expected)
    command, clipped = arm.limit_command(ArmCommand(dpos=np.zeros(3), dyaw=0.2))
    assert not clipped and command.dyaw == 0.2  # the next episode's yaw steps have room again


@pytest.mark.parametrize("move", ["moveL", "moveJ"])
@pytest.mark.parametrize("failure", [False, RuntimeError("Lost connection to robot")])
def test_a_failing_move_in_reset_is_an_arm_error_saying_where_the_arm_was_left(move, failure):
    arm, ctl = make_arm_with(wrist3=math.radians(265.0))
    if isinstance(failure, Exception):
        ctl.raises[move] = failure
    else:
        ctl.returns[move] = failure
    left = "did not reach home, wrist 3 not unwound" if move == "moveL" else \
        r"is at home, wrist 3 not unwound \(it was at 265\.0 deg\)"
    with pytest.raises(ArmError, match=f"UR {move} .*failed.*; the arm {left}") as err:
        arm.reset()
    assert err.value.__cause__ is (failure if isinstance(failure, Exception) else None)
    assert len(ctl.named("moveJ")) == (0 if move == "moveL" else 1)
    assert ctl.named("servoL") == []
    ctl.raises.pop(move, None)
    ctl.returns.pop(move, None)
    state = arm.reset()  # a reset after the failure starts over: both moves again
    assert ctl.q[5] == pytest.approx(0.0) and state.ee_pos == pytest.approx(HOME)


def test_after_a_failed_unwind_apply_steps_from_where_the_arm_is_not_from_the_pose_before_reset():
    arm, ctl = make_arm_with()
    arm.reset()
    for _ in range(3):
        arm.apply(ArmCommand(dpos=np.array([0.0, 0.02, 0.0])))
    ctl.returns["moveJ"] = False
    with pytest.raises(ArmError, match="moveJ unwinding wrist 3"):
        arm.reset()
    arm.apply(ArmCommand(dpos=np.zeros(3)))
    np.testing.assert_allclose(world_pose(BASE_TO_WORLD, last_servo(ctl)[0])[0], HOME, atol=1e-12)


def test_a_policy_action_becomes_the_right_servol_target():
    arm, ctl = make_arm_with(period=0.1, lookahead=0.05, gain=500)
    state = arm.reset()
    command, report = SafetyFilter(SAFETY, ACTION)(np.array([0.2, -0.2, 0.1, 0.5, 1.0]), state)
    assert not report.clipped
    arm.apply(command)
    pose, speed, acceleration, period, lookahead, gain = last_servo(ctl)
    assert (speed, acceleration, period, lookahead, gain) == (0.0, 0.0, 0.1, 0.05, 500)
    pos, rot = world_pose(BASE_TO_WORLD, pose)
    np.testing.assert_allclose(pos, np.add(HOME, [0.01, -0.01, 0.005]), atol=1e-12)  # 0.05 m per action unit
    np.testing.assert_allclose(rot, tool_down(START_YAW + math.pi / 16), atol=1e-12)  # pi/8 rad per unit
    np.testing.assert_allclose(rot[:, 2], [0, 0, -1], atol=1e-12)
    # the same target by hand: base turned +90 deg about z, so world +x is base -y
    expected = [HOME[1] + 0.4 - 0.01, -(HOME[0] - 0.1 + 0.01), HOME[2] + 0.02 + 0.005]
    np.testing.assert_allclose(pose[:3], expected, atol=1e-12)
    assert ctl.named("setStandardDigitalOut")[-1][1] == (0, True)


def test_the_gripper_output_follows_the_config_and_only_toggles_on_change():
    arm, ctl = make_arm_with(gripper_output=3, gripper_close_high=False)
    arm.reset()
    for grip in (1.0, 1.0, -1.0, -1.0):
        state = arm.apply(ArmCommand(dpos=np.zeros(3), gripper=grip))
    assert [c[1] for c in ctl.named("setStandardDigitalOut")] == [(3, True), (3, False), (3, True)]
    assert state.gripper == 0.0
    arm, ctl = make_arm_with(gripper_output=-1)
    arm.reset()
    arm.apply(ArmCommand(dpos=np.zeros(3), gripper=1.0))
    assert ctl.named("setStandardDigitalOut") == [] and arm.state().gripper == 1.0


def test_targets_stay_in_the_box_and_within_a_step_of_the_filtered_state_while_the_arm_lags():
    arm, ctl = make_arm_with(follow=0.5)
    filt = SafetyFilter(SAFETY, ACTION)
    state = arm.reset()
    rng = np.random.default_rng(0)
    top = -math.inf
    pushes = [np.array([0.0, 0.0, 1.0, 1.0, 0.0])] * 20 + [np.array([1.0, -1.0, -1.0, -1.0, 0.0])] * 30
    for action in pushes + list(rng.uniform(-1.5, 1.5, size=(100, 5))):
        command, _ = filt(action, state)
        seen = state
        state = arm.apply(command)
        pos, rot = world_pose(BASE_TO_WORLD, last_servo(ctl)[0])
        assert np.all(pos >= SAFETY.low - 1e-9) and np.all(pos <= SAFETY.high + 1e-9), pos
        assert np.linalg.norm(pos - seen.ee_pos) <= SAFETY.max_step + 1e-9
        yaw_step = math.atan2(rot[1, 0], rot[0, 0]) - seen.ee_yaw
        assert abs((yaw_step + math.pi) % (2 * math.pi) - math.pi) <= SAFETY.max_dyaw + 1e-9
        top = max(top, pos[2])
    assert top == pytest.approx(SAFETY.high[2], abs=1e-9)  # the pushes did reach the box's top face


def test_hold_servos_to_the_current_pose_and_touches_nothing_else():
    arm, ctl = make_arm_with(follow=0.5)
    arm.reset()
    arm.apply(ArmCommand(dpos=np.array([0.02, 0.0, 0.0]), gripper=1.0))
    before = len(ctl.calls)
    state = arm.hold()
    assert [c[0] for c in ctl.calls[before:] if c[0] in MOTION] == ["servoL"]
    pos, rot = world_pose(BASE_TO_WORLD, last_servo(ctl)[0])
    read_pos, _ = world_pose(BASE_TO_WORLD, ctl.tcp.tolist())
    np.testing.assert_allclose(pos, read_pos, atol=1e-12)  # where the arm was when hold read it
    np.testing.assert_allclose(state.ee_pos, pos, atol=1e-12)
    np.testing.assert_allclose(rot, tool_down(START_YAW), atol=1e-12)
    assert state.gripper == 1.0


def test_stop_stops_motion_and_keeps_the_connection_close_also_disconnects():
    arm, ctl = make_arm_with()
    arm.reset()
    arm.apply(ArmCommand(dpos=np.array([0.01, 0.0, 0.0])))
    before = len(ctl.calls)
    arm.stop()
    assert [c[0] for c in ctl.calls[before:]] == ["servoStop", "speedStop"]
    arm.hold()  # the loop holds between episodes after a stop
    before = len(ctl.calls)
    arm.close()
    names = [c[0] for c in ctl.calls[before:]]
    assert names == ["servoStop", "speedStop", "stopScript", "control.disconnect", "receive.disconnect",
                     "io.disconnect"]
    arm.close()
    assert len(ctl.calls) == before + len(names)
    with pytest.raises(ArmError, match="closed"):
        arm.apply(ArmCommand(dpos=np.zeros(3)))


# ---- failures ---------------------------------------------------------------------------------------------
def test_a_lost_connection_is_an_arm_error_and_the_stale_pose_is_never_sent():
    arm, ctl = make_arm_with()
    arm.reset()
    servos = len(ctl.named("servoL"))
    ctl.connected = False
    with pytest.raises(ArmError, match=f"lost the RTDE connection to the UR controller at {HOST}"):
        arm.hold()
    with pytest.raises(ArmError, match="lost the RTDE"):
        arm.apply(ArmCommand(dpos=np.array([0.01, 0.0, 0.0])))
    assert len(ctl.named("servoL")) == servos


@pytest.mark.parametrize("call, failure, match", [
    ("servoL", RuntimeError("RTDEControlInterface: Lost connection to robot"), "UR servoL failed .*Lost connection"),
    ("servoL", ValueError("The value is not within [0.03;0.2]"), r"servoL failed .*ValueError.*not within"),
    ("servoL", False, "servoL refused the target"),
    ("getActualTCPPose", RuntimeError("unable to get state data"), "getActualTCPPose failed .*unable to get"),
    ("setStandardDigitalOut", RuntimeError("io"), "setStandardDigitalOut failed"),
    ("setStandardDigitalOut", False, "refused to set digital output 0"),
])
def test_interface_failures_during_apply_become_arm_errors(call, failure, match):
    arm, ctl = make_arm_with()
    arm.reset()
    if isinstance(failure, Exception):
        ctl.raises[call] = failure
    else:
        ctl.returns[call] = failure
    with pytest.raises(ArmError, match=match) as err:
        arm.apply(ArmCommand(dpos=np.array([0.0, 0.01, 0.0]), gripper=1.0))
    assert err.value.__cause__ is (failure if isinstance(failure, Exception) else None)


def test_a_refused_move_home_and_a_failing_stop_are_arm_errors():
    arm, ctl = make_arm_with()
    ctl.returns["moveL"] = False
    with pytest.raises(ArmError, match="moveL to home failed .*did not reach home, wrist 3 not unwound"):
        arm.reset()
    assert ctl.named("moveJ") == []
    ctl.raises["servoStop"] = RuntimeError("Lost connection")
    with pytest.raises(ArmError, match="servoStop failed"):
        arm.stop()
    with pytest.raises(ArmError, match="servoStop failed"):
        arm.close()
    assert ctl.named("control.disconnect", "receive.disconnect", "io.disconnect")  # released all the same


def test_a_failed_connection_names_the_host_and_releases_what_was_connected():
    ctl = Controller(base_pose(np.eye(4), HOME, 0.0))
    control, receive, io = rtde_modules(ctl)

    def refuse(*args):
        raise RuntimeError("Connection refused")

    receive.RTDEReceiveInterface = refuse
    with pytest.raises(ArmError, match=f"cannot connect to the UR controller at {HOST}: Connection refused"):
        URArm(URConfig(host=HOST), rtde=(control, receive, io))
    assert ctl.named("control.disconnect")


def test_missing_ur_rtde_gives_the_install_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "rtde_control", None)  # import rtde_control -> ImportError
    with pytest.raises(ArmError, match=r"needs ur_rtde: pip install '\.\[ur\]'"):
        URArm(URConfig())
    with pytest.raises(ArmError, match="needs ur_rtde"):
        make_arm(load(RunConfig, LAUNCH))


# ---- wrist 3 ----------------------------------------------------------------------------------------------
LIMIT_DEG = 300.0
LIMIT = math.radians(LIMIT_DEG)
NEAR_LIMIT_DEG = math.degrees(-LIMIT + 0.5)  # a home angle 0.5 rad inside the limit, on the side +dyaw turns to


def yaw_change(after: float, before: float) -> float:
    return math.remainder(after - before, 2 * math.pi)


def test_many_positive_yaw_steps_never_turn_wrist3_past_its_limit_and_a_step_back_is_taken_whole():
    arm, ctl = make_arm_with(wrist3_limit_deg=LIMIT_DEG, home_wrist3_deg=NEAR_LIMIT_DEG)
    arm.reset()  # +dyaw turns wrist 3 negative: 0.5 rad left
    for _ in range(60):
        arm.apply(ArmCommand(dpos=np.zeros(3), dyaw=0.15))
    assert min(ctl.wrist3_targets) >= -LIMIT - 1e-9
    assert ctl.q[5] == pytest.approx(-LIMIT)  # it got there: the limit stopped it, not the number of steps
    yaw = arm.state().ee_yaw
    arm.apply(ArmCommand(dpos=np.zeros(3), dyaw=-0.15))
    assert ctl.wrist3_targets[-1] == pytest.approx(-LIMIT + 0.15)
    assert yaw_change(arm.state().ee_yaw, yaw) == pytest.approx(-0.15)


def test_from_beyond_the_limit_only_steps_back_are_taken():
    arm, ctl = make_arm_with(wrist3_limit_deg=LIMIT_DEG)
    arm.reset()
    ctl.q[5] = LIMIT + 0.1  # a translation turned it there (the base joint swings, wrist 3 follows)
    yaw = arm.state().ee_yaw
    arm.apply(ArmCommand(dpos=np.zeros(3), dyaw=-0.15))
    assert ctl.wrist3_targets[-1] == pytest.approx(LIMIT + 0.1)
    assert yaw_change(arm.state().ee_yaw, yaw) == pytest.approx(0.0, abs=1e-12)
    arm.apply(ArmCommand(dpos=np.zeros(3), dyaw=0.15))
    assert ctl.wrist3_targets[-1] == pytest.approx(LIMIT - 0.05)


def test_apply_right_after_limit_command_reuses_its_joint_reading_and_still_limits_what_it_is_given():
    arm, ctl = make_arm_with(wrist3_limit_deg=LIMIT_DEG, home_wrist3_deg=math.degrees(-LIMIT + 0.1))
    arm.reset()
    big = ArmCommand(dpos=np.zeros(3), dyaw=0.5)
    command, clipped = arm.limit_command(big)
    assert clipped and command.dyaw == pytest.approx(0.1)
    reads = len(ctl.named("getActualQ"))
    arm.apply(big)  # not the command limit_command returned: limited all the same
    assert len(ctl.named("getActualQ")) == reads
    assert ctl.wrist3_targets[-1] == pytest.approx(-LIMIT)


@pytest.mark.parametrize("between", ["no limit_command", "state", "hold", "an earlier apply", "a period later"])
def test_apply_reads_the_joints_itself_unless_limit_command_was_the_last_call_within_a_period(between):
    now = [0.0]
    arm, ctl = make_arm_with(wrist3_limit_deg=LIMIT_DEG, home_wrist3_deg=NEAR_LIMIT_DEG, clock=lambda: now[0])
    arm.reset()
    turn = ArmCommand(dpos=np.zeros(3), dyaw=0.3)
    if between != "no limit_command":
        assert arm.limit_command(turn) == (turn, False)  # 0.5 rad left when it read the joints
    if between == "state":
        arm.state()
    elif between == "hold":
        arm.hold()
    elif between == "an earlier apply":
        arm.apply(ArmCommand(dpos=np.zeros(3)))
    elif between == "a period later":
        now[0] += 0.1 + 1e-6
    ctl.q[5] = -LIMIT + 0.05  # a translation turned wrist 3 on since: only a fresh reading knows
    reads = len(ctl.named("getActualQ"))
    arm.apply(turn)
    assert len(ctl.named("getActualQ")) == reads + 1
    assert ctl.wrist3_targets[-1] == pytest.approx(-LIMIT)


@pytest.mark.parametrize("failure, match", [
    (RuntimeError("unable to get state data"), r"UR getActualQ failed .*RuntimeError: unable to get state data"),
    ([0.1] * 5, r"UR getActualQ returned unusable joint positions: \[0\.1, 0\.1, 0\.1, 0\.1, 0\.1\]"),
    ([0.0] * 5 + [math.nan], "UR getActualQ returned unusable joint positions"),
    (None, "UR getActualQ returned unusable joint positions: None"),
])
def test_unusable_joint_positions_are_an_arm_error_and_nothing_moves(failure, match):
    arm, ctl = make_arm_with()
    arm.reset()
    servos = len(ctl.named("servoL"))
    if isinstance(failure, Exception):
        ctl.raises["getActualQ"] = failure
    else:
        ctl.returns["getActualQ"] = failure
    with pytest.raises(ArmError, match=match):
        arm.limit_command(ArmCommand(dpos=np.zeros(3)))
    with pytest.raises(ArmError, match=match):
        arm.apply(ArmCommand(dpos=np.array([0.01, 0.0, 0.0]), dyaw=0.1))
    assert len(ctl.named("servoL")) == servos


# ---- the control loop driving the UR arm ------------------------------------------------------------------
class FlatCamera(Camera):
    def __init__(self) -> None:
        self._spec = CameraSpec.create(CameraIntrinsics.from_fovy(45.0, 8, 8), look_down_pose((0.5, 0.0, 0.6)))

    @property
    def spec(self) -> CameraSpec:
        return self._spec

    def read(self) -> DepthFrame:
        return DepthFrame(depth=np.full((8, 8), 0.6, np.float32), spec=self._spec)


class ScriptedPolicy:
    """Answers ``actions`` in turn, then calls ``then`` (which may raise: a silent policy)."""

    def __init__(self, spec: PolicySpec, actions: list[np.ndarray], then) -> None:
        self.spec, self.actions, self.then = spec, list(actions), then

    def act(self, obs: dict, timeout: float | None = None) -> np.ndarray:
        if self.actions:
            return self.actions.pop(0)
        return self.then()


def loop_for(arm: URArm, actions: list[np.ndarray], then) -> tuple[ControlLoop, list[str]]:
    cfg = load(RunConfig, LAUNCH)
    spec = PolicySpec(*robot_parts(cfg, arm))
    log: list[str] = []
    size = spec.heightmap.size
    loop = ControlLoop(arm, FlatCamera(), lambda frame: np.zeros((size, size), np.float32),
                       ScriptedPolicy(spec, actions, then), SafetyFilter(cfg.safety, spec.action), spec,
                       LoopConfig(rate_hz=10, silent_periods=3, max_steps=20, realtime=False), log=log.append)
    return loop, log


def silent() -> np.ndarray:
    raise TimeoutError("no answer")


def test_the_loop_holds_on_missed_answers_then_stops_the_ur_arm():
    arm, ctl = make_arm_with()
    loop, _ = loop_for(arm, [np.array([0.2, 0.0, 0.0, 0.0, 1.0])] * 2, silent)
    result = loop.run_episode()
    assert result.reason == "policy_silent" and result.held == 3
    names = [c[0] for c in ctl.named(*MOTION)]
    assert names == ["setStandardDigitalOut", "servoStop", "moveL", "moveJ", "servoL", "setStandardDigitalOut",
                     "servoL", "servoL", "servoL", "servoL", "servoStop", "speedStop"]
    holds = [world_pose(BASE_TO_WORLD, c[1][0])[0] for c in ctl.named("servoL")[2:]]
    np.testing.assert_allclose(holds, [holds[0]] * 3, atol=1e-12)  # an arm that got there stays there
    np.testing.assert_allclose(holds[0], np.add(HOME, [0.02, 0.0, 0.0]), atol=1e-12)


def test_the_loop_counts_shortened_yaw_steps_as_clips_and_the_arm_notes_them_once_per_episode():
    notes: list[str] = []
    arm, ctl = make_arm_with(wrist3_limit_deg=LIMIT_DEG, home_wrist3_deg=NEAR_LIMIT_DEG, log=notes.append)
    turn = np.array([0.0, 0.0, 0.0, 0.5, -1.0])  # 0.5 * pi/8 = 0.196 rad a period, under max_dyaw: no filter clip
    loop, _ = loop_for(arm, [], lambda: turn)
    first, second = loop.run_episode(), loop.run_episode()
    assert (first.reason, first.steps, second.steps) == ("max_steps", 20, 20)
    assert (first.clipped, second.clipped) == (18, 18)  # two whole steps fit in the 0.5 rad left, then none
    assert len(notes) == 2 and all(note.startswith("UR wrist 3 at -") for note in notes)
    assert min(ctl.wrist3_targets) >= -LIMIT - 1e-9


def test_the_loop_reads_the_joints_once_a_period_and_checks_the_connection_before_every_read():
    arm, ctl = make_arm_with(wrist3_limit_deg=LIMIT_DEG, home_wrist3_deg=NEAR_LIMIT_DEG)
    loop, _ = loop_for(arm, [], lambda: np.array([0.0, 0.0, 0.0, 0.5, -1.0]))
    result = loop.run_episode()
    assert result.steps == 20 and result.clipped == 18
    period_calls = ctl.calls[ctl.calls.index(ctl.named("moveJ")[0]) + 1:]
    names = [c[0] for c in period_calls]
    assert names.count("getActualQ") == result.steps
    assert names.count("receive.isConnected") == names.count("getActualQ") + names.count("getActualTCPPose")
    for before, name in zip(names, names[1:], strict=False):
        if name in ("getActualQ", "getActualTCPPose"):
            assert before == "receive.isConnected"


def test_a_connection_lost_mid_episode_ends_it_with_an_arm_error_and_an_attempted_stop():
    arm, ctl = make_arm_with()

    def drop() -> np.ndarray:
        ctl.connected = False
        ctl.raises["servoStop"] = RuntimeError("Lost connection to robot")
        return np.array([0.2, 0.0, 0.0, 0.0, -1.0])

    loop, log = loop_for(arm, [np.array([0.2, 0.0, 0.0, 0.0, -1.0])], drop)
    with pytest.raises(ArmError, match="lost the RTDE"):
        loop.run_episode()
    assert any(msg.startswith("arm stop failed: UR servoStop failed") for msg in log)


# ---- launch file and config -------------------------------------------------------------------------------
def test_real_ur_launch_file_builds_the_arm_robot_stack_run_builds(monkeypatch):
    ctl = Controller(base_pose(np.eye(4), HOME, 0.0))
    for module in rtde_modules(ctl):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    cfg = load(RunConfig, LAUNCH, ["arm.ur.host=10.1.2.3"])
    arm = make_arm(cfg)
    assert isinstance(arm, URArm)
    assert arm.cfg == URConfig(host="10.1.2.3", frequency=500.0, period=0.1, lookahead=0.1, gain=300.0, speed=0.1,
                               acceleration=0.3, home=[0.5, 0.0, 0.15], gripper_output=0, gripper_close_high=True,
                               wrist3_limit_deg=270.0, home_wrist3_deg=0.0, joint_speed=0.5, joint_acceleration=1.0)
    assert ctl.calls == [("RTDEControlInterface", ("10.1.2.3", 500.0)), ("RTDEReceiveInterface", ("10.1.2.3", 500.0)),
                         ("RTDEIOInterface", ("10.1.2.3",))]
    assert arm.cfg.period == pytest.approx(cfg.loop.period)  # servoL targets spread over one loop period
    low, high = cfg.safety.low, cfg.safety.high
    assert np.all(np.asarray(arm.cfg.home) >= low) and np.all(np.asarray(arm.cfg.home) <= high)
    _, action, heightmap = robot_parts(cfg, arm)
    assert (action.dpos, action.dtheta, heightmap.size) == (0.05, pytest.approx(math.pi / 8), 64)
    assert arm.reset().ee_pos == pytest.approx(HOME)


@pytest.mark.parametrize("override, match", [
    ("arm.ur.hots=10.0.0.1", r"arm\.ur: unknown key\(s\) \['hots'\]"),
    ("arm.ur.frequency=fast", r"arm\.ur\.frequency: expected a number"),
    ("arm.ur.lookahead=0.5", r"arm\.ur: lookahead must be in \[0\.03, 0\.2\] s, got 0\.5"),
    ("arm.ur.gain=50", r"arm\.ur: gain must be in \[100, 2000\]"),
    ("arm.ur.speed=2.5", r"arm\.ur: speed must be in"),
    ("arm.ur.period=0", r"arm\.ur: period must be in"),
    ("arm.ur.gripper_output=8", r"arm\.ur: gripper_output must be a standard digital output 0-7 or -1, got 8"),
    ("arm.ur.home=[0.5,0.0]", r"arm\.ur: home must be"),
    ("arm.ur.base_to_world=[[2,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]", r"arm\.ur: base_to_world must be a rigid"),
    ("arm.ur.base_to_world=[[1,0,0],[0,1,0],[0,0,1]]", r"arm\.ur: base_to_world must be a finite 4x4"),
    ("arm.ur.wrist3_limit_deg=400", r"arm\.ur: wrist3_limit_deg must be in \[1, 360\] deg, got 400"),
    ("arm.ur.home_wrist3_deg=280", r"arm\.ur: home_wrist3_deg must be in \[-270, 270\] deg \(\+-wrist3_limit_deg\)"),
    ("arm.ur.home_wrist3_deg=nan", r"arm\.ur: home_wrist3_deg must be in"),
    ("arm.ur.joint_speed=1.5", r"arm\.ur: joint_speed must be in \[1e-06, 1\] rad/s, got 1\.5"),
    ("arm.ur.joint_acceleration=0", r"arm\.ur: joint_acceleration must be in \[1e-06, 2\] rad/s\^2, got 0"),
])
def test_a_bad_ur_config_is_a_clear_error_naming_the_key_before_connecting(monkeypatch, override, match):
    ctl = Controller(base_pose(np.eye(4), HOME, 0.0))
    for module in rtde_modules(ctl):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    with pytest.raises(ConfigError, match=match):
        make_arm(load(RunConfig, LAUNCH, [override]))
    assert ctl.calls == []


# ---- rotation vectors -------------------------------------------------------------------------------------
def test_matrix_to_rotvec_is_exact_for_every_rotation_including_half_turns():
    rng = np.random.default_rng(1)
    axes = rng.normal(size=(400, 3))
    axes[::4, 0] = 0.0  # half-turns about axes in the y-z plane lost their axis before
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.concatenate([np.full(200, math.pi), math.pi - 10.0 ** rng.uniform(-9, -2, 100),
                             rng.uniform(0, math.pi, 100)])
    for axis, angle in zip(axes, angles, strict=True):
        m = Rotation.from_rotvec(axis * angle).as_matrix()
        rv = _matrix_to_rotvec(m)
        assert np.linalg.norm(rv) <= math.pi + 1e-9
        np.testing.assert_allclose(Rotation.from_rotvec(rv).as_matrix(), m, atol=1e-9)


def test_a_tilted_calibration_still_commands_the_tool_straight_down():
    tilted = transform(-2.0, [0.2, 0.3, -0.1], tilt=1.5e-6)  # a base a hair off level, turned so the axis is in y-z
    arm, ctl = make_arm_with(base_to_world=tilted.tolist())
    arm.reset()
    for yaw in (0.0, math.pi - START_YAW, 2.0):
        arm.apply(ArmCommand(dpos=np.zeros(3), dyaw=yaw - arm.state().ee_yaw))
        _, rot = world_pose(tilted, last_servo(ctl)[0])
        np.testing.assert_allclose(rot, tool_down(yaw), atol=1e-9)
