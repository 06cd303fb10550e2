"""URArm (hardware/ur.py) against the UR controller double (hardware/ur_double.py): no ur_rtde, no robot.

The double plays ur_rtde's ``RTDEControlInterface``, ``RTDEReceiveInterface``, ``RTDEIOInterface`` and
``DashboardClient`` with their positional signatures and records every call; behind them a controller model
with the timing of a real one (servo targets take effect over their ``time``, the measured pose lags, moves
take distance / speed, a watchdog, safety stops). Most tests run it on a fake clock and tick the driver's
streaming thread by hand (tests/ur_rig.py); the thread tests run it for real. The day-one defects of issue 23
are in tests/test_ur_day_one.py, the step/box property in tests/test_ur_property.py.

The ur_rtde API the driver relies on, checked against ur_rtde's sources (rtde_control_interface.h,
rtde_receive_interface.h, dashboard_client.h) and its pybind11 bindings:

- ``RTDEControlInterface(hostname, frequency=-1.0, ...)``, ``RTDEReceiveInterface(hostname, frequency=-1.0,
  ...)``: -1 lets ur_rtde pick the controller's rate (500 Hz e-series, 125 Hz CB3).
- ``servoL(pose, speed, acceleration, time, lookahead_time, gain) -> bool``: lookahead in [0.03, 0.2] s and
  gain in [100, 2000], else ValueError; False on a safety stop or when the control script is not running.
- ``moveL(pose, speed, acceleration, asynchronous)``, ``moveJ(q, speed, acceleration, asynchronous)``;
  ``getAsyncOperationProgress() < 0`` once an asynchronous move is over.
- ``initPeriod()`` / ``waitPeriod(t)``: the realtime loop's pacing at the interface's rate.
- ``setWatchdog(min_frequency)`` / ``kickWatchdog()``: the script's ``rtde_set_watchdog(..., "stop")``.
- ``setTcp(pose)``, ``getTCPOffset()``, ``setPayload(mass, cog)``; ``isProgramRunning()``, ``reuploadScript()``.
- ``RTDEReceiveInterface.getSafetyMode()`` (1 normal, 3 protective stop, 7 robot emergency stop, ...),
  ``getActualTCPPose()``, ``getActualQ()``, ``isConnected()`` (after a lost connection it keeps returning the
  last values, so the driver asks ``isConnected()`` first).
- ``DashboardClient(hostname)``: ``connect()``, ``polyscopeVersion()``, ``closeSafetyPopup()``,
  ``unlockProtectiveStop()``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from ur_rig import ACTION, BASE_TO_WORLD, HOME, HOST, SAFETY, TCP, Rig, base_pose, tool_down, transform, world_of

from hardware.ur import URArm, URConfig, _matrix_to_rotvec
from hardware.ur_double import RealClock, URControllerDouble
from robot_stack.config import ConfigError, load
from robot_stack.devices import ArmCommand, ArmError
from robot_stack.jobs.run import RunConfig, make_arm, robot_parts
from robot_stack.runtime import SafetyFilter

LAUNCH = Path(__file__).resolve().parent.parent / "launch" / "real_ur.yaml"
MOTION = ("moveL", "moveJ", "servoL", "servoStop", "speedStop", "stopScript", "setStandardDigitalOut")
START_YAW = 0.3


def down_rig(**cfg) -> Rig:
    """A rig whose arm starts tool-down at yaw 0.3, away from home."""
    return Rig(start=base_pose([0.45, 0.05, 0.2], tool_down(START_YAW)), **cfg)


def yaw_change(after: float, before: float) -> float:
    return math.remainder(after - before, 2 * math.pi)


# ---- reset and frames -------------------------------------------------------------------------------------------
def test_reset_moves_home_in_the_base_frame_with_the_tool_down_and_the_gripper_open():
    rig = down_rig(speed=0.1, acceleration=0.3)
    state = rig.arm.reset()
    assert [c[0] for c in rig.ctl.named(*MOTION)] == ["setStandardDigitalOut", "servoStop", "moveL", "moveJ"]
    assert rig.ctl.named("setStandardDigitalOut")[0][1] == (0, False)  # close_high: open is the low level
    pose, speed, acceleration, asynchronous = rig.ctl.named("moveL")[0][1]
    np.testing.assert_allclose(pose, base_pose(HOME, tool_down(START_YAW)), atol=1e-12)
    assert (speed, acceleration, asynchronous) == (0.1, 0.3, True)
    np.testing.assert_allclose(state.ee_pos, HOME, atol=2e-3)
    assert state.ee_yaw == pytest.approx(START_YAW, abs=1e-3) and state.gripper == 0.0


@pytest.mark.parametrize("start_deg, home_deg", [(265.0, 0.0), (-268.0, 30.0), (0.0, -120.0)])
def test_reset_unwinds_wrist3_at_home_turning_it_alone(start_deg, home_deg):
    rig = down_rig(wrist3=math.radians(start_deg), home_wrist3_deg=home_deg, joint_speed=0.8, joint_acceleration=0.8)
    others = rig.ctl.q[:5].copy()
    state = rig.arm.reset()
    q, speed, acceleration, _ = rig.ctl.named("moveJ")[0][1]
    np.testing.assert_allclose(q, [*others, math.radians(home_deg)], atol=1e-12)
    assert (speed, acceleration) == (0.8, 0.8)
    assert rig.ctl.q[5] == pytest.approx(math.radians(home_deg), abs=1e-3)
    np.testing.assert_allclose(state.ee_pos, HOME, atol=2e-3)
    expected = math.remainder(math.radians(start_deg - home_deg), 2 * math.pi)  # wrist 3 turns by minus the yaw
    assert yaw_change(state.ee_yaw, START_YAW) == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("move", ["moveL", "moveJ"])
@pytest.mark.parametrize("failure", [False, RuntimeError("Lost connection to robot")])
def test_a_failing_move_in_reset_is_an_arm_error_saying_where_the_arm_was_left(move, failure):
    rig = down_rig(wrist3=math.radians(265.0))
    if isinstance(failure, Exception):
        rig.ctl.raises[move] = failure
    else:
        rig.ctl.returns[move] = failure
    left = "did not reach home, wrist 3 not unwound" if move == "moveL" else \
        r"is at home, wrist 3 not unwound \(it was at 265\.0 deg\)"
    with pytest.raises(ArmError, match=f"UR {move} .*failed.*; the arm {left}"):
        rig.arm.reset()
    assert rig.ctl.servo_targets == []
    rig.ctl.raises.pop(move, None)
    rig.ctl.returns.pop(move, None)
    state = rig.arm.reset()  # a reset after the failure starts over
    assert rig.ctl.q[5] == pytest.approx(0.0, abs=1e-3) and state.ee_pos == pytest.approx(HOME, abs=2e-3)


def test_a_policy_action_becomes_the_right_streamed_target():
    rig = down_rig(lookahead=0.05, gain=500)
    state = rig.arm.reset()
    command, report = SafetyFilter(SAFETY, ACTION)(np.array([0.2, -0.2, 0.1, 0.5, 1.0]), state)
    assert not report.clipped
    rig.arm.apply(command)
    rig.advance(0.1)
    pose, speed, acceleration, period, lookahead, gain = rig.ctl.named("servoL")[-1][1]
    assert (speed, acceleration, period, lookahead, gain) == (0.0, 0.0, pytest.approx(1 / 500), 0.05, 500)
    pos, rot = world_of(pose)
    np.testing.assert_allclose(pos, state.ee_pos + [0.01, -0.01, 0.005], atol=1e-12)  # 0.05 m per action unit
    np.testing.assert_allclose(rot.as_matrix(), tool_down(state.ee_yaw + math.pi / 16).as_matrix(), atol=1e-9)
    assert rig.ctl.outputs[0] is True


def test_a_tilted_calibration_still_commands_the_tool_straight_down():
    tilted = transform(-2.0, [0.2, 0.3, -0.1])
    tilted[:3, :3] = tilted[:3, :3] @ Rotation.from_euler("x", 1.5e-6).as_matrix()
    rig = Rig(start=base_pose([0.45, 0.05, 0.2], tool_down(0.3), tilted), base_to_world=tilted.tolist())
    rig.arm.reset()
    for yaw in (0.0, 0.15, 0.3):
        state = rig.arm.state()
        rig.arm.apply(ArmCommand(dpos=np.zeros(3), dyaw=yaw_change(yaw, state.ee_yaw)))
        rig.advance(0.1)
        _, rot = world_of(rig.ctl.named("servoL")[-1][1][0], tilted)
        np.testing.assert_allclose(rot.as_matrix()[:, 2], [0, 0, -1], atol=1e-9)


def test_matrix_to_rotvec_is_exact_for_every_rotation_including_half_turns():
    rng = np.random.default_rng(1)
    axes = rng.normal(size=(400, 3))
    axes[::4, 0] = 0.0
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.concatenate([np.full(200, math.pi), math.pi - 10.0 ** rng.uniform(-9, -2, 100),
                             rng.uniform(0, math.pi, 100)])
    for axis, angle in zip(axes, angles, strict=True):
        m = Rotation.from_rotvec(axis * angle).as_matrix()
        np.testing.assert_allclose(Rotation.from_rotvec(_matrix_to_rotvec(m)).as_matrix(), m, atol=1e-9)


# ---- stop, close, failures ------------------------------------------------------------------------------------
def test_stop_stops_motion_and_keeps_the_connection_close_also_disconnects():
    rig = down_rig()
    rig.arm.reset()
    rig.arm.apply(ArmCommand(dpos=np.array([0.01, 0.0, 0.0])))
    before = len(rig.ctl.calls)
    rig.arm.stop()
    assert [c[0] for c in rig.ctl.calls[before:] if c[0] in MOTION] == ["servoStop", "speedStop"]
    sent = len(rig.ctl.servo_targets)
    rig.advance(0.1)
    assert len(rig.ctl.servo_targets) == sent  # idle: the stream only kicks the watchdog
    rig.arm.close()
    names = [c[0] for c in rig.ctl.calls]
    assert names[-4:] == ["control.disconnect", "receive.disconnect", "io.disconnect", "dashboard.disconnect"]
    assert "stopScript" in names
    with pytest.raises(ArmError, match="closed"):
        rig.arm.apply(ArmCommand(dpos=np.zeros(3)))


def test_a_lost_connection_is_an_arm_error_and_the_stale_pose_is_never_sent():
    rig = down_rig()
    rig.arm.reset()
    rig.ctl.disconnect_client()
    with pytest.raises(ArmError, match=f"lost the RTDE connection to the UR controller at {HOST}"):
        rig.arm.hold()
    with pytest.raises(ArmError, match="lost the RTDE"):
        rig.arm.apply(ArmCommand(dpos=np.array([0.01, 0.0, 0.0])))


@pytest.mark.parametrize("call, failure, match", [
    ("servoL", RuntimeError("RTDEControlInterface: Lost connection to robot"), "servo stream stopped .*Lost conn"),
    ("servoL", False, "servo stream stopped .*refused a servo target"),
    ("getActualTCPPose", RuntimeError("unable to get state data"), "getActualTCPPose failed .*unable to get"),
    ("setStandardDigitalOut", False, "refused to set digital output 0"),
])
def test_interface_failures_become_arm_errors(call, failure, match):
    rig = down_rig()
    rig.arm.reset()
    if isinstance(failure, Exception):
        rig.ctl.raises[call] = failure
    else:
        rig.ctl.returns[call] = failure
    rig.arm.apply(ArmCommand(dpos=np.array([0.0, 0.01, 0.0]))) if call == "servoL" else None
    rig.advance(0.02)
    with pytest.raises(ArmError, match=match):
        rig.arm.apply(ArmCommand(dpos=np.array([0.0, 0.01, 0.0]), gripper=1.0))


def test_a_failed_connection_names_the_host_and_releases_what_was_connected():
    ctl = URControllerDouble(base_pose(HOME, tool_down(0.0)))
    control, receive, io, dashboard = ctl.modules()

    def refuse(*args):
        raise RuntimeError("Connection refused")

    receive.RTDEReceiveInterface = refuse
    with pytest.raises(ArmError, match=f"cannot connect to the UR controller at {HOST}: Connection refused"):
        URArm(URConfig(host=HOST, tcp_offset=TCP, payload_mass=1.0), rtde=(control, receive, io, dashboard),
              stream_thread=False)
    assert ctl.named("control.disconnect")


def test_missing_ur_rtde_gives_the_install_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "rtde_control", None)  # import rtde_control -> ImportError
    with pytest.raises(ArmError, match=r"needs ur_rtde: pip install '\.\[ur\]'"):
        URArm(URConfig(tcp_offset=TCP, payload_mass=1.0))
    with pytest.raises(ArmError, match="needs ur_rtde"):
        make_arm(load(RunConfig, LAUNCH))


# ---- wrist 3 ----------------------------------------------------------------------------------------------------
LIMIT_DEG = 300.0
LIMIT = math.radians(LIMIT_DEG)


def test_many_positive_yaw_steps_never_turn_wrist3_past_its_limit_and_a_step_back_is_taken_whole():
    rig = down_rig(wrist3_limit_deg=LIMIT_DEG, home_wrist3_deg=math.degrees(-LIMIT + 0.5))
    rig.arm.reset()  # +dyaw turns wrist 3 negative: 0.5 rad left
    for _ in range(15):
        command, _ = rig.arm.limit_command(ArmCommand(dpos=np.zeros(3), dyaw=0.15))
        rig.arm.apply(command)
        rig.advance(0.1)
        assert rig.ctl.q[5] >= -LIMIT - 1e-6
    rig.advance(0.3)
    assert rig.ctl.q[5] == pytest.approx(-LIMIT, abs=5e-3)  # the limit stopped it, not the number of steps
    command, clipped = rig.arm.limit_command(ArmCommand(dpos=np.zeros(3), dyaw=-0.15))
    assert not clipped and command.dyaw == pytest.approx(-0.15)


# ---- the launch file and the config ---------------------------------------------------------------------------
def test_real_ur_launch_file_builds_the_arm_robot_stack_run_builds(monkeypatch):
    ctl = URControllerDouble(base_pose(HOME, tool_down(0.0), np.eye(4)))
    for module in ctl.modules():
        monkeypatch.setitem(sys.modules, module.__name__, module)
    cfg = load(RunConfig, LAUNCH, ["arm.ur.host=10.1.2.3"])
    arm = make_arm(cfg, log=lambda line: None)
    try:
        assert isinstance(arm, URArm)
        assert (arm.cfg.frequency, arm.cfg.tcp_mode, arm.cfg.gripper) == (0.0, "set", "digital")
        assert ctl.named("RTDEControlInterface")[0][1] == ("10.1.2.3", -1.0)
        assert ctl.tcp_offset == arm.cfg.tcp_offset and ctl.watchdog_hz == arm.cfg.watchdog_hz
        assert arm.cfg.period == pytest.approx(cfg.loop.period)
        low, high = cfg.safety.low, cfg.safety.high
        assert np.all(np.asarray(arm.cfg.home) >= low) and np.all(np.asarray(arm.cfg.home) <= high)
        _, action, heightmap = robot_parts(cfg, arm)
        assert (action.dpos, heightmap.size) == (0.05, 64)
    finally:
        arm.close()


@pytest.mark.parametrize("override, match", [
    ("arm.ur.hots=10.0.0.1", r"arm\.ur: unknown key\(s\) \['hots'\]"),
    ("arm.ur.frequency=600", r"arm\.ur: frequency must be in \[125, 500\] Hz \(or 0"),
    ("arm.ur.lookahead=0.5", r"arm\.ur: lookahead must be in \[0\.03, 0\.2\] s, got 0\.5"),
    ("arm.ur.gain=50", r"arm\.ur: gain must be in \[100, 2000\]"),
    ("arm.ur.tcp_offset=[0,0,0.1]", r"arm\.ur: tcp_offset must be the flange -> TCP pose"),
    ("arm.ur.payload_mass=-1", r"arm\.ur: payload_mass must be"),
    ("arm.ur.tcp_mode=guess", r"arm\.ur\.tcp_mode: 'guess' is not one of \['set', 'check'\]"),
    ("arm.ur.gripper=vacuum", r"arm\.ur\.gripper: 'vacuum' is not one of"),
    ("arm.ur.watchdog_hz=0", r"arm\.ur: watchdog_hz must be in"),
    ("arm.ur.robotiq.force=300", r"robotiq\.force must be 0-255"),
    ("arm.ur.gripper_output=8", r"arm\.ur: gripper_output must be a standard digital output 0-7 or -1, got 8"),
    ("arm.ur.base_to_world=[[2,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]", r"arm\.ur: base_to_world must be a rigid"),
    ("arm.ur.home_wrist3_deg=280", r"arm\.ur: home_wrist3_deg must be in \[-270, 270\] deg"),
    ("arm.ur.rt_priority=120", r"arm\.ur: rt_priority must be an integer in \[0, 99\]"),
])
def test_a_bad_ur_config_is_a_clear_error_naming_the_key_before_connecting(monkeypatch, override, match):
    ctl = URControllerDouble(base_pose(HOME, tool_down(0.0), np.eye(4)))
    for module in ctl.modules():
        monkeypatch.setitem(sys.modules, module.__name__, module)
    with pytest.raises(ConfigError, match=match):
        make_arm(load(RunConfig, LAUNCH, [override]))
    assert ctl.calls == []


# ---- the streaming thread, for real ------------------------------------------------------------------------------
def threaded(watchdog_hz: float = 10.0, stall_timeout: float = 0.2,
             log=lambda line: None) -> tuple[URArm, URControllerDouble]:
    ctl = URControllerDouble(base_pose(HOME, tool_down(0.0)), clock=RealClock(), move_settle=0.02)
    cfg = URConfig(host=HOST, home=HOME, base_to_world=BASE_TO_WORLD.tolist(), tcp_offset=[0.0] * 6,
                   payload_mass=1.0, watchdog_hz=watchdog_hz, stall_timeout=stall_timeout, speed=1.0)
    return URArm(cfg, rtde=ctl.modules(), log=log), ctl


def test_the_stream_thread_asks_for_real_time_priority_and_a_short_lock_handover_then_gives_the_latter_back(
        monkeypatch):
    asked = []
    monkeypatch.setattr("os.sched_setscheduler",
                        lambda pid, policy, param: asked.append((pid, policy, param.sched_priority)))
    before = sys.getswitchinterval()
    lines: list[str] = []
    arm, _ = threaded(log=lines.append)
    try:
        assert asked[0] == (0, os.SCHED_FIFO, URConfig.rt_priority)  # 0: the calling thread, the stream's own
        assert sys.getswitchinterval() <= 1e-4
        assert any("streaming at 500 Hz (SCHED_FIFO priority 80)" in line for line in lines)
    finally:
        arm.close()
    assert sys.getswitchinterval() == before


def test_a_refused_real_time_priority_is_logged_and_the_stream_still_streams(monkeypatch):
    def refuse(pid, policy, param):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr("os.sched_setscheduler", refuse)
    lines: list[str] = []
    arm, ctl = threaded(log=lines.append)
    try:
        arm.reset()
        for _ in range(3):
            arm.apply(ArmCommand(dpos=np.array([0.01, 0.0, 0.0])))
            time.sleep(0.1)
        assert len(ctl.servo_times) > 50 and not ctl.reported_stop()
    finally:
        arm.close()
    assert any(line.startswith("UR stream: rt_priority 80: not permitted") for line in lines)
    assert any("streaming at 500 Hz (normal scheduling)" in line for line in lines)


def test_the_thread_streams_while_the_loop_calls_and_the_controller_stops_when_the_loop_stalls():
    arm, ctl = threaded()
    try:
        arm.reset()
        for _ in range(5):
            arm.apply(ArmCommand(dpos=np.array([0.01, 0.0, 0.0])))
            time.sleep(0.1)
        assert not ctl.reported_stop() and len(ctl.servo_times) > 100
        stalled_at = time.monotonic()
        deadline = stalled_at + 2.0
        while not ctl.reported_stop() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ctl.reported_stop() and "watchdog" in ctl.stop_reason
        assert ctl.stopped_at - stalled_at <= 0.2 + 0.1 + 0.05  # stall_timeout + 1/watchdog_hz (+ scheduling)
        with pytest.raises(ArmError, match="servo stream stopped|no call from the loop"):
            arm.apply(ArmCommand(dpos=np.zeros(3)))
        arm.reset()  # uploads the script again, sets the watchdog again
        assert ctl.program_running and ctl.watchdog_hz == 10.0
    finally:
        arm.close()


def test_a_killed_client_stops_the_controller_within_the_watchdog_time():
    arm, ctl = threaded(watchdog_hz=20.0)
    try:
        arm.reset()
        ctl.kill_client()
        killed = time.monotonic()
        time.sleep(0.2)
        assert ctl.reported_stop() and ctl.stopped_at - killed <= 1 / 20 + 0.01
    finally:
        ctl.killed = False
        arm.close()
