"""The policy-server wire format: msgpack maps, numpy arrays as ``{dtype, shape, bytes}`` (see docs/protocol.md).

Nothing here touches a socket: ``encode``/``decode`` turn Python values into single msgpack frames and back,
so the server, the client, the fuzz tests and a non-Python client all agree on one definition.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)
REQUEST_TYPES = ("hello", "act", "health", "metrics")
# dtypes an array may carry on the wire; anything else is refused before numpy sees it.
WIRE_DTYPES = ("float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
               "bool")
MAX_NDIM = 8
# name -> little-endian dtype, built once: looking a dtype up per array is measurable at 1 kHz of requests.
_LE_DTYPES = {name: np.dtype(name).newbyteorder("<") for name in WIRE_DTYPES}
_NAMES = {np.dtype(name): name for name in WIRE_DTYPES}

# Error codes carried in ``error.code`` replies.
E_DECODE = "decode"              # not msgpack, or not a map
E_VERSION = "version"            # missing or unsupported "v"
E_AUTH = "auth"                  # missing or wrong token
E_TYPE = "bad_request"           # unknown "type", missing fields, bad field types
E_ARRAY = "bad_array"            # array encoding broken (dtype, shape, byte count)
E_OBS = "bad_observation"        # arrays fine but they do not fit the policy's observation spec
E_TOO_LARGE = "too_large"        # message over the size limit
E_INTERNAL = "internal"          # the policy failed; the server keeps serving


class WireError(ValueError):
    """A message that cannot be accepted; ``code`` is one of the ``E_*`` codes above."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def pack_array(arr: np.ndarray) -> dict[str, Any]:
    """A C-contiguous little-endian array as ``{"dtype", "shape", "bytes"}``.

    ``bytes`` is a read-only memoryview of the array's buffer when it is already C-contiguous and
    little-endian (msgpack writes it as ``bin`` straight from that buffer, no intermediate copy).
    """
    a = np.ascontiguousarray(arr)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    name = _NAMES.get(a.dtype) or a.dtype.name
    return {"dtype": name, "shape": list(a.shape), "bytes": memoryview(a.reshape(-1)).cast("B") if a.size else b""}


def unpack_array(obj: Any, name: str = "array") -> np.ndarray:
    """The inverse of ``pack_array``; every malformation raises ``WireError(E_ARRAY, ...)`` naming ``name``."""
    if not isinstance(obj, dict):
        raise WireError(E_ARRAY, f"{name}: expected a map {{dtype, shape, bytes}}, got {type(obj).__name__}")
    missing = [k for k in ("dtype", "shape", "bytes") if k not in obj]
    if missing:
        raise WireError(E_ARRAY, f"{name}: missing keys {missing}")
    dtype, shape, data = obj["dtype"], obj["shape"], obj["bytes"]
    if not isinstance(dtype, str) or dtype not in WIRE_DTYPES:
        raise WireError(E_ARRAY, f"{name}: dtype {dtype!r} not allowed; allowed: {list(WIRE_DTYPES)}")
    if not isinstance(shape, list | tuple) or len(shape) > MAX_NDIM:
        raise WireError(E_ARRAY, f"{name}: shape must be a list of at most {MAX_NDIM} non-negative integers")
    if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**31 for s in shape):
        raise WireError(E_ARRAY, f"{name}: shape must be a list of non-negative integers, got {shape!r}")
    if not isinstance(data, bytes | bytearray):
        raise WireError(E_ARRAY, f"{name}: 'bytes' must be binary, got {type(data).__name__}")
    le = _LE_DTYPES[dtype]
    want = math.prod(shape) * le.itemsize  # exact integer arithmetic: no int64 overflow on absurd shapes
    if len(data) != want:
        raise WireError(E_ARRAY, f"{name}: shape {list(shape)} of {dtype} needs {want} bytes, got {len(data)}")
    return np.frombuffer(data, dtype=le).reshape(shape)


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return pack_array(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__} on the wire")


def encode(message: dict[str, Any]) -> bytes:
    """One msgpack frame; numpy arrays become ``{dtype, shape, bytes}`` maps."""
    return msgpack.packb(message, default=_default, use_bin_type=True)


def decode(frame: bytes, max_bytes: int | None = None) -> dict[str, Any]:
    """Parse one frame into a map, refusing oversized, truncated or non-map input."""
    if max_bytes is not None and len(frame) > max_bytes:
        raise WireError(E_TOO_LARGE, f"message of {len(frame)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        msg = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for broken input
        raise WireError(E_DECODE, f"not a valid msgpack message: {type(exc).__name__}: {exc}") from None
    if not isinstance(msg, dict):
        raise WireError(E_DECODE, f"a message must be a msgpack map, got {type(msg).__name__}")
    return msg


def check_envelope(msg: dict[str, Any]) -> tuple[str, int]:
    """Version and type checks shared by every request; returns (type, id)."""
    version = msg.get("v")
    if version not in SUPPORTED_VERSIONS or isinstance(version, bool):
        raise WireError(E_VERSION, f"protocol version {version!r} not supported; supported: {list(SUPPORTED_VERSIONS)}")
    kind = msg.get("type")
    if kind not in REQUEST_TYPES:
        raise WireError(E_TYPE, f"unknown request type {kind!r}; valid: {list(REQUEST_TYPES)}")
    req_id = msg.get("id", 0)
    if not isinstance(req_id, int) or isinstance(req_id, bool) or not -(2**63) <= req_id < 2**64:
        raise WireError(E_TYPE, f"'id' must be an integer, got {type(req_id).__name__}")
    return kind, req_id


def error_reply(req_id: Any, code: str, message: str) -> dict[str, Any]:
    safe_id = req_id if isinstance(req_id, int) and not isinstance(req_id, bool) else None
    return {"v": PROTOCOL_VERSION, "id": safe_id, "ok": False, "error": {"code": code, "message": message[:500]}}
