"""Policy server and client over real pyzmq loopback sockets: protocol, auth, batching, fuzzing, disconnects."""

from __future__ import annotations

import threading

import msgpack
import numpy as np
import pytest
import zmq

from robot_stack.runtime import (
    PackageError,
    PolicyClient,
    PolicyTimeout,
    ServeConfig,
    ServerError,
    load_policy_package,
    serve_in_thread,
    wire,
)
from robot_stack.runtime.synthetic import default_spec, make_package
from robot_stack.specs import mismatches

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    spec = default_spec(64)
    path = make_package(tmp_path_factory.mktemp("pkg") / "policy.onnx", spec, kind="conv")
    return path, spec


@pytest.fixture(scope="module")
def server(package):
    path, spec = package
    policy = load_policy_package(path, spec)
    srv, thread, stop = serve_in_thread(policy, ServeConfig(bind="tcp://127.0.0.1:*", token=TOKEN))
    yield srv, policy
    stop.set()
    thread.join(timeout=5)


def random_obs(spec, rng):
    obs = spec.observation.zeros()
    obs["heightmap"] = rng.random(obs["heightmap"].shape, dtype=np.float32) * 0.2
    obs["gripper"] = rng.random(2, dtype=np.float32)
    return obs


def test_handshake_returns_spec_and_act_matches_local_onnxruntime(server, package):
    srv, policy = server
    rng = np.random.default_rng(0)
    with PolicyClient(srv.endpoint, token=TOKEN, expected=package[1]) as client:
        assert mismatches(package[1], client.spec) == []
        assert client.server_info["protocol"] == wire.PROTOCOL_VERSION
        for _ in range(5):
            obs = random_obs(package[1], rng)
            np.testing.assert_allclose(client.act(obs), policy.act(obs), atol=1e-6)
        assert client.health()["status"] == "serving"
        metrics = client.metrics()
        assert metrics["latency"]["total"] >= 5 and sum(metrics["latency"]["counts"]) == metrics["latency"]["total"]


def test_client_refuses_a_served_policy_with_other_specs(server):
    with pytest.raises(PackageError, match="heightmap.size"):
        PolicyClient(server[0].endpoint, token=TOKEN, expected=default_spec(128))


def test_wrong_or_missing_token_is_refused_but_health_is_open(server, package):
    for token in (None, "wrong"):
        with pytest.raises(ServerError, match="auth"):
            PolicyClient(server[0].endpoint, token=token)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server[0].endpoint)
    sock.send(msgpack.packb({"v": 1, "type": "health", "id": 7}))
    assert sock.poll(2000)
    reply = msgpack.unpackb(sock.recv())
    sock.close()
    assert reply["ok"] and reply["id"] == 7


def test_plain_req_socket_with_hand_built_msgpack_works(server, package):
    """What a non-Python client does (docs/protocol.md): REQ socket, msgpack map, raw little-endian bytes."""
    spec = package[1]
    hm = np.full((1, 64, 64), 0.05, dtype="<f4")
    grip = np.array([0.0, 0.5], dtype="<f4")
    request = {"v": 1, "type": "act", "id": 42, "token": TOKEN,
               "obs": {"heightmap": {"dtype": "float32", "shape": [1, 64, 64], "bytes": hm.tobytes()},
                       "gripper": {"dtype": "float32", "shape": [2], "bytes": grip.tobytes()}}}
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server[0].endpoint)
    sock.send(msgpack.packb(request, use_bin_type=True))
    assert sock.poll(2000)
    reply = msgpack.unpackb(sock.recv(), raw=False)
    sock.close()
    assert reply["ok"] and reply["id"] == 42
    action = np.frombuffer(reply["action"]["bytes"], dtype="<f4").reshape(reply["action"]["shape"])
    np.testing.assert_allclose(action, server[1].act({"heightmap": hm, "gripper": grip}), atol=1e-6)
    assert spec.action.dim == action.shape[0]


def test_several_arms_at_once_each_get_their_own_answer(server, package):
    spec = package[1]
    errors: list[str] = []

    def arm(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with PolicyClient(server[0].endpoint, token=TOKEN, timeout=5.0) as client:
            for _ in range(30):
                obs = random_obs(spec, rng)
                if not np.allclose(client.act(obs), server[1].act(obs), atol=1e-5):
                    errors.append(f"client {seed} got another arm's action")

    threads = [threading.Thread(target=arm, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors


def test_client_times_out_when_no_server_listens():
    with pytest.raises(PolicyTimeout):
        PolicyClient("tcp://127.0.0.1:1", timeout=0.2)


def _valid_request(rng, req_id: int) -> dict:
    hm = rng.random((1, 64, 64), dtype=np.float32)
    return {"v": 1, "type": "act", "id": req_id, "token": TOKEN,
            "obs": {"heightmap": wire.pack_array(hm), "gripper": wire.pack_array(np.zeros(2, np.float32))}}


def _malformed(rng, i: int, max_bytes: int) -> tuple[bytes, set[str]]:
    """One broken message and the error codes acceptable for it."""
    msg = _valid_request(rng, i)
    obs = msg["obs"]
    kind = i % 16
    if kind == 0:
        return rng.bytes(int(rng.integers(0, 200))), {wire.E_DECODE, wire.E_VERSION, wire.E_TYPE}
    if kind == 1:  # truncated valid message
        frame = wire.encode(msg)
        return frame[: int(rng.integers(0, len(frame) - 1))], {wire.E_DECODE}
    if kind == 2:
        msg["v"] = int(rng.choice([0, 2, 99, -1]))
        return wire.encode(msg), {wire.E_VERSION}
    if kind == 3:
        del msg["token"]
        return wire.encode(msg), {wire.E_AUTH}
    if kind == 4:
        msg["token"] = "x" * int(rng.integers(0, 40))
        return wire.encode(msg), {wire.E_AUTH}
    if kind == 5:  # wrong dtype with a consistent byte count
        dt = str(rng.choice(["float64", "int32", "uint8", "float16"]))
        obs["gripper"] = wire.pack_array(np.zeros(2, dtype=dt))
        return wire.encode(msg), {wire.E_OBS}
    if kind == 6:  # wrong shape
        obs["heightmap"] = wire.pack_array(np.zeros((1, 32, int(rng.integers(1, 80))), np.float32))
        return wire.encode(msg), {wire.E_OBS}
    if kind == 7:  # NaN / inf
        hm = np.zeros((1, 64, 64), np.float32)
        hm[0, int(rng.integers(64)), int(rng.integers(64))] = rng.choice([np.nan, np.inf, -np.inf])
        obs["heightmap"] = wire.pack_array(hm)
        return wire.encode(msg), {wire.E_OBS}
    if kind == 8 and i % 64 == 8:  # oversized (kept rarer: each is ~100 KB)
        msg["pad"] = b"\0" * (max_bytes + int(rng.integers(1, 1000)))
        return wire.encode(msg), {wire.E_TOO_LARGE}
    if kind in (8, 9):  # byte count does not match the shape
        obs["gripper"] = {"dtype": "float32", "shape": [2], "bytes": rng.bytes(int(rng.integers(0, 7)))}
        return wire.encode(msg), {wire.E_ARRAY}
    if kind == 10:  # array maps broken in assorted ways
        obs["heightmap"] = [{"dtype": "complex128", "shape": [1], "bytes": b"\0" * 16}, {"shape": [-1, 2]},
                            "text", {"dtype": "float32", "shape": ["a"], "bytes": b""},
                            {"dtype": "float32", "shape": [1] * 20, "bytes": b"\0" * 4}][i % 5]
        return wire.encode(msg), {wire.E_ARRAY}
    if kind == 11:
        return msgpack.packb([1, 2, 3] if i % 2 else "act"), {wire.E_DECODE}
    if kind == 12:
        msg["type"] = str(rng.choice(["", "ACT", "shutdown", "exec"]))
        return wire.encode(msg), {wire.E_TYPE}
    if kind == 13:
        msg["obs"] = [None, 3, "x", []][i % 4]
        return wire.encode(msg), {wire.E_TYPE}
    if kind == 14:  # missing or unexpected observation field
        if i % 2:
            del obs["gripper"]
        else:
            obs["extra"] = wire.pack_array(np.zeros(1, np.float32))
        return wire.encode(msg), {wire.E_OBS}
    msg["id"] = ["a", 1.5, None, [1]][i % 4]
    return wire.encode(msg), {wire.E_TYPE}


def test_ten_thousand_malformed_messages_get_error_replies_and_serving_continues(server):
    srv, policy = server
    rng = np.random.default_rng(123)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(srv.endpoint)
    before = sum(srv.metrics.errors.values())
    n, window, wrong = 10_240, 256, []
    for start in range(0, n, window):
        expected = []
        for i in range(start, start + window):
            frame, codes = _malformed(rng, i, srv.max_bytes)
            sock.send(frame)
            expected.append(codes)
        for codes in expected:
            assert sock.poll(10_000), "the server stopped answering"
            reply = msgpack.unpackb(sock.recv(), raw=False)
            if reply.get("ok") or reply["error"]["code"] not in codes:
                wrong.append((codes, reply.get("error")))
    assert not wrong[:5], f"{len(wrong)} unexpected replies, e.g. {wrong[:5]}"
    assert sum(srv.metrics.errors.values()) - before == n
    # a multi-frame message is refused too
    sock.send_multipart([b"a", b"b"])
    assert sock.poll(5000) and msgpack.unpackb(sock.recv())["error"]["code"] == wire.E_DECODE
    sock.close()
    with PolicyClient(srv.endpoint, token=TOKEN) as client:
        obs = random_obs(default_spec(64), rng)
        np.testing.assert_allclose(client.act(obs), policy.act(obs), atol=1e-6)


def test_client_disconnecting_mid_request_does_not_disturb_the_server(server):
    srv, policy = server
    rng = np.random.default_rng(5)
    for i in range(20):
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(srv.endpoint)
        sock.send(wire.encode(_valid_request(rng, i)))
        sock.close()  # gone before the reply
    with PolicyClient(srv.endpoint, token=TOKEN) as client:
        obs = random_obs(default_spec(64), rng)
        np.testing.assert_allclose(client.act(obs), policy.act(obs), atol=1e-6)
        assert client.health()["status"] == "serving"


def test_late_reply_is_never_returned_for_a_later_request(server):
    srv, _ = server
    rng = np.random.default_rng(9)
    with PolicyClient(srv.endpoint, token=TOKEN) as client:
        obs_a, obs_b = random_obs(default_spec(64), rng), random_obs(default_spec(64), rng)
        with pytest.raises(PolicyTimeout):
            client.act(obs_a, timeout=0.0)  # gives up at once; the reply to A arrives later
        np.testing.assert_allclose(client.act(obs_b, timeout=5.0), server[1].act(obs_b), atol=1e-6)


def test_handle_batch_runs_one_inference_for_many_arms(server, package):
    srv, policy = server
    rng = np.random.default_rng(1)
    batches_before = dict(srv.metrics.batches)
    messages = [[f"arm{i}".encode(), wire.encode(_valid_request(rng, i))] for i in range(6)]
    replies = srv.handle_batch(messages)
    assert [r[0] for r in replies] == [m[0] for m in messages]
    assert all(msgpack.unpackb(r[1])["ok"] for r in replies)
    assert srv.metrics.batches[6] == batches_before.get(6, 0) + 1
