"""config.merge: the one deep merge of config mappings (a launch file under a job's own sizes and overrides)."""

from robot_stack import config


def test_merge_updates_sections_and_replaces_everything_else():
    base = {"sac": {"lr": 1e-3, "batch_size": 32}, "env": {"view": "gripper"}, "datasets": ["a"], "seed": 0}
    extra = {"sac": {"lr": 3e-4}, "env": "flat", "datasets": ["b"], "steps": 5}
    merged = config.merge(base, extra)
    assert merged == {"sac": {"lr": 3e-4, "batch_size": 32}, "env": "flat", "datasets": ["b"], "seed": 0, "steps": 5}


def test_merge_leaves_its_inputs_alone():
    base, extra = {"sac": {"lr": 1e-3}}, {"sac": {"n_step": 3}, "network": {"group": "C4"}}
    merged = config.merge(base, extra)
    merged["sac"]["lr"] = 0.0
    merged["network"]["group"] = "C8"
    assert base == {"sac": {"lr": 1e-3}} and extra == {"sac": {"n_step": 3}, "network": {"group": "C4"}}
