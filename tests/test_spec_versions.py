"""Packages, served policies and stores of an older spec version are refused with both versions named."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from robot_stack.recorder import EpisodeDataset, EpisodeRecorder
from robot_stack.runtime import PackageError, PolicyClient, ServeConfig, load_policy_package, serve_in_thread
from robot_stack.runtime.package import read_spec
from robot_stack.runtime.synthetic import default_spec, make_package
from robot_stack.specs import SPEC_VERSION, ActionSpec, HeightmapSpec, ObservationSpec, SpecError

BOTH = rf"spec version 1; this robot-stack uses spec version {SPEC_VERSION}"


@pytest.fixture(scope="module")
def old_package(tmp_path_factory):
    spec = dataclasses.replace(default_spec(16), version=1)
    return make_package(tmp_path_factory.mktemp("old") / "old.onnx", spec, kind="linear"), spec


def test_an_old_package_is_refused_naming_both_versions(old_package):
    path, _ = old_package
    with pytest.raises(PackageError, match=BOTH):
        load_policy_package(path)
    with pytest.raises(PackageError, match=BOTH):
        read_spec(path)


def test_the_handshake_refuses_a_server_of_an_old_version(tmp_path):
    from robot_stack.runtime.package import OnnxPolicy

    spec = default_spec(16)
    policy = load_policy_package(make_package(tmp_path / "new.onnx", spec, kind="linear"), spec)
    old = OnnxPolicy(policy.session, dataclasses.replace(spec, version=1), policy.metadata, policy.path)
    server, thread, stop = serve_in_thread(old, ServeConfig(bind="tcp://127.0.0.1:*"))
    try:
        with pytest.raises(PackageError, match=BOTH):
            PolicyClient(server.endpoint)
    finally:
        stop.set()
        thread.join(timeout=5)


def test_an_old_store_is_refused_for_training_and_appending(tmp_path):
    obs, act = ObservationSpec.create(HeightmapSpec(16)), ActionSpec()
    path = tmp_path / "old.zarr"
    with EpisodeRecorder(path, obs, act) as rec:
        rec.start_episode()
        rec.add_step(obs.zeros(), np.zeros(5, np.float32), 0.0)
        rec.end_episode(True)
    assert EpisodeDataset(path).header["spec_version"] == SPEC_VERSION
    doc = json.loads((path / "zarr.json").read_text())
    del doc["attributes"]["robot_stack"]["spec_version"]  # what a store written before version 2 looks like
    (path / "zarr.json").write_text(json.dumps(doc))
    with pytest.raises(SpecError, match=BOTH + ".*reproject"):
        EpisodeDataset(path)
    with pytest.raises(SpecError, match=BOTH):
        EpisodeRecorder(path, obs, act)
