"""robot-stack train CONFIG [key=value ...]: an online SAC training job in sim."""

from __future__ import annotations

import argparse

HELP = "train a policy with SAC in sim (rich progress, tensorboard, checkpoints, resume, ONNX export)"
DESCRIPTION = (HELP + "\n\nExamples:\n  robot-stack train launch/train_push.yaml\n"
               "  robot-stack train train_toy seed=3 network.family=exact sac.lr=3e-4 total_steps=2000\n\n"
               "A job resumes from <out_dir>/checkpoint.pt when one exists (resume=false starts over).\n"
               "Ctrl-C saves a checkpoint before exiting. Tensorboard logs go to <out_dir>/tb.\n"
               "<out_dir>/evals.csv (step, success_rate, return, seconds; the mean q, bc_loss and alpha since the\n"
               "last eval) and <out_dir>/learning_curve.png are rewritten after every eval: read them while the\n"
               "job runs or after it, no torch needed.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML file, or a name in launch/ (e.g. train_push)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (e.g. seed=2 sac.lr=3e-4)")


def run(args: argparse.Namespace) -> int:
    from robot_stack import config
    from robot_stack.jobs.train import TrainConfig, train

    cfg = config.load(TrainConfig, args.config, args.overrides)
    train(cfg)
    return 0
