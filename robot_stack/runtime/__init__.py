"""Deployment runtime: ONNX policy packages, the policy server and client, the safety filter, the control loop.

Imports only numpy, pyzmq, msgpack (and onnxruntime when a package is loaded): safe on the robot PC.
"""

from robot_stack.runtime.client import PolicyClient, PolicyTimeout, ServerError
from robot_stack.runtime.control import ControlLoop, EpisodeResult, LoopConfig
from robot_stack.runtime.package import OnnxPolicy, PackageError, load_policy_package, read_spec
from robot_stack.runtime.safety import SafetyConfig, SafetyFilter, filter_batch
from robot_stack.runtime.server import PolicyServer, ServeConfig, serve_in_thread

__all__ = ["ControlLoop", "EpisodeResult", "LoopConfig", "OnnxPolicy", "PackageError", "PolicyClient",
           "PolicyServer", "PolicyTimeout", "SafetyConfig", "SafetyFilter", "ServeConfig", "ServerError",
           "filter_batch", "load_policy_package", "read_spec", "serve_in_thread"]
