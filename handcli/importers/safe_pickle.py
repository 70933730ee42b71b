"""Unpickling other tools' files without running their code.

A pickle can call any importable function while it loads, so `pickle.load` on a file from elsewhere is
arbitrary code execution. `load_pickle` resolves only the globals that plain data needs and refuses every
other name with a one-line `BadInput`:

* numpy arrays, dtypes and scalars (`numpy.core.multiarray._reconstruct`, `numpy.ndarray`, `numpy.dtype`,
  `numpy.core.multiarray.scalar`, and the `numpy._core` spellings numpy 2 writes), plus `_codecs.encode`,
  which protocol-2 pickles use to carry array bytes;
* `builtins.set` / `frozenset` / `slice` / `complex` and `collections.OrderedDict`;
* torch tensors pickled with plain `pickle` / `joblib` (as HaWoR's `world_space_res.pth` is):
  `torch._utils._rebuild_tensor_v2` / `_v3`, and `torch.storage._load_from_bytes`, which is replaced by a version that
  reads the embedded storage with `torch.load(weights_only=True)` (torch's own loader would allow anything);
* joblib's `NumpyArrayWrapper`: joblib writes each numpy array's raw bytes right after a small wrapper
  object in the pickle stream; the wrapper is read here as plain data (dtype, shape, order) and the bytes as
  an array, object arrays refused.

Torch zip checkpoints (`torch.save`) are read with `torch.load(weights_only=True)`, torch's restricted loader.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from handcli.artifacts import MAX_NPZ_TOTAL, MAX_PICKLE_BYTES, MAX_PICKLE_ITEMS
from handcli.errors import BadInput

MAX_ARRAY_ELEMENTS = 400_000_000
MAX_NESTING = 100  # containers inside containers: a hand file needs 4 or 5 levels

_NUMPY_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}
_BUILTIN_GLOBALS = {
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "complex"),
    ("__builtin__", "set"), ("__builtin__", "frozenset"), ("collections", "OrderedDict"), ("_codecs", "encode"),
}
_COMPRESSED_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ": "xz", b"\x04\x22\x4d\x18": "lz4",
                     b"\x78\x01": "zlib", b"\x78\x5e": "zlib", b"\x78\x9c": "zlib", b"\x78\xda": "zlib"}


class _JoblibArray:
    """Stand-in for joblib.numpy_pickle.NumpyArrayWrapper: only its state (dtype, shape, order) is kept."""

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}


def _storage_from_bytes(data: bytes):
    """torch.storage._load_from_bytes, but through torch's weights-only loader."""
    import torch

    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except Exception as error:  # torch raises UnpicklingError / RuntimeError subclasses for refused content
        raise BadInput(f"embedded torch storage refused by torch.load(weights_only=True): "
                       f"{str(error).splitlines()[0][:120]}") from None


def _allowed_global(unpickler: pickle.Unpickler, base: type, module: str, name: str) -> Any:
    """The whitelist shared by both unpicklers below."""
    if (module, name) in _NUMPY_GLOBALS or (module, name) in _BUILTIN_GLOBALS:
        return base.find_class(unpickler, module, name)
    if (module, name) == ("joblib.numpy_pickle", "NumpyArrayWrapper"):
        return _JoblibArray
    if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor_v3"):
        import torch._utils

        return getattr(torch._utils, name)
    if (module, name) == ("torch.storage", "_load_from_bytes"):
        return _storage_from_bytes
    raise BadInput(f"pickle refers to {module}.{name}, which is not plain data; refusing to load it "
                   "(allowed: numpy arrays, lists/dicts/tuples, torch tensors)")


class _FastUnpickler(pickle.Unpickler):
    """C unpickler with the whitelist: for files without joblib arrays (most pickles)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("joblib.numpy_pickle", "NumpyArrayWrapper"):
            raise _NeedsJoblibReader
        return _allowed_global(self, pickle.Unpickler, module, name)


class _NeedsJoblibReader(Exception):
    """joblib array data follows BUILD opcodes, which only the pure-Python unpickler can intercept."""


class _RestrictedUnpickler(pickle._Unpickler):
    """Pure-Python unpickler (so BUILD can be intercepted for joblib arrays) with the whitelist."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        return _allowed_global(self, pickle._Unpickler, module, name)

    def load_build(self) -> None:
        super().load_build()
        if isinstance(self.stack[-1], _JoblibArray):
            self.stack[-1] = self._read_joblib_array(self.stack[-1].state)

    dispatch[pickle.BUILD[0]] = load_build

    def _read_joblib_array(self, state: dict) -> np.ndarray:
        dtype, shape, order = state.get("dtype"), state.get("shape"), state.get("order", "C")
        if not isinstance(dtype, np.dtype) or not isinstance(shape, tuple):
            raise BadInput("joblib array wrapper without a dtype and shape")
        if dtype.hasobject:
            raise BadInput("joblib file holds an object array (pickled Python objects); refusing to load it")
        count = int(np.prod(shape, dtype=np.int64))
        if count < 0 or count > MAX_ARRAY_ELEMENTS:
            raise BadInput(f"joblib array of shape {shape} is too large")
        if state.get("numpy_array_alignment_bytes") is not None:
            padding = self.read(1)
            if padding and padding[0]:
                self.read(padding[0])
        data = self.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise BadInput("joblib file is truncated (array data ends early)")
        array = np.frombuffer(data, dtype=dtype, count=count).copy()
        return array.reshape(shape[::-1]).T if order == "F" else array.reshape(shape)


def compression(head: bytes) -> str | None:
    """'gzip', 'zlib', ... when the first bytes are a compressor's magic (joblib compress=...), else None."""
    return next((kind for magic, kind in _COMPRESSED_MAGIC.items() if head.startswith(magic)), None)


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:160]


def load_pickle(path: Path) -> Any:
    """The object in a pickle / joblib / torch file, loaded with the whitelist above. One-line BadInput."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise BadInput(f"{path}: empty file")
    if size > MAX_PICKLE_BYTES.value():
        raise MAX_PICKLE_BYTES.refuse(f"{path}: the file", size)
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(b"PK\x03\x04"):
        return _load_torch_zip(path)
    if compression(head):
        raise BadInput(f"{path}: {compression(head)}-compressed file (joblib compress=...); re-save it uncompressed")
    # unpickled from memory: a length field promising gigabytes cannot make a read allocate more than the file
    data = path.read_bytes()
    try:
        try:
            return _FastUnpickler(io.BytesIO(data), encoding="latin1").load()
        except _NeedsJoblibReader:
            return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except BadInput:
        raise
    except RecursionError:
        raise BadInput(f"{path}: pickle nests too deeply") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError,
            UnicodeDecodeError, OverflowError, MemoryError, RuntimeError) as error:
        raise BadInput(f"{path}: not a readable pickle ({type(error).__name__}: {_short(error)})") from None


def _load_torch_zip(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise BadInput(f"{path}: not a readable torch file ({_short(error)})") from None
    except Exception as error:  # weights-only refusals are UnpicklingError; anything else is a bad file too
        raise BadInput(f"{path}: torch.load(weights_only=True) refused it ({_short(error)})") from None


def to_numpy(value: Any) -> Any:
    """Turn torch tensors into numpy arrays, walking lists, tuples and dicts.

    A pickle can refer to one object many times (`[[row] * 100000] * 2000` is 200 KB on disk), so the walk
    counts every container entry it visits, each time it visits it, against HANDCLI_MAX_PICKLE_ITEMS, and the
    arrays it meets, each time, against HANDCLI_MAX_NPZ_BYTES in total; nesting deeper than
    MAX_NESTING is refused. Shared objects are converted once (the result shares them too), so the walk never
    builds more than the file describes. One-line BadInput."""
    budget = {"items": MAX_PICKLE_ITEMS.value(), "bytes": MAX_NPZ_TOTAL.value()}
    seen: dict[int, Any] = {}
    return _to_numpy(value, budget, seen, 0, [value])


def _to_numpy(value: Any, budget: dict, seen: dict, depth: int, keep: list) -> Any:
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        budget["bytes"] -= value.nbytes
        if budget["bytes"] < 0:
            raise MAX_NPZ_TOTAL.refuse("pickle: its arrays", MAX_NPZ_TOTAL.value() - budget["bytes"])
        return value
    if not isinstance(value, (dict, list, tuple)):
        return value
    budget["items"] -= len(value)
    if budget["items"] < 0:
        raise MAX_PICKLE_ITEMS.refuse("pickle", MAX_PICKLE_ITEMS.value() - budget["items"])
    if depth >= MAX_NESTING:
        raise BadInput(f"pickle: containers nest deeper than {MAX_NESTING} levels")
    if id(value) in seen:
        # counted again above (the caller would see it again), converted once
        _charge_again(seen[id(value)], budget, depth)
        return seen[id(value)]
    if isinstance(value, dict):
        result: Any = {key: _to_numpy(item, budget, seen, depth + 1, keep) for key, item in value.items()}
    else:
        result = type(value)(_to_numpy(item, budget, seen, depth + 1, keep) for item in value)
    keep.append(value)  # ids stay unique while the walk runs
    seen[id(value)] = result
    return result


def _charge_again(value: Any, budget: dict, depth: int) -> None:
    """A shared container met again: charge what it holds once more, without rebuilding it."""
    stack = [(value, depth)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, np.ndarray):
            budget["bytes"] -= item.nbytes
            if budget["bytes"] < 0:
                raise MAX_NPZ_TOTAL.refuse("pickle: its arrays", MAX_NPZ_TOTAL.value() - budget["bytes"])
        elif isinstance(item, (dict, list, tuple)):
            if item is not value:
                budget["items"] -= len(item)
                if budget["items"] < 0:
                    raise MAX_PICKLE_ITEMS.refuse("pickle", MAX_PICKLE_ITEMS.value() - budget["items"])
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
