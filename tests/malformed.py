"""Generators of malformed input files (hypothesis strategies), shared by the fuzz tests and
scripts/reliability_report.py. Each strategy draws a function that writes one file into a directory."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from handcli.artifacts import SPEC

KEYS = sorted(SPEC) + ["extra", "keypoints", "pose"]
DTYPES = ["float32", "float64", "float16", "int64", "int8", "uint8", "bool", "complex64", "<U4", "S4"]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, 1e30, -1e30, 0.5]


@st.composite
def arrays(draw):
    """A small random array: random rank/shape (often hitting the contract's sizes), dtype and specials."""
    rank = draw(st.integers(0, 5))
    shape = tuple(draw(st.sampled_from([0, 1, 2, 3, 4, 15, 21])) for _ in range(rank))
    dtype = draw(st.sampled_from(DTYPES))
    size = int(np.prod(shape)) if shape else 1
    # a few drawn values tiled over the array: enough to place specials anywhere without huge draws
    if dtype in ("<U4", "S4"):
        pool = draw(st.lists(st.text(max_size=4) if dtype == "<U4" else st.binary(max_size=4), min_size=1,
                             max_size=8))
    else:
        pool = draw(st.lists(st.sampled_from(SPECIAL), min_size=1, max_size=8))
    values = np.resize(np.array(pool, dtype=dtype if dtype in ("<U4", "S4") else np.float64), size)
    with np.errstate(all="ignore"):
        return values.astype(dtype).reshape(shape)


def _valid_base(num_frames: int = 6) -> dict:
    rng = np.random.default_rng(0)
    return {"keypoints3d": (rng.normal(0, 0.03, (1, num_frames, 21, 3)) + [0, 0, 0.5]).astype(np.float32),
            "valid": np.ones((1, num_frames), bool), "is_right": np.array([True]), "fps": np.float32(30)}


@st.composite
def npz_payloads(draw):
    """A dict of arrays: either random keys, or a valid artifact with one or two keys broken."""
    if draw(st.booleans()):
        return {key: draw(arrays()) for key in draw(st.lists(st.sampled_from(KEYS), max_size=5, unique=True))}
    payload = _valid_base()
    for key in draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=2, unique=True)):
        payload[key] = draw(arrays())
    return payload


def write_npz(payload: dict) -> callable:
    def write(directory: Path) -> Path:
        path = directory / "input.npz"
        np.savez(path, **payload)
        return path
    return write


def _bytes_writer(data: bytes, name: str):
    def write(directory: Path) -> Path:
        path = directory / name
        path.write_bytes(data)
        return path
    return write


@st.composite
def hostile_files(draw):
    """Writers of files that are not well-formed npz: truncations, pickles, object arrays, junk, bad meta."""
    kind = draw(st.sampled_from(["truncated", "pickle_as_npz", "object_array", "junk", "bad_meta", "huge_header",
                                 "empty", "zip_without_npy"]))
    if kind == "truncated":
        buffer = io.BytesIO()
        np.savez(buffer, **_valid_base())
        data = buffer.getvalue()
        return kind, _bytes_writer(data[: draw(st.integers(0, len(data) - 1))], "input.npz")
    if kind == "pickle_as_npz":
        return kind, _bytes_writer(pickle.dumps({"keypoints3d": [1, 2, 3]}), "input.npz")
    if kind == "object_array":
        def write(directory: Path) -> Path:
            path = directory / "input.npz"
            np.savez(path, keypoints3d=np.array([None, {"x": 1}], dtype=object))
            return path
        return kind, write
    if kind == "junk":
        return kind, _bytes_writer(draw(st.binary(max_size=200)), "input.npz")
    if kind == "bad_meta":
        payload = _valid_base()
        payload["meta"] = np.array(draw(st.sampled_from([b"\xff\xfe\x00bad", b"[1,2]", b"{", b"null"])))
        return kind, write_npz(payload)
    if kind == "huge_header":
        def write(directory: Path) -> Path:
            path = directory / "input.npz"
            header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1, 21, 3), np.float32))
            header["shape"] = (1, draw(st.integers(10**7, 10**12)), 21, 3)
            with zipfile.ZipFile(path, "w") as archive, archive.open("keypoints3d.npy", "w") as member:
                np.lib.format.write_array_header_1_0(member, header)
            return path
        return kind, write
    if kind == "empty":
        return kind, _bytes_writer(b"", "input.npz")
    def write(directory: Path) -> Path:
        path = directory / "input.npz"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "hello")
        return path
    return kind, write
