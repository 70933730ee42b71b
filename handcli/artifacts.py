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

import errno
import hashlib
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from handcli import __version__
from handcli.errors import BadInput, StageFailed, warn_input

SCHEMA_VERSION = 1
NUM_KEYPOINTS = 21
# refuse arrays whose header promises more than this many elements (a 10-minute 60 fps clip with 4 hands
# and 21x3 keypoints is ~9e6; vertices for 4 hands x 36k frames x 1.6k verts ~2.3e8)
MAX_ELEMENTS = 400_000_000
MIN_FPS = 1.0  # frames per second: the lowest rate an input may state (the work it causes is bounded)

@dataclass(frozen=True)
class Limit:
    """A resource limit on input, raised by setting the environment variable `env` (docs/reliability.md)."""

    env: str
    default: int
    what: str  # what is counted, for the one-line refusal

    def value(self) -> int:
        raw = os.environ.get(self.env, "").strip()
        if not raw:
            return self.default
        try:
            value = int(raw)
        except ValueError:
            raise BadInput(f"{self.env}={raw!r}: expected a whole number") from None
        if value < 0:
            raise BadInput(f"{self.env}={raw!r}: expected a whole number of at least 0")
        return value

    def refuse(self, subject: str, amount: int) -> BadInput:
        """The one-line refusal: what was asked for, the limit and how to raise it."""
        return BadInput(f"{subject}: {_amount(amount, self)} is over the limit of {_amount(self.value(), self)} "
                        f"{self.what} (set {self.env} to raise it)")


def _amount(value: int, limit: "Limit") -> str:
    if not limit.env.endswith("_BYTES"):
        return f"{value:,}"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value} bytes"


# Input limits (docs/reliability.md). Defaults leave room for hours of video: a 10-minute 60 fps clip with 2
# hands holds 36k frames; its keypoints take 9 MB, its per-vertex variance (1609 vertices) 460 MB.
MAX_NPZ_MEMBER = Limit("HANDCLI_MAX_NPZ_MEMBER_BYTES", 1 << 30, "per npz array")
MAX_NPZ_TOTAL = Limit("HANDCLI_MAX_NPZ_BYTES", 2 << 30, "of arrays read from one npz")
MAX_PICKLE_BYTES = Limit("HANDCLI_MAX_PICKLE_BYTES", 1 << 30, "for a pickle input")
MAX_PICKLE_ITEMS = Limit("HANDCLI_MAX_PICKLE_ITEMS", 10_000_000,
                         "items in a pickle (shared references counted each time they are used)")
MAX_META_DEPTH = 64  # meta's own nesting is 4 levels; deeper JSON is refused before anything walks it
MAX_META_BYTES = Limit("HANDCLI_MAX_META_BYTES", 64 << 20, "for the JSON meta")


class Limits:
    """The running totals one input file is charged against."""

    def __init__(self) -> None:
        self.npz_member = MAX_NPZ_MEMBER.value()
        self.npz_total = MAX_NPZ_TOTAL.value()
        self.npz_read = 0

    @classmethod
    def read(cls) -> "Limits":
        return cls()

    def charge_npz_member(self, key: str, declared: int) -> None:
        """Called before a member is decompressed: refuse it if it, or everything read so far with it, is over."""
        if declared > self.npz_member:
            raise MAX_NPZ_MEMBER.refuse(f"{key}: the array", declared)
        if self.npz_read + declared > self.npz_total:
            raise MAX_NPZ_TOTAL.refuse(f"{key}: the arrays read", self.npz_read + declared)
        self.npz_read += declared


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
    "beyond_calibration": (("H", "T"), "b"),
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
    beyond_calibration: np.ndarray | None = None  # (H, T) bool: the error bars extrapolate the calibration

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
    return {key: (shape, dtype) for key, (shape, dtype, _stored) in _npz_members(path).items()}


def _npz_members(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype, int]]:
    """key -> (shape, dtype, bytes the zip member holds after its npy header), from the headers alone."""
    members: dict[str, tuple[tuple[int, ...], np.dtype, int]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _fortran, dtype = np.lib.format.read_array_header_1_0(member)
                    elif version == (2, 0):
                        shape, _fortran, dtype = np.lib.format.read_array_header_2_0(member)
                    else:
                        raise ValueError(f"unsupported npy format version {version}")
                    header_bytes = member.tell()
                members[info.filename[:-4]] = (tuple(shape), dtype, max(0, info.file_size - header_bytes))
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError, RuntimeError,
            NotImplementedError) as error:
        raise BadInput(f"{path}: not a readable npz archive ({_short(error)})") from None
    for key, (shape, dtype, _stored) in members.items():
        if dtype.hasobject:
            raise BadInput(f"{key}: holds Python objects (pickled data is not accepted)")
        if math.prod(shape) > MAX_ELEMENTS:
            raise BadInput(f"{key}: shape {shape} is too large")
    return members


def _short(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:160]


def check_input_file(path: str | Path) -> Path:
    """The path of an existing, non-empty regular file, or one-line BadInput saying which it is not."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: no such file")
    if path.is_dir():
        raise BadInput(f"{path}: not a file")
    if not path.is_file():
        raise BadInput(f"{path}: not a regular file (a pipe, a device or {path.name} from a shell's <(...)); "
                       "save the data to a file first")
    if path.stat().st_size == 0:
        raise BadInput(f"{path}: empty file")
    return path


class NpzArrays(Mapping):
    """The arrays of an npz, read lazily: a member is decompressed only when a caller asks for its key, and only
    after its header passed the limits (bytes per member, bytes read in total, data present), so a small file
    cannot make handcli allocate gigabytes, and members no reader asks for are never decompressed."""

    def __init__(self, path: Path):
        self.path = path
        self.members = _npz_members(path)
        self._loaded: dict[str, np.ndarray] = {}
        self._budget = Limits.read()

    def __getitem__(self, key: str) -> np.ndarray:
        if key in self._loaded:
            return self._loaded[key]
        shape, dtype, stored = self.members[key]
        declared = math.prod(shape) * dtype.itemsize
        self._budget.charge_npz_member(key, declared)
        if declared > stored:
            raise BadInput(f"{self.path}: member '{key}' is truncated (its header declares {declared} bytes, "
                           f"it holds {stored})")
        try:
            with zipfile.ZipFile(self.path) as archive, archive.open(key + ".npy") as member:
                array = np.lib.format.read_array(member, allow_pickle=False)
        except (ValueError, OSError, zipfile.BadZipFile, EOFError, RuntimeError, NotImplementedError) as error:
            raise BadInput(f"{self.path}: cannot read '{key}' ({_short(error)})") from None
        self._loaded[key] = array
        return array

    def __iter__(self):
        return iter(self.members)

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, key: object) -> bool:
        return key in self.members


def load_npz_arrays(path: str | Path) -> NpzArrays:
    """The arrays of an npz as a lazy mapping (headers checked first, no pickles, limits per member and in total,
    a member read only when asked for). Raises BadInput with one line."""
    return NpzArrays(check_input_file(path))


def artifact_from_arrays(arrays: dict[str, np.ndarray], *, source: str = "input",
                         frame_known: bool = False) -> Artifact:
    """Validate a dict of arrays against the contract and build an Artifact (input rules: NaN allowed only
    where `valid` is False). Unknown keys are ignored; missing optional keys are filled with defaults.
    `frame_known`: an importer already determined and recorded the coordinate frame (no frame warnings)."""
    for key in REQUIRED:
        if key not in arrays:
            raise BadInput(f"{source}: missing required key '{key}' (have: {', '.join(sorted(arrays)) or 'none'})")
    if isinstance(arrays, NpzArrays):
        _check_headers(arrays)
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
        meta = parse_meta(values["meta"])
        if not isinstance(meta, dict):
            raise BadInput("meta: JSON must be an object")
        values["meta"] = meta
    else:
        values["meta"] = {}
    fps = float(values.get("fps", 30.0))
    # the refiner resamples every track to 30 fps, so the rate bounds the work a frame causes: below 1 fps a
    # few frames would become thousands (0.1 fps made 300 model frames of each)
    if not np.isfinite(fps) or not MIN_FPS <= fps <= 10000:
        raise BadInput(f"fps: {fps} is not a plausible frame rate (expected {MIN_FPS:g} to 10000 frames per "
                       "second)")
    values["fps"] = fps
    valid = values["valid"]
    for key, value in list(values.items()):
        if SPEC[key][1] == "b" and isinstance(value, np.ndarray) and key != "valid":
            values[key] = _cast(key, value)  # another tool's 0/1 (or 0/255) flags: nonzero is True
        elif SPEC[key][1] in "fi" and isinstance(value, np.ndarray):
            values[key] = _cast(key, value)
            _check_finite(key, values[key], valid if key in PER_FRAME_KEYS else None)
    check_units(values["keypoints3d"], valid, frame_warnings=not frame_known)
    # absurd magnitudes: hands kilometres away are a unit or format error, not motion
    observed = values["keypoints3d"][valid]
    if observed.size and np.abs(observed).max() > 100.0:
        raise BadInput(f"keypoints3d: values up to {np.abs(observed).max():.3g} m; expected metres "
                       "(a hand within 100 m of the camera)")
    return Artifact(**values)


# hand sizes (wrist to middle fingertip, handcli.handmodels.size): refused beyond REFUSE, warned beyond WARN
HAND_LENGTH_REFUSE_M = (0.02, 1.0)
HAND_LENGTH_WARN_M = (0.09, 0.36)  # half and twice the adult mean of 181.5 mm
UNITS = (("millimetres", 0.001), ("centimetres", 0.01), ("inches", 0.0254))
HAND_CENTRED_RADIUS_M = 0.05  # a cloud whose centre never leaves this ball around the origin is hand-centred


def _hand_size_statistics():
    """handcli/handmodels/size.py (numpy only), without importing the handmodels package, which loads torch:
    validating an input must stay cheap and light (it runs under the memory limits above)."""
    import importlib.util
    import sys

    name = "handcli.handmodels.size"
    if name in sys.modules:
        return sys.modules[name]
    private = "_handcli_hand_size"
    if private not in sys.modules:
        spec = importlib.util.spec_from_file_location(private, Path(__file__).parent / "handmodels" / "size.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[private] = module
    return sys.modules[private]


def check_units(keypoints3d: np.ndarray, valid: np.ndarray, *, frame_warnings: bool = True) -> None:
    """Camera-frame keypoints in metres, or one line saying what they look like instead: refuse a hand the size
    of a person (centimetres, millimetres or inches, named), warn on an odd size, on a hand behind the camera
    (z < 0: OpenGL's convention) and on a hand-centred cloud (no camera translation)."""
    size = _hand_size_statistics()
    HAND_LENGTH_MEAN_M, hand_length = size.HAND_LENGTH_MEAN_M, size.hand_length  # noqa: N806
    points = keypoints3d[valid]
    if not len(points):
        return
    length = float(np.median(hand_length(points.astype(np.float64))))
    if length > HAND_LENGTH_REFUSE_M[1] or length < HAND_LENGTH_REFUSE_M[0]:
        unit, scale = min(UNITS, key=lambda item: abs(math.log(max(length, 1e-12) * item[1] / HAND_LENGTH_MEAN_M)))
        measured = f"the hand measures {length:.3g} m from wrist to middle fingertip (adults: {HAND_LENGTH_MEAN_M:.3g} m)"
        if length > HAND_LENGTH_REFUSE_M[1] and abs(math.log(length * scale / HAND_LENGTH_MEAN_M)) < math.log(2):
            raise BadInput(f"keypoints3d: {measured}: the values look like {unit}; keypoints must be in metres "
                           f"(divide by {round(1 / scale, 2):g})")
        if length > HAND_LENGTH_REFUSE_M[1]:
            raise BadInput(f"keypoints3d: {measured}: not a hand in metres, centimetres, millimetres or inches "
                           "(wrong unit or joint order?)")
        warn_input(f"keypoints3d: {measured}; expected metres (wrong unit or joint order?)")
    elif not HAND_LENGTH_WARN_M[0] <= length <= HAND_LENGTH_WARN_M[1]:
        warn_input(f"keypoints3d: the hand measures {length:.3g} m from wrist to middle fingertip, far from an "
                   f"adult's {HAND_LENGTH_MEAN_M:.3g} m (wrong unit or joint order?)")
    if not frame_warnings:
        return
    centres = points.astype(np.float64).mean(axis=1)
    if np.linalg.norm(centres, axis=-1).max() <= HAND_CENTRED_RADIUS_M:
        warn_input("keypoints3d: the hand's centre stays within 5 cm of the origin: hand-centred coordinates "
                   "(such as MediaPipe world landmarks), not the camera frame; positions and depth will be wrong")
        return
    behind = int((centres[:, 2] < 0).sum())
    if behind:
        warn_input(f"keypoints3d: the hand is behind the camera (z < 0) on {behind} of {len(centres)} valid "
                   "frame(s); the camera frame is OpenCV's (z forward, y down): OpenGL-convention points need y "
                   "and z negated")


def _check_headers(arrays: "NpzArrays") -> None:
    """The contract's dtype and shape rules on the npz headers, before any member is decompressed."""
    dims: dict[str, int] = {}
    for key in SPEC:
        if key not in arrays.members:
            continue
        shape, dtype, _stored = arrays.members[key]
        _check_dtype(key, dtype)
        _check_shape(key, () if key == "fps" and math.prod(shape) == 1 else shape, dims)
    if "meta" in arrays.members:
        shape, dtype, _stored = arrays.members["meta"]
        size = math.prod(shape) * dtype.itemsize
        if size > MAX_META_BYTES.value():
            raise MAX_META_BYTES.refuse("meta", size)


def parse_meta(value: Any) -> Any:
    """The JSON object in a `meta` string; one-line BadInput for non-JSON, too deeply nested or non-UTF-8 text."""
    try:
        meta = json.loads(str(value))
    except (json.JSONDecodeError, UnicodeError) as error:
        raise BadInput(f"meta: not a JSON string ({_short(error)})") from None
    except RecursionError:
        meta = _TOO_DEEP
    if meta is _TOO_DEEP or _nesting(meta) > MAX_META_DEPTH:
        raise BadInput(f"meta: JSON nests deeper than {MAX_META_DEPTH} levels")
    return meta


_TOO_DEEP = object()


def _nesting(value: Any) -> int:
    """How deeply lists and dicts nest in a parsed JSON value (iterative: no recursion to exhaust)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            if depth > MAX_META_DEPTH:
                break
            stack.extend((child, depth + 1) for child in item)
    return deepest


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
        _write_npz(tmp, arrays)
    return path


def _open_new(path: Path):
    """The file a write goes to (a seam for the tests that simulate a full disk)."""
    return open(path, "wb")


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez's layout (stored .npy members, zip64), but a failed write (a full disk) leaves no half-closed
    ZipFile behind whose finaliser would print a traceback while trying to write its directory again."""
    with _open_new(path) as handle:
        archive = zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True)
        try:
            for key, value in arrays.items():
                with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
            archive.close()
        except BaseException:
            archive.fp = None  # abandoned: close() (and the finaliser) must not write any more
            raise


# errno values that mean the environment (disk, permissions, paths), not handcli, stopped a write
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EISDIR,
                      errno.ENOTDIR, errno.EFBIG, errno.ENAMETOOLONG, errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY,
                      errno.EXDEV, errno.EBUSY}


DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def environment_error(target: str | Path, error: OSError) -> BadInput | None:
    """One-line BadInput for an OSError the environment caused (full disk, read-only file system, permissions,
    a directory where a file should be), None for anything else."""
    if error.errno not in ENVIRONMENT_ERRNOS:
        return None
    reason = {errno.ENOSPC: "no space left on the device (disk full)", errno.EDQUOT: "disk quota exceeded",
              errno.EROFS: "read-only file system", errno.EISDIR: "is a directory"}.get(
        error.errno, error.strerror or type(error).__name__)
    return BadInput(f"{target}: cannot write: {reason}")


def check_output_path(out: str | Path, suffixes: tuple[str, ...] = (".npz",)) -> Path:
    """Before any work: `out` has a supported suffix, is not a directory or a device, and its directory exists and
    takes a new file (a probe file is created and removed). One-line BadInput otherwise."""
    out = Path(out)
    if out.suffix not in suffixes:
        raise BadInput(f"{out}: output must end in {' or '.join(suffixes)}")
    if out.is_dir():
        raise BadInput(f"{out}: output is a directory; name a file")
    if out.exists() and not out.is_file():
        raise BadInput(f"{out}: output exists and is not a regular file (a device or a pipe); name a file")
    directory = out.parent if str(out.parent) else Path(".")
    if not directory.is_dir():
        raise BadInput(f"{out}: output directory {directory} "
                       + ("is a file" if directory.exists() else "does not exist"))
    check_writable(directory, out)
    return out


def check_work_dir(path: str | Path) -> Path:
    """Before any work: the cache directory is a directory (or can be made one) that takes new files."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BadInput(f"--work-dir {path}: is a file, not a directory")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BadInput(f"--work-dir {path}: lies under {existing}, which is a file")
    check_writable(existing, f"--work-dir {path}")
    return path


def check_writable(directory: Path, what: str | Path) -> None:
    """Create and remove a hidden probe file in `directory`; one-line BadInput saying why that failed."""
    try:
        handle, name = tempfile.mkstemp(prefix=".handcli-probe.", dir=directory)
    except OSError as error:
        raise environment_error(what, error) or BadInput(f"{what}: cannot write in {directory} "
                                                         f"({error.strerror})") from None
    os.close(handle)
    Path(name).unlink(missing_ok=True)


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
        if self.target.is_dir():
            raise BadInput(f"{self.target}: output is a directory; name a file")
        remove_stale_temporaries(directory, self.target.name)
        try:
            handle, name = tempfile.mkstemp(prefix=f".{self.target.name}.{os.getpid()}.",
                                            suffix=".tmp" + self.target.suffix, dir=directory)
        except OSError as error:
            raise environment_error(self.target, error) or error from None
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
            try:
                with open(self.tmp, "rb") as handle:
                    os.fsync(handle.fileno())
                os.replace(self.tmp, self.target)
            except BaseException as error:  # the rename failed (target a directory, ...): no temporary left
                self.tmp.unlink(missing_ok=True)
                if isinstance(error, OSError) and environment_error(self.target, error):
                    raise environment_error(self.target, error) from None
                raise
            _fsync_directory(self.target.parent)
            return False
        self.tmp.unlink(missing_ok=True)
        # a full disk while writing the temporary, or the temporary's own path refused: the environment's fault
        if isinstance(exc, OSError) and (exc.errno in DISK_ERRNOS or exc.filename in (str(self.tmp), str(self.target))):
            raise environment_error(self.target, exc) or exc from None
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


def stage_meta(meta: dict, stage: str) -> dict | None:
    """The meta of the latest `stage` that made an artifact: its own `meta` or an entry of its history (newest
    first), or None when no such stage is on record."""
    for entry in [meta or {}, *reversed((meta or {}).get("history", []))]:
        if isinstance(entry, dict) and entry.get("stage") == stage:
            return entry
    return None


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
