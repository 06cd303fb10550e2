"""robot-stack serve --policy FILE.onnx: the policy server on the robot PC (protocol: docs/protocol.md)."""

from __future__ import annotations

import argparse
import os
import signal
import threading

HELP = "serve an exported ONNX policy over pyzmq + msgpack (localhost by default)"
DESCRIPTION = HELP + """

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


def run(args: argparse.Namespace) -> int:
    from robot_stack.runtime import PolicyServer, ServeConfig, load_policy_package

    token = read_token(args.token_env, args.token_file)
    cfg = ServeConfig(policy=args.policy, bind=args.bind, token=token, max_message_bytes=args.max_message_bytes,
                      batch=not args.no_batch, threads=args.threads, rt_priority=args.rt_priority)
    policy = load_policy_package(args.policy, None, threads=args.threads)
    server = PolicyServer(policy, cfg)
    endpoint = server.bind()
    print(f"serving {args.policy} on {endpoint} (token {'on' if token else 'off'}, "
          f"limit {server.max_bytes} bytes)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if args.parent_pid:
        watch_parent(args.parent_pid, stop)
    try:
        server.serve(stop)
    except KeyboardInterrupt:
        pass
    return 0
