"""spawn_server (robot_stack/commands/run.py): the policy server as a child process of `robot-stack run` and of
`robot-stack bench serve`.

Its output must never block it (a full stdout pipe would stop it mid-episode), and it must not outlive its
caller: stopped and reaped at the end of a run, killed if SIGTERM does not end it, and gone by itself when the
caller is killed. Output and stop are tested with stand-in servers started exactly as spawn_server starts
the real one (``sys.executable`` pointed at a script); parent death and the run's clean-up with the real one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robot_stack.jobs import run as run_job
from robot_stack.jobs.run import PolicySource, RunConfig, make_policy, spawn_server
from robot_stack.runtime.synthetic import default_spec, make_package

TOKEN_ENV = "ROBOT_STACK_TEST_NO_TOKEN"  # unset: no token
READY = "serving stand-in.onnx on tcp://127.0.0.1:5999 (token off, limit 100 bytes)"


def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """Make spawn_server start ``body`` (Python, run by this interpreter) in place of `robot-stack serve`."""
    script = tmp_path / "stand_in_server"
    script.write_text(f"#!{sys.executable}\nimport signal, sys, time\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(script))


def running(pid: int) -> bool:
    """False once the process is gone or a zombie (exited; its new parent has not reaped it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_package(tmp_path_factory.mktemp("pkg") / "policy.onnx", default_spec(16), kind="linear")


def test_a_server_printing_far_more_than_a_pipe_buffer_after_it_is_ready_is_never_blocked(tmp_path, monkeypatch):
    lines = 4096  # 4096 lines of 113 bytes: 452 KiB, seven times Linux's default 64 KiB pipe buffer
    stand_in(tmp_path, monkeypatch, f"print({READY!r}, flush=True)\n"
                                    f"for i in range({lines}):\n"
                                    "    print(f'warning {i:05d} ' + 'x' * 98, flush=True)\n"
                                    "print('done', flush=True)")
    log: list[str] = []
    proc, endpoint = spawn_server("stand-in.onnx", TOKEN_ENV, log=log.append)
    try:
        assert endpoint == "tcp://127.0.0.1:5999"
        assert proc.wait(timeout=60) == 0  # with nobody reading the pipe it blocked in print() for ever
    finally:
        proc.stop()
    assert len(log) == lines + 2 and log[0] == f"serve: {READY}" and log[-1] == "serve: done"
    assert log[1] == "serve: warning 00000 " + "x" * 98


def test_lines_the_log_refuses_are_dropped_and_the_server_still_runs_to_the_end(tmp_path, monkeypatch):
    stand_in(tmp_path, monkeypatch, f"print({READY!r}, flush=True)\n"
                                    "sys.stdout.buffer.write(b'bad \\xff byte\\n' * 2000)\n"
                                    "print('done', flush=True)")
    seen: list[str] = []

    def refuse(line: str) -> None:
        seen.append(line)
        raise BrokenPipeError("the terminal went away")

    proc, _ = spawn_server("stand-in.onnx", TOKEN_ENV, log=refuse)
    try:
        assert proc.wait(timeout=60) == 0
    finally:
        proc.stop()
    assert seen[-1] == "serve: done" and seen[1] == "serve: bad \ufffd byte"  # undecodable bytes replaced


def test_a_server_that_exits_before_it_is_ready_is_an_error_naming_its_output(tmp_path, monkeypatch):
    stand_in(tmp_path, monkeypatch, "print('loading', flush=True)\n"
                                    "print('error: not an ONNX policy package', flush=True)\n"
                                    "sys.exit(2)")
    log: list[str] = []
    with pytest.raises(RuntimeError, match=r"did not start \(exit code 2\).*'error: not an ONNX policy package'"):
        spawn_server("stand-in.onnx", TOKEN_ENV, log=log.append)
    assert log == ["serve: loading", "serve: error: not an ONNX policy package"]


def test_a_server_that_never_gets_ready_is_stopped_and_reaped(tmp_path, monkeypatch):
    pid_file = tmp_path / "pid"
    stand_in(tmp_path, monkeypatch, f"open({str(pid_file)!r}, 'w').write(str(__import__('os').getpid()))\n"
                                    "print('thinking', flush=True)\ntime.sleep(600)")
    with pytest.raises(RuntimeError, match=r"did not start \(exit code -15\).*'thinking'"):
        spawn_server("stand-in.onnx", TOKEN_ENV, timeout=5.0, log=lambda line: None)
    assert not running(int(pid_file.read_text()))


def test_stop_kills_a_server_that_ignores_sigterm_and_reaps_it(tmp_path, monkeypatch):
    stand_in(tmp_path, monkeypatch, "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                    f"print({READY!r}, flush=True)\n"
                                    "time.sleep(600)")
    proc, _ = spawn_server("stand-in.onnx", TOKEN_ENV, log=lambda line: None)
    proc.stop(timeout=0.5)
    assert proc.returncode == -signal.SIGKILL and not running(proc.pid)
    assert not proc.output.is_alive()


def test_the_run_stops_and_reaps_its_server_and_shows_its_output(package, monkeypatch):
    spawned: list = []

    def spawn(*args, **kwargs):
        spawned.append(spawn_server(*args, **kwargs)[0])
        return spawned[-1], spawned[-1].output.endpoint

    monkeypatch.setattr(run_job, "spawn_server", spawn)  # make_policy (jobs.run) spawns it
    spec = default_spec(16)
    cfg = RunConfig(policy=PolicySource(package=str(package), spawn_server=True, token_env=TOKEN_ENV))
    cleanup: list = []
    log: list[str] = []
    try:
        policy, _ = make_policy(cfg, (spec.observation, spec.action, spec.heightmap), cleanup, log.append)
        assert policy.spec.group == spec.group
    finally:
        for fn in reversed(cleanup):
            fn()
    (proc,) = spawned
    assert proc.returncode == 0 and not running(proc.pid)  # SIGTERM: the server's own clean exit
    assert log[0].startswith(f"serve: serving {package} on tcp://127.0.0.1:")


CALLER = """
import sys, time
from robot_stack.jobs.serving import spawn_server
proc, endpoint = spawn_server(sys.argv[1], sys.argv[2])
print(proc.pid, flush=True)
time.sleep(600)
"""


def test_a_killed_caller_leaves_no_server_behind(package):
    caller = subprocess.Popen([sys.executable, "-c", CALLER, str(package), TOKEN_ENV], stdout=subprocess.PIPE,
                              text=True)
    server = 0
    try:
        server = int(caller.stdout.readline())
        assert running(server)
        caller.kill()  # no clean-up runs in the caller: the server has to notice by itself
        caller.wait()
        deadline = time.monotonic() + 30.0
        while running(server) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not running(server)
    finally:
        caller.kill()
        caller.wait()
        if server and running(server):
            os.kill(server, signal.SIGKILL)
