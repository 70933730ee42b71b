"""The artifact contract: the one place that knows the `.npz` keys, their shapes, dtypes and rules.

Every stage reads and writes through `load_artifact` / `save_artifact`; docs/artifacts.md documents the same
table. H hand tracks x T frames; V mesh vertices; D generalized-force dimensions.

Rules:
* Files load with `allow_pickle=False`; headers are checked before any array is read, so a hostile file
  (object arrays, absurd sizes, truncated zip) is rejected without unpickling or allocating.
* Inputs may hold NaN where `valid` is False; NaN/inf where `valid` is True is rejected. Outputs
  (`save_artifact`) must be finite everywhere.
* Writes are atomic: a temporary file in the target directory, fsync, then rename.
* Every problem is one line naming the key, raised as `BadInput` (exit code 2).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from handcli import __version__
from handcli.errors import BadInput, StageFailed

SCHEMA_VERSION = 1
NUM_KEYPOINTS = 21
# refuse arrays whose header promises more than this many elements (a 10-minute 60 fps clip with 4 hands
# and 21x3 keypoints is ~9e6; vertices for 4 hands x 36k frames x 1.6k verts ~2.3e8)
MAX_ELEMENTS = 400_000_000

# key -> (shape spec, dtype kind). Shape letters: H tracks, T frames, V vertices, D force dims, N any.
# Kinds: "f" float (stored float32), "b" bool, "i" integer, "s" string.
SPEC: dict[str, tuple[tuple[Any, ...], str]] = {
    "fps": ((), "f"),
    "keypoints3d": (("H", "T", 21, 3), "f"),
    "valid": (("H", "T"), "b"),
    "is_right": (("H",), "b"),
    "meta": ((), "s"),
    # from video
    "image_size": ((2,), "i"),
    "K": ((3, 3), "f"),
    "frame_index": (("T",), "i"),
    "track_id": (("H",), "i"),
    "keypoints2d": (("H", "T", 21, 3), "f"),
    "world_landmarks": (("H", "T", 21, 3), "f"),
    "boxes": (("H", "T", 4), "f"),
    "scores": (("H", "T"), "f"),
    # hand-model parameters
    "global_orient": (("H", "T", 3), "f"),
    "hand_pose": (("H", "T", 15, 3), "f"),
    "transl": (("H", "T", 3), "f"),
    "betas": (("H", "N"), "f"),
    # refinement
    "observed": (("H", "T"), "b"),
    "motion_state": (("H", "T"), "i"),
    # variance
    "var_joints": (("H", "T", 21), "f"),
    "var_vertices": (("H", "T", "V"), "f"),
    "var_force": (("H", "T", "D"), "f"),
    "var_root": (("H", "T", 3, 3), "f"),
}
REQUIRED = ("keypoints3d",)
# keys whose entries may be NaN on frames that are not valid (inputs only)
PER_FRAME_KEYS = ("keypoints3d", "keypoints2d", "world_landmarks", "boxes", "scores", "global_orient",
                  "hand_pose", "transl", "var_joints", "var_vertices", "var_force", "var_root")


@dataclass
class Artifact:
    """One stage's result for H hand tracks over T frames (field names are the npz keys)."""

    keypoints3d: np.ndarray  # (H, T, 21, 3) float32 metres, camera frame, canonical order
    valid: np.ndarray  # (H, T) bool
    is_right: np.ndarray  # (H,) bool
    fps: float = 30.0
    meta: dict = field(default_factory=dict)
    image_size: np.ndarray | None = None  # (2,) [W, H]
    K: np.ndarray | None = None  # (3, 3)
    frame_index: np.ndarray | None = None  # (T,)
    track_id: np.ndarray | None = None  # (H,)
    keypoints2d: np.ndarray | None = None  # (H, T, 21, 3) [u, v, confidence]
    world_landmarks: np.ndarray | None = None  # (H, T, 21, 3) detector's metric hand-centred landmarks
    boxes: np.ndarray | None = None  # (H, T, 4) [x0, y0, x1, y1] pixels
    scores: np.ndarray | None = None  # (H, T) detection confidence
    global_orient: np.ndarray | None = None  # (H, T, 3) axis-angle
    hand_pose: np.ndarray | None = None  # (H, T, 15, 3) axis-angle, MANO order, flat-hand zero pose
    transl: np.ndarray | None = None  # (H, T, 3)
    betas: np.ndarray | None = None  # (H, N): N shape values, as the hand model takes (MANO 10)
    observed: np.ndarray | None = None  # (H, T) bool: frames the input actually observed (refine infills the rest)
    motion_state: np.ndarray | None = None  # (H, T) 0 reach, 1 grasp, 2 manipulate, 3 release
    var_joints: np.ndarray | None = None  # (H, T, 21) m^2
    var_vertices: np.ndarray | None = None  # (H, T, V) m^2
    var_force: np.ndarray | None = None  # (H, T, D)
    var_root: np.ndarray | None = None  # (H, T, 3, 3) m^2 whole-hand covariance, camera frame

    @property
    def num_tracks(self) -> int:
        return int(self.keypoints3d.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.keypoints3d.shape[1])

    @property
    def has_params(self) -> bool:
        return all(getattr(self, k) is not None for k in ("global_orient", "hand_pose", "transl", "betas"))

    def arrays(self) -> dict[str, np.ndarray]:
        """The npz payload: every present field, in contract dtypes."""
        out: dict[str, np.ndarray] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "meta":
                out["meta"] = np.array(json.dumps(value, sort_keys=True, default=_json_default))
            elif f.name == "fps":
                out["fps"] = np.float32(value)
            else:
                out[f.name] = _cast(f.name, np.asarray(value))
        return out

    def replace(self, **changes: Any) -> "Artifact":
        """A copy with some fields changed (arrays are shared, not copied)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Artifact(**values)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _cast(key: str, array: np.ndarray) -> np.ndarray:
    kind = SPEC[key][1]
    if kind == "f":
        return array.astype(np.float32, copy=False)
    if kind == "b":
        return array.astype(bool, copy=False)
    if kind == "i":
        # float input (written by other tools) is accepted only when it holds whole numbers: casting NaN or
        # 2.7 to int64 would silently invent a frame index
        if array.dtype.kind == "f" and array.size and not (np.isfinite(array).all() and (array == np.round(array)).all()):
            raise BadInput(f"{key}: must hold whole numbers, got non-integral or non-finite values")
        return array.astype(np.int64, copy=False)
    return array


def _check_shape(key: str, shape: tuple[int, ...], dims: dict[str, int]) -> None:
    """Match `shape` against SPEC[key], binding letter dimensions in `dims` (consistent across keys)."""
    spec = SPEC[key][0]
    if len(shape) != len(spec):
        raise BadInput(f"{key}: expected shape {_spec_str(spec)}, got {tuple(shape)}")
    for size, want in zip(shape, spec):
        if isinstance(want, int):
            if size != want:
                raise BadInput(f"{key}: expected shape {_spec_str(spec)}, got {tuple(shape)}")
        elif want != "N":
            if dims.setdefault(want, size) != size:
                raise BadInput(f"{key}: dimension {want}={size} disagrees with {want}={dims[want]} of other keys "
                               f"(shape {tuple(shape)}, expected {_spec_str(spec)})")


def _spec_str(spec: tuple[Any, ...]) -> str:
    return "(" + ",".join(str(s) for s in spec) + ("," if len(spec) == 1 else "") + ")"


def _check_dtype(key: str, dtype: np.dtype) -> None:
    kind = SPEC[key][1]
    ok = {"f": dtype.kind in "fiu", "b": dtype.kind in "bui", "i": dtype.kind in "iu" or (dtype.kind == "f"),
          "s": dtype.kind in "US"}[kind]
    if not ok:
        raise BadInput(f"{key}: unsupported dtype {dtype}")


def read_npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shapes and dtypes of every array in an npz without reading the data (rejects object arrays)."""
    headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if not name.endswith(".npy"):
                    continue
                with archive.open(name) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _fortran, dtype = np.lib.format.read_array_header_1_0(member)
                    elif version == (2, 0):
                        shape, _fortran, dtype = np.lib.format.read_array_header_2_0(member)
                    else:
                        raise ValueError(f"unsupported npy format version {version}")
                headers[name[:-4]] = (tuple(shape), dtype)
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError) as error:
        raise BadInput(f"{path}: not a readable npz archive ({_short(error)})") from None
    for key, (shape, dtype) in headers.items():
        if dtype.hasobject:
            raise BadInput(f"{key}: holds Python objects (pickled data is not accepted)")
        if int(np.prod(shape, dtype=np.int64)) > MAX_ELEMENTS:
            raise BadInput(f"{key}: shape {shape} is too large")
    return headers


def _short(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:160]


def check_input_file(path: str | Path) -> Path:
    """The path of an existing, non-empty regular file, or one-line BadInput saying which it is not."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: no such file")
    if not path.is_file():
        raise BadInput(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise BadInput(f"{path}: empty file")
    return path


def load_npz_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an npz, safely (headers first, no pickles). Raises BadInput with one line."""
    path = check_input_file(path)
    headers = read_npz_headers(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in headers}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise BadInput(f"{path}: cannot read arrays ({_short(error)})") from None


def artifact_from_arrays(arrays: dict[str, np.ndarray], *, source: str = "input") -> Artifact:
    """Validate a dict of arrays against the contract and build an Artifact (input rules: NaN allowed only
    where `valid` is False). Unknown keys are ignored; missing optional keys are filled with defaults."""
    for key in REQUIRED:
        if key not in arrays:
            raise BadInput(f"{source}: missing required key '{key}' (have: {', '.join(sorted(arrays)) or 'none'})")
    dims: dict[str, int] = {}
    values: dict[str, Any] = {}
    for key in SPEC:
        if key not in arrays:
            continue
        array = np.asarray(arrays[key])
        _check_dtype(key, array.dtype)
        if key == "fps" and array.size == 1:
            array = array.reshape(())
        _check_shape(key, array.shape, dims)
        values[key] = array
    H, T = dims["H"], dims["T"]
    if T < 1:
        raise BadInput("keypoints3d: has no frames (T = 0)")
    values["valid"] = values.get("valid", np.ones((H, T), bool)).astype(bool)
    values["is_right"] = values.get("is_right", np.ones(H, bool)).astype(bool)
    if "meta" in values:
        try:
            meta = json.loads(str(values["meta"]))
        except (json.JSONDecodeError, UnicodeError) as error:
            raise BadInput(f"meta: not a JSON string ({_short(error)})") from None
        if not isinstance(meta, dict):
            raise BadInput("meta: JSON must be an object")
        values["meta"] = meta
    else:
        values["meta"] = {}
    fps = float(values.get("fps", 30.0))
    if not np.isfinite(fps) or not 0.1 <= fps <= 10000:
        raise BadInput(f"fps: {fps} is not a plausible frame rate")
    values["fps"] = fps
    valid = values["valid"]
    for key, value in list(values.items()):
        if SPEC[key][1] in "fi" and isinstance(value, np.ndarray):
            values[key] = _cast(key, value)
            _check_finite(key, values[key], valid if key in PER_FRAME_KEYS else None)
    # absurd magnitudes: hands kilometres away are a unit or format error, not motion
    observed = values["keypoints3d"][valid]
    if observed.size and np.abs(observed).max() > 100.0:
        raise BadInput(f"keypoints3d: values up to {np.abs(observed).max():.3g} m; expected metres "
                       "(a hand within 100 m of the camera)")
    return Artifact(**values)


def _check_finite(key: str, array: np.ndarray, valid: np.ndarray | None) -> None:
    finite = np.isfinite(array)
    if finite.all():
        return
    if valid is None:
        raise BadInput(f"{key}: contains NaN or inf")
    bad_where_valid = ~finite.reshape(*valid.shape, -1).all(-1) & valid
    if bad_where_valid.any():
        h, t = np.argwhere(bad_where_valid)[0]
        raise BadInput(f"{key}: NaN or inf on a valid frame (track {h}, frame {t}); "
                       "mark such frames invalid in 'valid'")


def load_artifact(path: str | Path) -> Artifact:
    """Load and validate a handcli artifact (or any keypoints-only npz that follows the contract)."""
    arrays = load_npz_arrays(path)
    return artifact_from_arrays(arrays, source=str(path))


def check_output(artifact: Artifact) -> dict[str, np.ndarray]:
    """Output rules: contract shapes, finite everywhere. Returns the npz payload. Raises StageFailed:
    a non-finite output is our bug, not the user's."""
    arrays = artifact.arrays()
    dims: dict[str, int] = {}
    for key, array in arrays.items():
        try:
            _check_shape(key, array.shape, dims)
        except BadInput as error:
            raise StageFailed(f"internal error, output {error.message}") from None
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise StageFailed(f"internal error: output key '{key}' is not finite")
    return arrays


def save_artifact(artifact: Artifact, path: str | Path) -> Path:
    """Validate and write atomically (temp file in the target directory + fsync + rename)."""
    arrays = check_output(artifact)
    path = Path(path)
    if path.suffix != ".npz":
        raise BadInput(f"{path}: output must end in .npz")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    return path


class atomic_path:
    """Context manager yielding a temporary path beside `target`; on success it is fsynced and renamed onto
    `target`, on any error (or KeyboardInterrupt) it is removed, so a reader sees the old file or the new
    one, never a partial one. A process killed with SIGKILL cannot clean up: its temporary file (hidden, named
    with its pid) is removed by the next write into the same directory once that pid is gone."""

    def __init__(self, target: str | Path):
        self.target = Path(target)
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        directory = self.target.parent if str(self.target.parent) else Path(".")
        if not directory.is_dir():
            raise BadInput(f"{self.target}: output directory {directory} does not exist")
        remove_stale_temporaries(directory, self.target.name)
        handle, name = tempfile.mkstemp(prefix=f".{self.target.name}.{os.getpid()}.",
                                        suffix=".tmp" + self.target.suffix, dir=directory)
        os.close(handle)
        self.tmp = Path(name)
        # mkstemp makes 0600 files; give the result the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self.tmp is not None
        if exc_type is None:
            with open(self.tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(self.tmp, self.target)
            _fsync_directory(self.target.parent)
        else:
            self.tmp.unlink(missing_ok=True)
        return False


def remove_stale_temporaries(directory: Path, name: str) -> None:
    """Delete `.{name}.{pid}.*.tmp*` files left by killed writers (their pid no longer runs)."""
    for leftover in directory.glob(f".{name}.*.tmp*"):
        parts = leftover.name[len(name) + 2:].split(".")
        if parts and parts[0].isdigit() and not _pid_alive(int(parts[0])):
            leftover.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory if str(directory) else ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's content (for meta input digests and cache keys)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def make_meta(stage: str, *, hand_model: str | None = None, config: dict | None = None,
              inputs: dict[str, str] | None = None, timings: dict[str, float] | None = None,
              previous: dict | None = None) -> dict:
    """The `meta` JSON object every stage writes; `previous` carries the upstream stages' history."""
    history = list((previous or {}).get("history", []))
    if previous and previous.get("stage"):
        entry = {k: previous.get(k) for k in ("stage", "config", "timings", "inputs")}
        if "tracking" in previous:  # detect's identities and links stay readable downstream (`handcli info`)
            entry["tracking"] = previous["tracking"]
        history.append(entry)
    return {
        "schema_version": SCHEMA_VERSION,
        "stage": stage,
        "handcli_version": __version__,
        "hand_model": hand_model,
        "config": config or {},
        "inputs": inputs or {},
        "timings": timings or {},
        "history": history,
    }
