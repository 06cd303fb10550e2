"""EpisodeRecorder: bit-exact round trip, readers during writes, bad input refused (ISSUE 5)."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

from robot_stack.recorder import EpisodeDataset, EpisodeRecorder, RecorderError, StoreError, crashtest, store
from robot_stack.specs import ActionSpec, HeightmapSpec, ObservationSpec, SpecError

OBS = crashtest.OBS_SPEC
ACT = crashtest.ACTION_SPEC


def _record(path: Path, seeds: list[int], **kw) -> EpisodeRecorder:
    rec = EpisodeRecorder(path, OBS, ACT, {"task": "unit", "control_hz": 30.0}, **kw)
    for seed in seeds:
        rec.start_episode({"seed": seed, "policy_id": "expert", "policy_version": 1})
        for obs, act, rew, info in crashtest.episode_steps(seed):
            rec.add_step(obs, act, rew, info)
        rec.end_episode(success=True)
    rec.close()
    return rec


def _files(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def test_round_trip_is_bit_exact_with_metadata_and_specs(tmp_path):
    path = tmp_path / "rt.zarr"
    rec = _record(path, [1, 2, 3], flush_steps=5)
    assert rec.stats["episodes_committed"] == 3 and rec.stats["steps_dropped"] == 0
    assert crashtest.check_store(path) == 3
    ds = EpisodeDataset(path)
    assert ds.obs_spec == OBS and ds.action_spec == ACT
    meta = ds.episode_meta(1)
    assert meta["seed"] == 2 and meta["task"] == "unit" and meta["policy_id"] == "expert"
    assert meta["length"] == len(crashtest.episode_steps(2)) and meta["success"] is True
    header = json.loads((path / "zarr.json").read_text())["attributes"]["robot_stack"]
    assert header["schema_version"] == store.SCHEMA_VERSION and header["obs_spec"] == OBS.to_dict()


def test_appending_to_an_existing_store_keeps_old_episodes(tmp_path):
    path = tmp_path / "app.zarr"
    _record(path, [10])
    _record(path, [11, 12])
    assert [e.meta["seed"] for e in EpisodeDataset(path).episodes()] == [10, 11, 12]
    assert crashtest.check_store(path) == 3


def test_raw_depth_and_color_are_optional_per_store(tmp_path):
    path = tmp_path / "depth.zarr"
    rng = np.random.default_rng(0)
    depth = rng.integers(0, 4000, (2, 48, 64), dtype=np.uint16)
    color = rng.integers(0, 255, (2, 48, 64, 3), dtype=np.uint8)
    with EpisodeRecorder(path, OBS, ACT) as rec:
        rec.start_episode()
        for t in range(2):
            rec.add_step(OBS.zeros(), np.zeros(5, np.float32), 0.0, {"depth": depth[t], "color": color[t]})
        rec.end_episode(False)
    ep = EpisodeDataset(path).episode(0)
    assert np.array_equal(ep.extras["depth"], depth) and np.array_equal(ep.extras["color"], color)


def test_a_reader_sees_only_committed_episodes_while_the_store_is_written(tmp_path):
    path = tmp_path / "live.zarr"
    rec = EpisodeRecorder(path, OBS, ACT, flush_steps=4)
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.append(crashtest.check_store(path))
                stop.wait(0.02)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    for seed in range(8):
        rec.start_episode({"seed": seed})
        for obs, act, rew, info in crashtest.episode_steps(seed):
            rec.add_step(obs, act, rew, info)
        rec.end_episode(True)
        rec.flush()
    stop.set()
    thread.join()
    rec.close()
    assert errors == []
    assert len(seen) >= 2 and seen == sorted(seen)  # counts only grow; every read was exact
    assert crashtest.check_store(path) == 8


def test_path_that_is_not_a_store_is_refused_and_untouched(tmp_path):
    plain = tmp_path / "notes"
    plain.mkdir()
    (plain / "readme.txt").write_text("hello")
    with pytest.raises(StoreError, match="not a robot-stack episode store"):
        EpisodeRecorder(plain, OBS, ACT)
    with pytest.raises(StoreError, match="not a robot-stack episode store"):
        EpisodeDataset(plain)
    assert _files(plain) == ["readme.txt"]
    with pytest.raises(FileNotFoundError):
        EpisodeDataset(tmp_path / "missing.zarr")


def test_newer_schema_version_is_refused(tmp_path):
    path = tmp_path / "new.zarr"
    _record(path, [1])
    doc = json.loads((path / "zarr.json").read_text())
    doc["attributes"]["robot_stack"]["schema_version"] = store.SCHEMA_VERSION + 1
    (path / "zarr.json").write_text(json.dumps(doc))
    before = _files(path)
    with pytest.raises(StoreError, match="schema version"):
        EpisodeRecorder(path, OBS, ACT)
    with pytest.raises(StoreError, match="schema version"):
        EpisodeDataset(path)
    assert _files(path) == before


def test_store_of_another_spec_is_refused(tmp_path):
    path = tmp_path / "spec.zarr"
    _record(path, [1])
    with pytest.raises(SpecError, match="heightmap"):
        EpisodeRecorder(path, ObservationSpec.create(HeightmapSpec(64)), ACT)
    with pytest.raises(SpecError, match="dpos"):
        EpisodeRecorder(path, OBS, ActionSpec(dpos=0.02))


def test_step_that_differs_from_the_first_step_is_refused_and_not_written(tmp_path):
    path = tmp_path / "bad.zarr"
    rec = EpisodeRecorder(path, OBS, ACT)
    rec.start_episode({"seed": 0})
    good = OBS.zeros()
    rec.add_step(good, np.zeros(5, np.float32), 0.0, {"latency_policy": 0.01})
    with pytest.raises(SpecError, match="unexpected keys"):
        rec.add_step(good, np.zeros(5, np.float32), 0.0, {"latency_policy": 0.01, "depth": np.zeros((4, 4))})
    with pytest.raises(SpecError, match="missing keys"):
        rec.add_step(good, np.zeros(5, np.float32), 0.0)
    with pytest.raises(SpecError, match="heightmap"):
        rec.add_step({**good, "heightmap": np.zeros((1, 8, 8), np.float32)}, np.zeros(5, np.float32), 0.0)
    with pytest.raises(SpecError, match="NaN"):
        rec.add_step({**good, "gripper": np.array([np.nan, 0], np.float32)}, np.zeros(5, np.float32), 0.0)
    with pytest.raises(SpecError, match="action"):
        rec.add_step(good, np.zeros(4, np.float32), 0.0, {"latency_policy": 0.01})
    rec.end_episode(True)
    rec.close()
    assert rec.stats["steps_written"] == 1
    ep = EpisodeDataset(path).episode(0)
    assert len(ep) == 1 and set(ep.extras) == {"latency_policy"}


def test_out_of_order_calls_raise(tmp_path):
    rec = EpisodeRecorder(tmp_path / "o.zarr", OBS, ACT)
    with pytest.raises(RecorderError, match="start_episode"):
        rec.add_step(OBS.zeros(), np.zeros(5, np.float32), 0.0)
    with pytest.raises(RecorderError):
        rec.end_episode(True)
    rec.start_episode()
    with pytest.raises(RecorderError, match="in progress"):
        rec.start_episode()
    rec.close()
    with pytest.raises(RecorderError, match="closed"):
        rec.start_episode()


def test_full_ring_discards_the_episode_without_blocking(tmp_path):
    path = tmp_path / "full.zarr"
    rec = EpisodeRecorder(path, OBS, ACT, queue_steps=3)
    os.kill(rec.writer_pid, signal.SIGSTOP)  # a writer stalled (by the disk, say): the ring fills
    try:
        rec.start_episode({"seed": 0})
        for _ in range(10):  # steps are dropped, not waited for
            rec.add_step(OBS.zeros(), np.zeros(5, np.float32), 0.0)
        assert rec.stats["steps_dropped"] == 7
    finally:
        os.kill(rec.writer_pid, signal.SIGCONT)
    rec.end_episode(True)
    rec.flush()  # the writer has caught up: the ring has room again
    rec.start_episode({"seed": 1})
    rec.add_step(OBS.zeros(), np.zeros(5, np.float32), 1.0)
    rec.end_episode(True)
    rec.close()
    ds = EpisodeDataset(path)
    assert [e.meta["seed"] for e in ds.episodes()] == [1]
    assert rec.stats["episodes_discarded"] == 1


def test_when_full_wait_blocks_until_the_writer_frees_a_slot(tmp_path):
    path = tmp_path / "wait.zarr"
    rec = EpisodeRecorder(path, OBS, ACT, queue_steps=2, when_full="wait")
    os.kill(rec.writer_pid, signal.SIGSTOP)
    threading.Timer(0.3, os.kill, (rec.writer_pid, signal.SIGCONT)).start()
    rec.start_episode({"seed": 0})
    for t in range(6):
        rec.add_step(OBS.zeros(), np.zeros(5, np.float32), float(t))
    rec.end_episode(True)
    rec.close()
    assert rec.stats["steps_dropped"] == 0
    assert EpisodeDataset(path).episode(0).reward.tolist() == [0, 1, 2, 3, 4, 5]


def test_interrupted_store_is_repaired_on_open_with_a_message(tmp_path, caplog):
    path = tmp_path / "int.zarr"
    _record(path, [1, 2])
    group, header = store.open_group(path, "r+")
    store.append_steps(group, {k: np.zeros((3, *a.shape[1:]), a.dtype) for k, a in group["data"].arrays()}, header)
    group[store.ENDS].resize((3,))  # an end slot that was never written: the fill value -1
    (path / "data" / "action" / "c" / "0" / "0.abc.partial").write_bytes(b"half")
    assert len(EpisodeDataset(path)) == 2  # readers ignore the uncommitted tail
    with caplog.at_level("WARNING", logger="robot_stack.recorder"):
        rec = EpisodeRecorder(path, OBS, ACT)
    rec.close()
    assert any("uncommitted steps" in m for m in rec.repairs) and any("temporary" in m for m in rec.repairs)
    assert "repaired interrupted store" in caplog.text
    assert crashtest.check_store(path) == 2
    assert all(a.shape[0] == EpisodeDataset(path).n_steps for _, a in store.open_group(path)[0]["data"].arrays())
