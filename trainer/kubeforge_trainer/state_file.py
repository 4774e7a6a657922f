"""The training state as one file that loads without unpickling: a JSON header, then the tensors'
bytes, each read back as a view into the downloaded buffer.

Layout (integers little-endian):

    8 bytes   MAGIC, which names the format and its version
    8 bytes   the header's length in bytes
    header    JSON: {"tree": the state with each tensor replaced by {"@tensor": i},
                     "tensors": [{"dtype": "bfloat16", "shape": [768, 3072], "offset": n}, ...]}
    padding   up to a multiple of ALIGNMENT
    data      tensor i's bytes at `offset` from here, C-contiguous, each at a multiple of ALIGNMENT

`torch.load` rebuilds every tensor through its (safe) unpickler and copies its bytes into fresh
storage; at the sizes of a small model that per-tensor work costs as much as the download. Here
`decode` parses the header and makes each tensor a view of the buffer the state was downloaded
into (`torch.frombuffer`): nothing is copied, and nothing but `json.loads` turns bytes into
objects.

The tree holds what a training state is made of: dicts (string or other scalar keys, e.g. an
optimiser's parameter indices; a module's state_dict keeps the `_metadata` that load_state_dict
reads), lists, tuples, None, bools, ints, floats (NaN and infinities included), strings and dense
tensors of any dtype. Tensors come back on the CPU, contiguous, without `requires_grad` and
writable; they share the buffer's memory, so an optimiser that keeps them as its state keeps the
buffer alive. Anything else is refused when the state is encoded.
"""

from __future__ import annotations

import json
import struct
from collections import OrderedDict
from typing import Any

import numpy
import torch

MAGIC = b"KFSTATE1"
ALIGNMENT = 64  # a cache line, and more than any dtype's alignment
_LENGTH = struct.Struct("<Q")
_PREFIX = len(MAGIC) + _LENGTH.size
# Tags are JSON objects with exactly one of these keys. A state's own dict with a key that starts
# with "@" is written as "@items", so it can never be mistaken for a tag.
_TENSOR, _TUPLE, _ITEMS, _MODULE_STATE = "@tensor", "@tuple", "@items", "@module_state"


def _aligned(offset: int) -> int:
    return -(-offset // ALIGNMENT) * ALIGNMENT


def encode(state: object) -> bytes:
    """The state as one file. Tensors are copied once, straight into the result, so the result is
    a snapshot: later changes to the tensors do not reach it."""
    tensors: list[torch.Tensor] = []
    tree = _encode_tree(state, tensors, "state")
    records: list[dict[str, Any]] = []
    chunks: list[bytes | memoryview] = []
    offset = 0
    for tensor in tensors:
        plain = tensor.detach().cpu().resolve_conj().resolve_neg().contiguous()
        flat = plain.reshape(-1).view(torch.uint8)
        padding = _aligned(offset) - offset
        if padding:
            chunks.append(bytes(padding))
        offset += padding
        records.append(
            {
                "dtype": str(tensor.dtype).removeprefix("torch."),
                "shape": list(tensor.shape),
                "offset": offset,
            }
        )
        chunks.append(flat.numpy().data)
        offset += flat.numel()
    header = json.dumps({"tree": tree, "tensors": records}, separators=(",", ":")).encode()
    padding = _aligned(_PREFIX + len(header)) - _PREFIX - len(header)
    return b"".join([MAGIC, _LENGTH.pack(len(header)), header, bytes(padding), *chunks])


def decode(buffer: torch.Tensor) -> Any:
    """The state in `buffer` (a 1-D uint8 CPU tensor holding one file written by `encode`), its
    tensors views of the buffer; raises ValueError when the buffer is not such a file."""
    if buffer.dtype != torch.uint8 or buffer.dim() != 1:
        raise TypeError("a state file is decoded from a 1-D uint8 tensor")
    array = buffer.numpy()
    if len(array) < _PREFIX or array[: len(MAGIC)].tobytes() != MAGIC:
        raise ValueError(f"not a state file: it does not start with {MAGIC!r}")
    (length,) = _LENGTH.unpack(array[len(MAGIC) : _PREFIX].tobytes())
    start = _aligned(_PREFIX + length)
    if start > len(array):
        raise ValueError(f"the state file's header ({length} bytes) runs past its end")
    try:
        header = json.loads(array[_PREFIX : _PREFIX + length].tobytes())
        views = [
            _view(array, start, record["dtype"], record["shape"], record["offset"])
            for record in header["tensors"]
        ]
        return _decode_tree(header["tree"], views)
    except (KeyError, IndexError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"the state file's header is malformed: {error!r}") from None


def _view(
    array: numpy.ndarray[Any, Any], start: int, dtype_name: str, shape: list[int], offset: int
) -> torch.Tensor:
    """The tensor at `offset` from `start`. Each gets a storage of its own that starts at its
    first byte, not a view with an offset into the buffer's storage: some of torch's functions
    ignore an offset (`torch.set_rng_state` crashes on one), and `torch.save` of such a view would
    write the whole buffer."""
    dtype = getattr(torch, dtype_name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"the state file names an unknown dtype {dtype_name!r}")
    if offset < 0 or offset % ALIGNMENT or any(size < 0 for size in shape):
        raise ValueError(f"the state file places a tensor at {offset} with shape {shape}")
    count = 1
    for size in shape:
        count *= size
    stop = start + offset + count * dtype.itemsize
    if stop > len(array):
        raise ValueError(f"a tensor in the state file ends at byte {stop}, past its end")
    if count == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(array, dtype=dtype, count=count, offset=start + offset).view(shape)


def _encode_tree(value: object, tensors: list[torch.Tensor], path: str) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided or value.is_quantized:
            raise TypeError(f"{path}: only dense tensors can be saved, not {value.layout}")
        tensors.append(value)
        return {_TENSOR: len(tensors) - 1}
    if isinstance(value, list):
        return [_encode_tree(item, tensors, f"{path}[{i}]") for i, item in enumerate(value)]
    if type(value) is tuple:
        items = [_encode_tree(item, tensors, f"{path}[{i}]") for i, item in enumerate(value)]
        return {_TUPLE: items}
    if isinstance(value, dict):
        # A module's state_dict carries its modules' versions, which load_state_dict reads.
        metadata = getattr(value, "_metadata", None)
        if metadata is not None:
            items = _encode_tree(dict(value), tensors, path)
            return {_MODULE_STATE: [items, _encode_tree(metadata, tensors, f"{path}._metadata")]}
        if all(isinstance(key, str) and not key.startswith("@") for key in value):
            return {
                key: _encode_tree(item, tensors, f"{path}.{key}") for key, item in value.items()
            }
        pairs = [
            [_encode_key(key, path), _encode_tree(item, tensors, f"{path}[{key!r}]")]
            for key, item in value.items()
        ]
        return {_ITEMS: pairs}
    raise TypeError(f"{path}: a {type(value).__name__} cannot be saved in a state file")


def _encode_key(key: object, path: str) -> Any:
    if key is None or isinstance(key, bool | int | float | str):
        return key
    if type(key) is tuple:
        return {_TUPLE: [_encode_key(item, path) for item in key]}
    raise TypeError(f"{path}: a {type(key).__name__} key cannot be saved in a state file")


def _decode_tree(node: Any, views: list[torch.Tensor]) -> Any:
    if isinstance(node, list):
        return [_decode_tree(item, views) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        if _TENSOR in node:
            return views[node[_TENSOR]]
        if _TUPLE in node:
            return tuple(_decode_tree(item, views) for item in node[_TUPLE])
        if _MODULE_STATE in node:
            items, metadata = node[_MODULE_STATE]
            module_state = OrderedDict(_decode_tree(items, views))
            module_state._metadata = _decode_tree(metadata, views)  # type: ignore[attr-defined]
            return module_state
        if _ITEMS in node:
            pairs = node[_ITEMS]
            return {_decode_tree(key, views): _decode_tree(item, views) for key, item in pairs}
    return {key: _decode_tree(item, views) for key, item in node.items()}
