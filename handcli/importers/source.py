"""`Source`: one input file and cached, safe views of its content, shared by every importer's sniff and load.

Sniffing looks at content, not the name: the first bytes (zip, npy magic, pickle protocol), npz/npy headers
(read without loading data), and for pickles the unpickled object (restricted unpickler, loaded once).
"""

from __future__ import annotations

import math
import zipfile
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from handcli.artifacts import (MAX_ELEMENTS, MAX_NPZ_MEMBER, NpzArrays, check_input_file, load_npz_arrays,
                             read_npz_headers)
from handcli.errors import BadInput
from handcli.importers.safe_pickle import compression, load_pickle, to_numpy

NPY_MAGIC = b"\x93NUMPY"


class Source:
    """A path plus lazily computed views. `kind`: 'npz', 'npy', 'torch-zip', 'pickle', 'compressed', 'unknown'."""

    def __init__(self, path: str | Path):
        self.path = check_input_file(path)

    @cached_property
    def head(self) -> bytes:
        with open(self.path, "rb") as handle:
            return handle.read(64)

    @cached_property
    def kind(self) -> str:
        if self.head.startswith(NPY_MAGIC):
            return "npy"
        if self.head.startswith(b"PK\x03\x04"):
            # np.savez and torch.save both write zip files: npz members are .npy files
            try:
                with zipfile.ZipFile(self.path) as archive:
                    names = archive.namelist()
            except (zipfile.BadZipFile, OSError):
                return "unknown"
            if names and all(name.endswith(".npy") for name in names):
                return "npz"
            if any(name.endswith("data.pkl") for name in names):
                return "torch-zip"
            return "unknown"
        if compression(self.head):
            return "compressed"
        # pickle protocol 2+ starts with PROTO; older protocols start with a container opcode
        if self.head[:1] == b"\x80" or self.head[:1] in (b"(", b"]", b"}", b"c"):
            return "pickle"
        return "unknown"

    # ------------------------------------------------------------------------------------------ npz / npy
    @cached_property
    def npz_headers(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """key -> (shape, dtype) without reading data ({} if not an npz)."""
        return read_npz_headers(self.path) if self.kind == "npz" else {}

    @cached_property
    def npz_arrays(self) -> NpzArrays:
        """Lazy: a member is checked against the limits and read only when an importer asks for its key."""
        return load_npz_arrays(self.path)

    @cached_property
    def npy_header(self) -> tuple[tuple[int, ...], np.dtype] | None:
        if self.kind != "npy":
            return None
        try:
            with open(self.path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                reader = {(1, 0): np.lib.format.read_array_header_1_0,
                          (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if reader is None:
                    raise ValueError(f"unsupported npy version {version}")
                shape, _fortran, dtype = reader(handle)
        except (ValueError, OSError, EOFError) as error:
            raise BadInput(f"{self.path}: not a readable npy file ({error})") from None
        if dtype.hasobject:
            raise BadInput(f"{self.path}: npy holds Python objects (pickled data is not accepted)")
        if math.prod(shape) > MAX_ELEMENTS:
            raise BadInput(f"{self.path}: array of shape {shape} is too large")
        declared = math.prod(shape) * dtype.itemsize
        if declared > MAX_NPZ_MEMBER.value():
            raise MAX_NPZ_MEMBER.refuse(f"{self.path}: the array", declared)
        if declared > self.path.stat().st_size:
            raise BadInput(f"{self.path}: truncated npy file (its header declares {declared} bytes of data, "
                           f"the file holds {self.path.stat().st_size})")
        return tuple(shape), dtype

    @cached_property
    def npy_array(self) -> np.ndarray:
        _ = self.npy_header
        try:
            return np.load(self.path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise BadInput(f"{self.path}: cannot read the npy array ({error})") from None

    # ---------------------------------------------------------------------------------------------- pickle
    @cached_property
    def pickled(self) -> Any:
        """The unpickled object with torch tensors turned into numpy arrays (None if not a pickle)."""
        if self.kind not in ("pickle", "torch-zip"):
            return None
        return to_numpy(load_pickle(self.path))
