"""Checkpoints load without unpickling: a file holding pickled Python objects is refused by export, offline
--init and training resume before any of its code runs; the one format round-trips; older run files still export."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from test_offline_job import record_toy

import sim
from policies.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    LEGACY_OFFLINE,
    load_actor,
    module_state,
    read_checkpoint,
    write_checkpoint,
)
from policies.networks import build_actor, build_critic
from policies.networks.config import NetworkConfig, NetworkError
from robot_stack import cli
from robot_stack.runtime import load_policy_package
from robot_stack.specs import SpecError

REPO = Path(__file__).resolve().parent.parent
NET = {"family": "cnn", "group": "C4", "widths": [2], "kernel_sizes": [3], "hidden": 2}
NET_WORDS = [f"network.{k}={v}" for k, v in NET.items()]


class RunsCode:
    """Unpickling this touches ``marker``: stands for any code a shared checkpoint could carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    """(checkpoint.pt that runs code when unpickled, the marker file that code would create)."""
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil" / "checkpoint.pt"
    path.parent.mkdir()
    torch.save({"format": FORMAT, "version": FORMAT_VERSION, "extra": {"note": RunsCode(marker)}}, path)
    assert not marker.exists()
    return path, marker


@pytest.fixture
def spec():
    return sim.policy_spec(sim.make_env("toy_reach", heightmap_size=16), NET["group"], NET["family"])


def _refused(capsys, rc: int, path: Path, marker: Path) -> None:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert str(path) in err and "pickled Python objects" in err and "will not execute" in err
    assert not marker.exists(), "the checkpoint's code ran"


def test_the_payload_is_live_code(tmp_path):
    marker = tmp_path / "m"
    pickle.loads(pickle.dumps(RunsCode(marker)))
    assert marker.exists()


def test_export_refuses_pickled_objects(tmp_path, evil, capsys):
    path, marker = evil
    rc = cli.main(["export", str(path), "--out", str(tmp_path / "x.onnx")])
    _refused(capsys, rc, path, marker)
    assert not (tmp_path / "x.onnx").exists()


def test_offline_init_refuses_pickled_objects(tmp_path, evil, capsys):
    path, marker = evil
    store = record_toy(tmp_path / "toy.zarr", episodes=2, size=16)
    rc = cli.main(["offline", "offline_toy", "--dataset", str(store), "--init", str(path), "env.heightmap_size=16",
                   *NET_WORDS, "steps=2", "batch_size=4", "eval_episodes=1", "progress=false", "export=false",
                   f"out_dir={tmp_path / 'runs'}"])
    _refused(capsys, rc, path, marker)


def test_training_resume_refuses_pickled_objects(evil, capsys):
    path, marker = evil
    rc = cli.main(["train", "train_toy", f"out_dir={path.parent}", "env.heightmap_size=16", *NET_WORDS,
                   "tensorboard=false", "progress=false", "export_onnx=false", "expert_episodes=0", "total_steps=8",
                   "num_envs=1"])
    _refused(capsys, rc, path, marker)


def test_only_checkpoint_module_calls_torch_load():
    callers = [p.relative_to(REPO) for top in ("policies", "robot_stack", "sim", "hardware", "scripts")
               for p in (REPO / top).rglob("*.py") if re.search(r"torch\.load\(", p.read_text())]
    assert callers == [Path("policies/checkpoint.py")]


def test_checkpoint_round_trips(tmp_path, spec):
    torch.manual_seed(0)
    cfg = NetworkConfig.from_dict(NET)
    actor, critic = build_actor(spec, cfg), build_critic(spec, cfg)
    rng = np.random.default_rng(3)
    extra = {"step": 7, "algo": "sac", "evals": [{"step": 5, "success_rate": 0.5}], "rng": rng.bit_generator.state,
             "torch_rng": torch.get_rng_state(), "opt": torch.optim.Adam(actor.parameters()).state_dict()}
    path = write_checkpoint(tmp_path / "run" / "checkpoint.pt", spec, {k: NET[k] for k in ("widths", "kernel_sizes",
                            "hidden")}, {"actor": module_state(actor), "critic": module_state(critic)}, extra)
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no tmp file left behind
    ckpt = read_checkpoint(path)
    assert (ckpt.spec, ckpt.network, ckpt.format) == (spec, cfg, f"{FORMAT}/{FORMAT_VERSION}")
    assert ckpt.extra["rng"] == rng.bit_generator.state and ckpt.extra["evals"] == extra["evals"]
    torch.testing.assert_close(ckpt.modules["critic"], critic.state_dict())
    loaded, loaded_spec, summary = load_actor(path)
    assert loaded_spec == spec and summary == {"step": 7, "algo": "sac", "format": ckpt.format}
    hm, vec = torch.rand(2, *spec.observation.fields[0].shape), torch.rand(2, spec.observation.vector_dim)
    actor.eval()
    torch.testing.assert_close(loaded(hm, vec), actor(hm, vec))


def test_writer_refuses_what_weights_only_loading_would(tmp_path, spec):
    with pytest.raises(TypeError, match=r"checkpoint\['extra'\]\['evals'\]\[0\] is a numpy.float64"):
        write_checkpoint(tmp_path / "c.pt", spec, NET, {}, {"evals": [np.float64(0.5)]})
    assert not list(tmp_path.iterdir())


def test_a_newer_format_version_is_named(tmp_path):
    path = tmp_path / "c.pt"
    torch.save({"format": FORMAT, "version": FORMAT_VERSION + 1}, path)
    with pytest.raises(NetworkError, match=rf"{re.escape(str(path))}: checkpoint format version {FORMAT_VERSION + 1}"):
        read_checkpoint(path)


def test_a_job_gets_its_own_error_type(tmp_path, evil):
    path, marker = evil
    with pytest.raises(SpecError, match=f"{re.escape(str(path))}: refused: this init checkpoint holds pickled"):
        read_checkpoint(path, SpecError, "init checkpoint")
    broken = tmp_path / "broken.pt"
    torch.save({"format": LEGACY_OFFLINE, "spec": {"group": "C4"}, "network": {}}, broken)
    with pytest.raises(SpecError, match="without a valid spec / network config"):
        read_checkpoint(broken, SpecError)
    assert not marker.exists()


def _legacy_train(spec, actor) -> dict:
    """The layout ``robot-stack train`` wrote before the one format (format 2: TwinQ critic)."""
    return {"format": 2, "spec": spec.to_dict(), "network": dict(NET), "step": 40, "evals": [{"step": 20}],
            "agent": {"actor": actor.state_dict(), "log_alpha": torch.zeros(()), "updates": 3,
                      "rng": np.random.default_rng(0).bit_generator.state},
            "torch_rng": torch.get_rng_state(), "buffer_size": 0}


def _legacy_offline(spec, actor) -> dict:
    return {"format": LEGACY_OFFLINE, "spec": spec.to_dict(), "network": dict(NET), "algo": "bc",
            "actor": actor.state_dict(), "modules": {"actor": actor.state_dict()}, "eval": {"success_rate": 0.5}}


@pytest.mark.parametrize(("layout", "fmt", "summary"), [(_legacy_train, "robot_stack.train/2",
                                                        {"step": 40, "buffer_size": 0}),
                                                       (_legacy_offline, LEGACY_OFFLINE, {"algo": "bc"})])
def test_older_run_files_still_export(tmp_path, spec, layout, fmt, summary):
    torch.manual_seed(1)
    actor = build_actor(spec, NetworkConfig.from_dict(NET)).eval()
    path = tmp_path / "checkpoint.pt"
    torch.save(layout(spec, actor), path)
    assert load_actor(path)[2] == {**summary, "format": fmt}
    assert cli.main(["export", str(path), "--out", str(tmp_path / "p.onnx")]) == 0
    obs = spec.observation.zeros()
    obs["heightmap"][0, 4:7, 9:12] = 0.05
    with torch.no_grad():
        vector = torch.from_numpy(spec.observation.vector_of(obs)[None])
        mean, _ = actor(torch.from_numpy(obs["heightmap"][None]), vector)
    np.testing.assert_allclose(load_policy_package(tmp_path / "p.onnx", expected=spec).act(obs),
                               torch.tanh(mean)[0].numpy(), atol=1e-4)
