"""The UR arm's day-one defects (issue 23), each against the timing-faithful controller double.

Every test here failed on the driver before the fix (hardware/ur.py at f235f44, run through the same double):
1 a parked arm snapped to tool-down while the loop waited for ``s``; 2 the TCP and payload were never set or
checked; 3 one ``servoL`` with ``time = 0.1`` a period and a state one period stale; 4 a protective stop
escaped as a vague ``ArmError``; 5 no watchdog; 6 a fixed 500 Hz, the gripper's state was the last command,
no Robotiq gripper, and launch/real_ur.yaml's advice on the table height was wrong.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from ur_rig import HOME, SAFETY, TCP, ListRecorder, Rig, RigKeys, loop_for, world_of

from hardware.ur_double import UNLOCK_DELAY, RobotiqDouble
from robot_stack.devices import ArmCommand, ArmError

LAUNCH = Path(__file__).resolve().parent.parent / "launch" / "real_ur.yaml"


# ---- 1: a safe start -----------------------------------------------------------------------------------------
def test_1_nothing_moves_before_reset_and_reset_says_what_it_will_do():
    rig = Rig()
    parked = rig.ctl.meas.as6()
    keys = RigKeys(rig, 0.1, schedule={4: ["start"]})
    loop = loop_for(rig, lambda i: np.zeros(5), keys, max_steps=2)
    loop.run(episodes=1)
    first_move = next(i for i, c in enumerate(rig.ctl.calls) if c[0] in ("moveL", "moveJ", "servoL"))
    assert rig.ctl.calls[first_move][0] == "moveL"  # the move home comes first: no servo while waiting for s
    assert keys.samples[3][1] == pytest.approx(world_of(parked)[0], abs=1e-9)  # still parked at the 4th poll
    plan = [line for line in rig.log if "home" in line and "m/s" in line]
    assert plan, rig.log  # the operator is told where the arm goes and how fast before it moves


def test_1_hold_re_sends_the_measured_pose_unchanged():
    rig = Rig()
    rig.arm.reset()
    tilted = rig.ctl.meas.as6()[:3] + list((Rotation.from_rotvec(rig.ctl.meas.as6()[3:])
                                            * Rotation.from_euler("y", 0.3)).as_rotvec())
    rig.ctl.meas = rig.ctl.meas.toward(tilted)  # the arm was pushed to a tilted pose (a teach-mode nudge)
    rig.ctl.cmd = rig.ctl.meas
    rig.arm.hold()
    rig.advance(0.2)
    target = rig.ctl.servo_targets[-1]
    np.testing.assert_allclose(Rotation.from_rotvec(target[3:]).as_matrix(),
                               Rotation.from_rotvec(tilted[3:]).as_matrix(), atol=1e-9)


# ---- 2: TCP and payload ----------------------------------------------------------------------------------------
def test_2_tcp_and_payload_are_set_at_connect():
    rig = Rig(payload_mass=0.9, payload_cog=[0.0, 0.0, 0.05])
    assert rig.ctl.tcp_offset == TCP
    assert rig.ctl.payload == (0.9, [0.0, 0.0, 0.05])
    state = rig.arm.reset()
    assert state.ee_pos == pytest.approx(HOME, abs=2e-3)  # home is where the configured TCP ends up


def test_2_check_mode_refuses_a_different_active_tcp_naming_both():
    with pytest.raises(ArmError, match=r"0\.1\b.*0\.16|0\.16.*0\.1\b"):
        Rig(installed_tcp=[0.0, 0.0, 0.1, 0.0, 0.0, 0.0], tcp_mode="check")
    rig = Rig(installed_tcp=TCP, tcp_mode="check")
    assert rig.ctl.named("setTcp") == []


# ---- 3: smooth servoing on a fresh state --------------------------------------------------------------------------
def test_3_servo_targets_stream_at_the_controller_rate_and_the_filter_sees_the_pose_of_the_period_start():
    rig = Rig()
    keys = RigKeys(rig, 0.1)
    loop = loop_for(rig, lambda i: np.array([1.0 if i % 2 == 0 else -1.0, 0.5, 0.0, 0.0, -1.0]), keys, max_steps=12)
    result = loop.run_episode()
    assert result.steps == 12
    start = rig.ctl.named("moveJ")[-1]
    servos = [c for c in rig.ctl.calls[rig.ctl.calls.index(start):] if c[0] == "servoL"]
    assert all(c[1][3] == pytest.approx(1 / 500) for c in servos)  # time = 1/f
    assert len(servos) >= (result.steps - 1) * 0.1 * 500  # one target a controller period, not one a loop period
    seen = loop.safety.seen
    for k, pos in enumerate(seen):  # the filter's state is the measured pose when its period started
        np.testing.assert_allclose(pos, keys.samples[k][1], atol=1e-9)


def test_3_reversing_actions_keep_commanded_and_measured_steps_within_max_step():
    rig = Rig(lag=0.06)
    keys = RigKeys(rig, 0.1)
    loop = loop_for(rig, lambda i: np.array([1.0 if (i // 3) % 2 == 0 else -1.0, 0.0, 0.0, 0.0, -1.0]), keys,
                    max_steps=24)
    loop.run_episode()
    samples = keys.samples[1:]
    for (c0, m0), (c1, m1) in zip(samples, samples[1:], strict=False):
        assert np.linalg.norm(c1 - c0) <= SAFETY.max_step + 1e-9
        assert np.linalg.norm(m1 - m0) <= SAFETY.max_step + 1e-9


# ---- 4: safety states -------------------------------------------------------------------------------------------
def test_4_a_protective_stop_ends_the_episode_cleanly_saved_with_a_clear_message():
    rig = Rig()
    recorder = ListRecorder()
    keys = RigKeys(rig, 0.1, events={4: lambda: rig.ctl.protective_stop()})
    loop = loop_for(rig, lambda i: np.array([0.3, 0.0, 0.0, 0.0, -1.0]), keys, recorder=recorder)
    result = loop.run_episode()
    assert result.reason == "protective_stop"
    assert recorder.ended and recorder.ended[-1]["reason"] == "protective_stop"
    assert any("protective stop" in line.lower() and "press u" in line for line in rig.log), rig.log


def test_4_the_operator_unlocks_with_a_key_and_the_next_episode_runs(monkeypatch):
    monkeypatch.setattr("robot_stack.runtime.control.time.sleep", lambda s: None)  # the fake clock is the time
    rig = Rig()
    polls = int(UNLOCK_DELAY / 0.1) + 2
    keys = RigKeys(rig, 0.1, schedule={0: ["start"], 8: ["unlock"], polls + 8: ["unlock"], polls + 9: ["start"]},
                   events={3: lambda: rig.ctl.protective_stop()})
    loop = loop_for(rig, lambda i: np.array([0.3, 0.0, 0.0, 0.0, -1.0]), keys, max_steps=5, episodes=2)
    results = loop.run()
    assert [r.reason for r in results] == ["protective_stop", "max_steps"]
    assert len(rig.ctl.named("unlockProtectiveStop")) == 2  # the first, too early, was refused and said so
    assert any("still" in line.lower() for line in rig.log)


def test_4_an_emergency_stop_stops_everything_with_the_reason():
    rig = Rig()
    recorder = ListRecorder()
    keys = RigKeys(rig, 0.1, schedule={0: ["start"]}, events={3: lambda: rig.ctl.emergency_stop()})
    loop = loop_for(rig, lambda i: np.array([0.3, 0.0, 0.0, 0.0, -1.0]), keys, recorder=recorder, episodes=3)
    results = loop.run()
    assert [r.reason for r in results] == ["emergency_stop"] and loop.quit
    assert recorder.ended[-1]["reason"] == "emergency_stop"
    assert any("emergency stop" in line.lower() for line in rig.log)


# ---- 5: watchdog ------------------------------------------------------------------------------------------------
def test_5_a_stalled_loop_makes_the_controller_stop_within_the_stated_time():
    rig = Rig(watchdog_hz=10.0, stall_timeout=0.3)
    assert rig.ctl.watchdog_hz == 10.0
    rig.arm.reset()
    assert rig.ctl.program_running  # the move home (seconds long) kept the watchdog fed
    for _ in range(3):
        rig.arm.apply(ArmCommand(dpos=np.array([0.01, 0.0, 0.0])))
        rig.advance(0.1)
    last_call = rig.clock.now() - 0.1
    rig.advance(1.0)  # the loop stalls; the streaming thread runs on
    assert rig.ctl.reported_stop()
    assert rig.ctl.stopped_at - last_call <= 0.3 + 0.1 + 2 / rig.rate


def test_5_a_killed_client_makes_the_controller_stop_within_the_watchdog_time():
    rig = Rig(watchdog_hz=10.0)
    rig.arm.reset()
    rig.ctl.kill_client()
    killed = rig.clock.now()
    rig.clock.sleep(1.0)
    assert rig.ctl.reported_stop() and rig.ctl.stopped_at - killed <= 0.1 + 1e-9


# ---- 6: the smaller ones ----------------------------------------------------------------------------------------
def test_6_the_rtde_frequency_is_left_to_ur_rtde_and_a_cb3_streams_at_125_hz():
    rig = Rig(polyscope="3.15.7")
    assert rig.ctl.named("RTDEControlInterface")[0][1][1] == -1.0
    rig.arm.reset()
    rig.arm.apply(ArmCommand(dpos=np.array([0.01, 0.0, 0.0])))
    rig.advance(0.1)
    assert rig.ctl.servo_times and rig.ctl.named("servoL")[-1][1][3] == pytest.approx(1 / 125)


def test_6_a_robotiq_gripper_reports_its_measured_closure():
    gripper = RobotiqDouble(object_at=120)
    try:
        rig = Rig(gripper="robotiq", robotiq={"host": "127.0.0.1", "port": gripper.port})
        rig.arm.reset()
        assert gripper.vars["ACT"] == 1 and gripper.vars["POS"] == 0
        rig.arm.apply(ArmCommand(dpos=np.zeros(3), gripper=1.0))
        assert gripper.vars["POS"] == 255 and gripper.vars["GTO"] == 1
        time.sleep(0.15)  # the fingers close onto the object at 120 of 255
        assert rig.arm.state().gripper == pytest.approx(120 / 255, abs=0.01)
        rig.arm.close()
    finally:
        gripper.close()


def test_6_the_launch_file_says_what_to_do_about_the_table_height():
    text = LAUNCH.read_text()
    assert "Measure the table height with\n" not in text and "put -height in the z translation" not in text
    assert "calibrate" in text and "base frame" in text


def test_6_the_digital_output_gripper_still_works_behind_the_same_interface():
    rig = Rig(gripper_output=3, gripper_close_high=False)
    rig.arm.reset()
    state = rig.arm.apply(ArmCommand(dpos=np.zeros(3), gripper=1.0))
    assert rig.ctl.outputs[3] is False and state.gripper == 1.0
