"""robot-stack serve --policy FILE.onnx: the policy server on the robot PC (protocol: docs/protocol.md)."""

from __future__ import annotations

import argparse

HELP = "serve an exported ONNX policy over pyzmq + msgpack (localhost by default)"


DESCRIPTION = HELP + """

Examples:
  robot-stack serve --policy runs/policy.onnx
  robot-stack serve --policy policy.onnx --bind tcp://0.0.0.0:5555 --token-file ~/.robot_stack_token

The token, when used, comes from the environment variable named by --token-env (default
ROBOT_STACK_TOKEN) or from --token-file, never from the command line. The first line printed is
"serving <policy> on <endpoint>" (a '*' port is resolved), so launchers can read the endpoint.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", required=True, help="the .onnx policy package")
    parser.add_argument("--bind", default="tcp://127.0.0.1:5555",
                        help="zmq endpoint (default tcp://127.0.0.1:5555; tcp://0.0.0.0:PORT to listen on all hosts)")
    parser.add_argument("--token-env", default="ROBOT_STACK_TOKEN", help="environment variable holding the token")
    parser.add_argument("--token-file", help="file holding the shared token (first line)")
    parser.add_argument("--max-message-bytes", type=int, default=0, help="request size limit (0: from the spec)")
    parser.add_argument("--no-batch", action="store_true", help="run one inference per request")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--rt-priority", type=int, default=0, metavar="N",
                        help="serve under SCHED_FIFO at priority N (1-99; needs root, CAP_SYS_NICE or `ulimit -r`), "
                             "so that other processes on the robot PC cannot delay a reply; 0 (default): normal")
    parser.add_argument("--parent-pid", type=int, default=0, metavar="PID",
                        help="stop serving once process PID is no longer this server's parent (for launchers: "
                             "a launcher that crashes or is killed leaves no server behind); 0 (default): off")


def run(args: argparse.Namespace) -> int:
    from robot_stack.jobs.serving import read_token, serve
    from robot_stack.runtime import ServeConfig

    token = read_token(args.token_env, args.token_file)
    cfg = ServeConfig(policy=args.policy, bind=args.bind, token=token, max_message_bytes=args.max_message_bytes,
                      batch=not args.no_batch, threads=args.threads, rt_priority=args.rt_priority)
    return serve(cfg, args.parent_pid)
