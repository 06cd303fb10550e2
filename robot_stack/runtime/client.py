"""``PolicyClient``: talks to ``robot-stack serve`` over a pyzmq DEALER socket with per-call timeouts.

Replies are matched to requests by ``id``; a reply that arrives after its caller gave up is dropped, so a
late answer can never be applied in a later control period.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
import zmq

from robot_stack.runtime import wire
from robot_stack.runtime.package import PackageError, check_version
from robot_stack.specs import PolicySpec, mismatches


class PolicyTimeout(TimeoutError):
    """No reply within the timeout (the server is slow, gone, or unreachable)."""


class ServerError(RuntimeError):
    """The server answered with an error; ``code`` is the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class PolicyClient:
    """A remote policy: ``act(obs, timeout) -> float32[5]``, same call as ``OnnxPolicy.act``."""

    def __init__(self, endpoint: str, token: str | None = None, timeout: float = 1.0,
                 expected: PolicySpec | None = None, context: zmq.Context | None = None) -> None:
        self.endpoint = endpoint
        self.token = token
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._context = context or zmq.Context.instance()
        self._socket = self._open()
        self.server_info: dict[str, Any] = {}
        self.spec: PolicySpec | None = None
        self.last_server_ms: float | None = None
        self.hello(expected)

    def _open(self) -> zmq.Socket:
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # do not queue requests for a server that is not connected
        sock.setsockopt(zmq.SNDHWM, 4)
        sock.setsockopt(zmq.RECONNECT_IVL, 50)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        sock.connect(self.endpoint)
        return sock

    def hello(self, expected: PolicySpec | None = None) -> dict[str, Any]:
        """Handshake: fetch the served policy's spec; refuse it when it differs from ``expected``."""
        self.server_info = self.request("hello", timeout=max(self.timeout, 2.0))
        check_version(self.server_info["spec"].get("version"), f"served policy at {self.endpoint}")
        self.spec = PolicySpec.from_dict(self.server_info["spec"])
        if expected is not None:
            diff = mismatches(expected, self.spec)
            if diff:
                raise PackageError(f"served policy at {self.endpoint} does not match: " + "; ".join(diff))
        return self.server_info

    def act(self, obs: dict[str, np.ndarray], timeout: float | None = None) -> np.ndarray:
        reply = self.request("act", {"obs": {k: np.asarray(v) for k, v in obs.items()}}, timeout)
        self.last_server_ms = reply.get("server_ms")
        return wire.unpack_array(reply["action"], "action").astype(np.float32)

    def health(self, timeout: float | None = None) -> dict[str, Any]:
        return self.request("health", timeout=timeout)

    def metrics(self, timeout: float | None = None) -> dict[str, Any]:
        return self.request("metrics", timeout=timeout)["metrics"]

    def request(self, kind: str, body: dict[str, Any] | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Send one request and wait for its reply; raises ``PolicyTimeout`` or ``ServerError``."""
        req_id = next(self._ids)
        msg = {"v": wire.PROTOCOL_VERSION, "type": kind, "id": req_id, **(body or {})}
        if self.token is not None:
            msg["token"] = self.token
        return self._roundtrip(wire.encode(msg), req_id, self.timeout if timeout is None else timeout)

    def _roundtrip(self, frame: bytes, req_id: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + max(timeout, 0.0)
        try:
            try:
                self._socket.send(frame, zmq.NOBLOCK)  # the usual case: connected, queue not full
            except zmq.Again:
                if not self._socket.poll(max(int(timeout * 1e3), 0), zmq.POLLOUT):
                    raise
                self._socket.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            raise PolicyTimeout(f"policy server at {self.endpoint} is not connected") from None
        while True:
            left_ms = int((deadline - time.monotonic()) * 1e3)
            # A blocking recv with a timeout rather than poll + recv: Socket.poll builds a Poller per call.
            self._socket.rcvtimeo = left_ms
            try:
                if left_ms <= 0:
                    raise zmq.Again
                frame = self._socket.recv()
            except zmq.Again:
                raise PolicyTimeout(f"no reply from {self.endpoint} within {timeout * 1e3:.0f} ms") from None
            reply = wire.decode(frame)
            if reply.get("id") not in (req_id, None):
                continue  # a late reply to a request we already gave up on
            if not reply.get("ok"):
                err = reply.get("error") or {}
                raise ServerError(str(err.get("code")), str(err.get("message")))
            return reply

    def close(self) -> None:
        self._socket.close(linger=0)

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
