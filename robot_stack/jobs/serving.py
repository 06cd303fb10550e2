"""Serving a policy: the server's main loop on the robot PC, and a server spawned as a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import IO

from robot_stack.runtime import PolicyServer, ServeConfig, load_policy_package


def read_token(token_env: str | None, token_file: str | None) -> str | None:
    if token_file:
        with open(token_file) as fh:
            token = fh.readline().strip()
        if not token:
            raise ValueError(f"token file {token_file} is empty")
        return token
    return os.environ.get(token_env) or None if token_env else None


def watch_parent(parent_pid: int, stop: threading.Event, interval: float = 0.5) -> threading.Thread:
    """Sets ``stop`` once ``parent_pid`` is no longer this process's parent (it exited; the orphan was re-parented)."""

    def watch() -> None:
        while os.getppid() == parent_pid and not stop.wait(interval):
            pass
        stop.set()

    thread = threading.Thread(target=watch, name="serve-parent-watch", daemon=True)
    thread.start()
    return thread


def serve(cfg: ServeConfig, parent_pid: int = 0) -> int:
    """Serve ``cfg.policy`` until SIGTERM, Ctrl-C or (``parent_pid`` set) the launcher's exit. The first line
    printed is ``serving <policy> on <endpoint>``, which launchers read."""
    policy = load_policy_package(cfg.policy, None, threads=cfg.threads)
    server = PolicyServer(policy, cfg)
    endpoint = server.bind()
    print(f"serving {cfg.policy} on {endpoint} (token {'on' if cfg.token else 'off'}, "
          f"limit {server.max_bytes} bytes)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if parent_pid:
        watch_parent(parent_pid, stop)
    try:
        server.serve(stop)
    except KeyboardInterrupt:
        pass
    return 0


class ServerOutput(threading.Thread):
    """Reads a spawned server's output for as long as the server lives, handing each line to ``log``.

    Nobody else reads the pipe: without this thread a server that printed more than the pipe buffer (~64 KiB)
    would block in print() and stop answering mid-episode.
    """

    def __init__(self, stream: IO[str], log: Callable[[str], None]) -> None:
        super().__init__(name="serve-output", daemon=True)
        self.stream, self.log = stream, log
        self.endpoint: str | None = None
        self.ready = threading.Event()  # set at the "serving" line, or at end of output (the server exited)
        self.last: deque[str] = deque(maxlen=5)

    def run(self) -> None:
        try:
            for line in self.stream:
                self._line(line.rstrip("\n"))
        finally:
            self.ready.set()

    def _line(self, line: str) -> None:
        self.last.append(line)
        if self.endpoint is None and line.startswith("serving "):
            self.endpoint = line.split(" on ", 1)[1].split()[0]
            self.ready.set()
        try:
            self.log(f"serve: {line}")
        except Exception:  # drop the line, keep draining: a stalled pipe would stall the server
            pass


class ServerProcess(subprocess.Popen):
    """A spawned ``robot-stack serve``; ``output`` drains what it prints."""

    output: ServerOutput | None = None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, SIGKILL if it is still running after ``timeout`` s; reaped either way."""
        if self.poll() is None:
            self.terminate()
            try:
                self.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.wait()
        if self.output is not None:
            self.output.join(timeout)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def spawn_server(package: str, token_env: str, timeout: float = 30.0, rt_priority: int = 0,
                 log: Callable[[str], None] | None = None) -> tuple[ServerProcess, str]:
    """Start ``robot-stack serve`` on a free loopback port; returns the process and its endpoint.

    Every line the server prints goes to ``log`` (default: stderr) prefixed ``serve: ``. ``proc.stop()`` ends
    it; it also stops by itself once this process has exited (``serve --parent-pid``), so a caller that is
    killed or crashes leaves no server behind.
    """
    cmd = [sys.executable, "-m", "robot_stack", "serve", "--policy", package, "--bind", "tcp://127.0.0.1:*",
           "--token-env", token_env, "--rt-priority", str(rt_priority), "--parent-pid", str(os.getpid())]
    proc = ServerProcess(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                         env=os.environ.copy())
    proc.output = ServerOutput(proc.stdout, log or _to_stderr)
    proc.output.start()
    if proc.output.ready.wait(timeout) and proc.output.endpoint:
        return proc, proc.output.endpoint
    proc.stop()
    raise RuntimeError(f"policy server did not start (exit code {proc.returncode}); its last output: "
                       f"{list(proc.output.last)}")
