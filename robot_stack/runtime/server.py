"""The policy server: a pyzmq ROUTER socket answering msgpack requests with onnxruntime actions.

One thread owns the socket. Each wake-up drains every waiting request (up to ``max_batch``), answers the
cheap ones (hello, health, metrics, errors) at once and runs all valid ``act`` requests in one batched
onnxruntime call, so several arms can share one server. Bad input of any kind gets an error reply; nothing
a client sends can stop the loop. Protocol: docs/protocol.md.
"""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from robot_stack.runtime import wire
from robot_stack.runtime.metrics import ServerMetrics
from robot_stack.runtime.package import OnnxPolicy
from robot_stack.runtime.realtime import fifo_priority, freeze_gc_in_main_thread, zmq_context
from robot_stack.specs import SpecError

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"


@dataclass
class ServeConfig:
    """``robot-stack serve`` settings; ``max_message_bytes`` 0 means twice the observation size plus 64 KiB."""

    policy: str = ""
    bind: str = DEFAULT_ENDPOINT
    token: str | None = None
    max_message_bytes: int = 0
    batch: bool = True
    max_batch: int = 16
    threads: int = 1
    rt_priority: int = 0  # > 0: the serving thread runs under SCHED_FIFO (runtime/realtime.py)


@dataclass
class _Pending:
    envelope: list[bytes]
    req_id: int
    obs: dict[str, np.ndarray]
    received: float = field(default_factory=time.perf_counter)


def observation_bytes(policy: OnnxPolicy) -> int:
    return sum(int(np.prod(f.shape)) * np.dtype(f.dtype).itemsize for f in policy.spec.observation.fields)


class PolicyServer:
    """Serve ``policy`` on ``cfg.bind``; ``serve(stop_event)`` runs until the event is set."""

    def __init__(self, policy: OnnxPolicy, cfg: ServeConfig, context: zmq.Context | None = None) -> None:
        self.policy = policy
        self.cfg = cfg
        self.max_bytes = cfg.max_message_bytes or 2 * observation_bytes(policy) + 65_536
        self.metrics = ServerMetrics()
        self.started = time.time()
        self._context = context or zmq_context(cfg.rt_priority)
        self._socket: zmq.Socket | None = None
        self.endpoint = ""

    # ---- socket -------------------------------------------------------------------------------------
    def bind(self) -> str:
        """Bind the ROUTER socket; returns the actual endpoint (a ``*`` port gets resolved)."""
        if not self.cfg.bind.startswith(("tcp://127.0.0.1", "tcp://localhost", "ipc://", "inproc://")):
            print(f"warning: policy server listening beyond localhost on {self.cfg.bind}"
                  + ("" if self.cfg.token else " WITHOUT a token"), flush=True)
        sock = self._context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        # Frames over 8x the soft limit are dropped by libzmq (the peer is disconnected); between the soft and
        # hard limits the server replies with a ``too_large`` error.
        sock.setsockopt(zmq.MAXMSGSIZE, 8 * self.max_bytes)
        sock.bind(self.cfg.bind)
        self._socket = sock
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return self.endpoint

    def serve(self, stop: threading.Event | None = None, poll_ms: int = 50) -> None:
        """Answer requests until ``stop`` is set (or forever)."""
        if self._socket is None:
            self.bind()
        stop = stop or threading.Event()
        sock = self._socket
        freeze_gc_in_main_thread()
        # A blocking recv with a timeout, not poll + recv: zmq.Socket.poll builds a Poller per call, which is
        # measurable next to a ~0.2 ms loopback round trip. The timeout only bounds how late ``stop`` is seen.
        sock.setsockopt(zmq.RCVTIMEO, poll_ms)
        try:
            with fifo_priority(self.cfg.rt_priority, lambda msg: print(msg, flush=True)):
                while not stop.is_set():
                    try:
                        first = sock.recv_multipart(copy=True)
                    except zmq.Again:
                        continue
                    self._send(self.handle_batch(self._drain(first)))
        finally:
            self.close()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def _drain(self, first: list[bytes]) -> list[list[bytes]]:
        """``first`` plus every message already waiting, up to ``max_batch`` in all."""
        sock, limit = self._socket, max(1, self.cfg.max_batch)
        messages = [first]
        # Ask the socket whether a message is waiting instead of letting a NOBLOCK recv raise zmq.Again
        # (an exception per wake-up); the Again guard stays for the race where EVENTS was stale.
        while len(messages) < limit and sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            try:
                messages.append(sock.recv_multipart(zmq.NOBLOCK, copy=True))
            except zmq.Again:
                break
        return messages

    def _send(self, replies: list[list[bytes]]) -> None:
        for frames in replies:
            try:
                self._socket.send_multipart(frames, zmq.NOBLOCK)
            except zmq.ZMQError:
                self.metrics.errors["send_failed"] += 1  # the client went away; nothing to do

    # ---- request handling (no sockets: testable directly) --------------------------------------------
    def handle_batch(self, messages: list[list[bytes]]) -> list[list[bytes]]:
        """ROUTER frame lists in, reply frame lists out (one per message that had an identity)."""
        replies: list[list[bytes]] = []
        pending: list[_Pending] = []
        for frames in messages:
            t0 = time.perf_counter()
            envelope, payload = _split(frames)
            if not envelope:
                continue  # no routing identity: nobody to answer
            try:
                reply = self._handle_one(envelope, payload, pending)
            except Exception as exc:  # a bug must never stop the server; report it to the caller
                reply = wire.error_reply(None, wire.E_INTERNAL, f"{type(exc).__name__}: {exc}")
            if reply is not None:
                if not reply.get("ok"):
                    self.metrics.errors[reply["error"]["code"]] += 1
                replies.append(envelope + [wire.encode(reply)])
                self.metrics.handle.record(time.perf_counter() - t0)
        if pending:
            replies += self._run_acts(pending)
        return replies

    def _handle_one(self, envelope: list[bytes], payload: list[bytes], pending: list[_Pending]) -> dict | None:
        req_id: Any = None
        try:
            if len(payload) != 1:
                raise wire.WireError(wire.E_DECODE, f"expected one payload frame, got {len(payload)}")
            msg = wire.decode(payload[0], self.max_bytes)
            req_id = msg.get("id")
            kind, req_id = wire.check_envelope(msg)
            self.metrics.requests[kind] += 1
            if kind != "health":
                self._check_token(msg)
            if kind == "act":
                pending.append(_Pending(envelope, req_id, self._observation(msg)))
                return None
            return {"v": wire.PROTOCOL_VERSION, "id": req_id, "ok": True, **self._info(kind)}
        except wire.WireError as exc:
            return wire.error_reply(req_id, exc.code, exc.message)

    def _check_token(self, msg: dict[str, Any]) -> None:
        if self.cfg.token is None:
            return
        token = msg.get("token")
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.cfg.token.encode()):
            raise wire.WireError(wire.E_AUTH, "missing or wrong token" if token is not None else "token required")

    def _observation(self, msg: dict[str, Any]) -> dict[str, np.ndarray]:
        raw = msg.get("obs")
        if not isinstance(raw, dict):
            raise wire.WireError(wire.E_TYPE, "'act' needs 'obs': a map of field name -> array")
        obs = {str(k): wire.unpack_array(v, f"obs.{k}") for k, v in raw.items()}
        try:
            return self.policy.check(obs)
        except SpecError as exc:
            raise wire.WireError(wire.E_OBS, str(exc)) from None

    def _info(self, kind: str) -> dict[str, Any]:
        if kind == "hello":
            return {"server": "robot-stack", "protocol": wire.PROTOCOL_VERSION,
                    "spec": self.policy.spec.to_dict(), "metadata": _public_metadata(self.policy.metadata),
                    "max_message_bytes": self.max_bytes, "batching": self.cfg.batch and self.policy.batchable}
        if kind == "health":
            return {"status": "serving", "uptime_s": time.time() - self.started,
                    "requests": int(sum(self.metrics.requests.values()))}
        return {"metrics": self.metrics.to_dict(), "uptime_s": time.time() - self.started}

    def _run_acts(self, pending: list[_Pending]) -> list[list[bytes]]:
        groups = [pending] if self.cfg.batch else [[p] for p in pending]
        replies = []
        for group in groups:
            actions, errors = self._infer(group)
            done = time.perf_counter()
            for p, action, err in zip(group, actions, errors, strict=True):
                if err is None:
                    reply = {"v": wire.PROTOCOL_VERSION, "id": p.req_id, "ok": True, "action": action,
                             "server_ms": (done - p.received) * 1e3}
                else:
                    reply = wire.error_reply(p.req_id, wire.E_INTERNAL, err)
                    self.metrics.errors[wire.E_INTERNAL] += 1
                replies.append(p.envelope + [wire.encode(reply)])
                self.metrics.handle.record(time.perf_counter() - p.received)
        return replies

    def _infer(self, group: list[_Pending]) -> tuple[list[np.ndarray | None], list[str | None]]:
        t0 = time.perf_counter()
        try:
            actions = self.policy.act_batch([p.obs for p in group], checked=True)
            self.metrics.batches[len(group)] += 1
            self.metrics.inference.record(time.perf_counter() - t0)
            return list(actions), [None] * len(group)
        except Exception as exc:  # isolate the failing request when a batch fails
            if len(group) > 1:
                results = [self._infer([p]) for p in group]
                return [r[0][0] for r in results], [r[1][0] for r in results]
            return [None], [f"policy failed: {type(exc).__name__}: {exc}"]


def _split(frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """ROUTER frames -> (envelope to echo back, payload). REQ peers add an empty delimiter; DEALERs do not."""
    if not frames:
        return [], []
    if len(frames) >= 3 and frames[1] == b"":
        return frames[:2], frames[2:]
    return frames[:1], frames[1:]


def _public_metadata(metadata: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in metadata.items() if len(v) < 4096}


def serve_in_thread(policy: OnnxPolicy, cfg: ServeConfig) -> tuple[PolicyServer, threading.Thread, threading.Event]:
    """Start a server on a background thread (tests, benchmarks, ``run`` with a local server)."""
    server = PolicyServer(policy, cfg)
    server.bind()
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop,), daemon=True, name="policy-server")
    thread.start()
    return server, thread, stop
