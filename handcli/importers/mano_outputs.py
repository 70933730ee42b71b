"""Per-frame MANO estimates as HaMeR, WiLoR and WiLoR-mini produce them (npz, or pickled dicts / lists).

Accepted keys (aliases in `KEYS`): `global_orient` (...,3) axis-angle or (...,3,3) / (...,1,3,3) rotation
matrices, `hand_pose` (...,15,3) / (...,45) / (...,15,3,3), `betas` (...,10), the full-image camera
translation `pred_cam_t_full` (or `cam_t`, `transl`), `is_right` / `right`, optional `pred_keypoints_3d`
(...,21,3, OpenPose order), `hand_bbox`, `scaled_focal_length`, `img_size`, `pred_keypoints_2d`, `fps`,
`flat_hand_mean`. A nested `pred_mano_params` / `wilor_preds` dict is merged in.

Layouts, decided by the leading axes of `hand_pose` (the "batch"):
* with a frame index (`frame_index`, `frame_idx`, `frame`, `frame_id`): one row per detection, grouped into
  tracks by handedness and association (handcli/importers/tracks.py);
* batch (T,): one hand over T frames; batch (H, T): H tracks over T frames (`is_right` (H,));
* pickles: a list of detection dicts is one image's detections (WiLoR-mini's `predict` output); a list of
  such lists, or a dict {frame: list}, is a video, one entry per frame.

Conventions resolved (sources in docs/importers.md): rotation matrices and axis-angle are both accepted;
hand poses are relative to the flat hand (both tools run smplx's MANOLayer on rotation matrices, which
never adds `hands_mean`; `flat_hand_mean: False` in the file converts with the real MANO's mean); camera
translation is the one in the full image for the tool's own focal length (5000/256 x max(W, H)); left
hands: the networks see mirrored crops. HaMeR (and WiLoR's own demo) leave the MANO parameters and
`pred_keypoints_3d` in that mirrored frame and only flip x of the vertices; WiLoR-mini un-mirrors both
(axis-angle (x,-y,-z), keypoints x -> -x). When a file holds both parameters and keypoints, the frame of
each is measured (see `resolve_left_frames`); without keypoints, rotation matrices mean the network's
(mirrored) frame and axis-angle the un-mirrored one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from handcli.errors import BadInput
from handcli.importers.build import Rows, rows_to_artifact
from handcli.importers.convert import (
    axis_angle_to_matrices,
    fit_shape,
    flags,
    mirror_axis_angle,
    mirror_points,
    numeric,
    pose_to_axis_angle,
)
from handcli.importers.source import Source
from handcli.importers.tracks import assign_tracks, frame_span

KEYS = {
    "global_orient": ("global_orient",),
    "hand_pose": ("hand_pose",),
    "betas": ("betas", "shape"),
    "cam_t": ("pred_cam_t_full", "cam_t_full", "cam_t", "transl"),
    "is_right": ("is_right", "right"),
    "keypoints3d": ("pred_keypoints_3d", "keypoints_3d", "pred_joints_3d"),
    "frame": ("frame_index", "frame_idx", "frame", "frame_id", "frame_ids", "frame_indices"),
    "boxes": ("hand_bbox", "bbox", "boxes", "box"),
    "focal": ("scaled_focal_length", "focal_length"),
    "image_size": ("img_size", "image_size"),
    "keypoints2d": ("pred_keypoints_2d", "keypoints_2d"),
    "fps": ("fps",),
    "flat_hand_mean": ("flat_hand_mean",),
    "valid": ("valid",),
}
NESTED = ("pred_mano_params", "mano_params", "wilor_preds")
FINGER_BASES = [1, 5, 9, 13, 17]  # canonical thumb CMC and the four MCPs: rigid with the wrist


def _get(mapping: dict, key: str) -> Any:
    for alias in KEYS[key]:
        if alias in mapping:
            return mapping[alias]
    return None


def flatten(mapping: dict) -> dict:
    """Top-level keys plus those of a nested prediction dict (nested wins: they are the model outputs)."""
    if not any(name in mapping for name in NESTED):
        return mapping  # as is: an npz's lazy mapping must not be read whole
    flat = {k: v for k, v in mapping.items() if k not in NESTED}
    for name in NESTED:
        if isinstance(mapping.get(name), dict):
            flat.update(mapping[name])
    return flat


def looks_like_mano(mapping: Any) -> bool:
    if not isinstance(mapping, dict):
        return False
    return "hand_pose" in flatten(mapping)


# ------------------------------------------------------------------------------------------------ importers
class ManoOutputsNpz:
    name = "mano-outputs-npz"
    description = "per-frame MANO outputs (HaMeR / WiLoR) saved as .npz"

    def sniff(self, source: Source) -> bool:
        keys = source.npz_headers
        return "hand_pose" in keys and "keypoints3d" not in keys

    def load(self, source: Source):
        return mano_artifact(source.npz_arrays, fmt=self.name)  # lazy: only the keys it reads are loaded


class ManoOutputsPickle:
    name = "mano-outputs-pkl"
    description = "pickled MANO outputs: a dict of arrays, WiLoR-mini result lists (one image, or one list per frame)"

    def sniff(self, source: Source) -> bool:
        return source.kind in ("pickle", "torch-zip") and _pickle_layout(source.pickled) is not None

    def load(self, source: Source):
        layout = _pickle_layout(source.pickled)
        if layout == "mapping":
            return mano_artifact(flatten(source.pickled), fmt=self.name)
        detections, num_frames = _detections(source.pickled, layout)
        origin = "WiLoR-mini result dicts (wilor_preds)" if any("wilor_preds" in d for _, d in detections) \
            else "detection dicts"
        return mano_artifact(*_stack_detections(detections), fmt=self.name, num_frames=num_frames,
                             details={"source": f"{origin}, {layout} layout"})


def _is_detection_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(d, dict) and (looks_like_mano(d) or set(d) <= {"hand_bbox", "is_right"}) for d in value) and any(
        looks_like_mano(d) for d in value)


def _pickle_layout(obj: Any) -> str | None:
    """'mapping', 'image' (one image's detections), 'frames' (list per frame) or 'frame-dict'; None: not ours."""
    if looks_like_mano(obj):
        return "mapping"
    if _is_detection_list(obj):
        return "image"
    if isinstance(obj, (list, tuple)) and obj and all(v is None or isinstance(v, (list, tuple)) for v in obj) \
            and any(_is_detection_list(v) for v in obj):
        return "frames"
    if isinstance(obj, dict) and obj and all(v is None or isinstance(v, (list, tuple, dict)) for v in obj.values()) \
            and any(_is_detection_list(v if isinstance(v, (list, tuple)) else [v]) for v in obj.values()):
        return "frame-dict"
    return None


def _frame_numbers(keys: list) -> list[int]:
    """Frame numbers for frame-dict keys: the keys themselves when integers, else the last number in each
    name (frame_000012.jpg), else their sorted position."""
    import re

    numbers = []
    for k in keys:
        digits = re.findall(r"\d+", str(k))
        numbers.append(int(k) if isinstance(k, (int, np.integer)) else int(digits[-1]) if digits else None)
    if None in numbers or len(set(numbers)) != len(numbers) or min(numbers) < 0:
        order = sorted(range(len(keys)), key=lambda i: str(keys[i]))
        numbers = [order.index(i) for i in range(len(keys))]
    return numbers


def _detections(obj: Any, layout: str) -> tuple[list[tuple[int, dict]], int | None]:
    """(frame number, detection dict) for every detection that carries a MANO estimate, and the number of
    frames when the layout fixes it (a list per frame counts its empty frames too)."""
    if layout == "image":
        numbered = [(0, obj)]
    elif layout == "frames":
        numbered = list(enumerate(v or [] for v in obj))
    else:
        keys = list(obj)
        numbered = [(number, obj[k] if isinstance(obj[k], (list, tuple)) else [obj[k]] if obj[k] is not None else [])
                    for number, k in zip(_frame_numbers(keys), keys)]
    out = []
    for t, detections in numbered:
        for detection in detections:
            if not isinstance(detection, dict):
                raise BadInput(f"frame {t}: expected detection dicts, got {type(detection).__name__}")
            if looks_like_mano(detection):
                frame = _get(detection, "frame")
                out.append((int(numeric(frame, "frame_index").reshape(-1)[0]) if frame is not None else t, detection))
    if not out:
        raise BadInput("no detection in the file carries a MANO estimate")
    num_frames = max([t for t, _ in numbered] + [frame for frame, _ in out]) + 1
    return out, num_frames


def _stack_detections(detections: list[tuple[int, dict]]) -> tuple[dict, np.ndarray]:
    """Detection dicts -> (one mapping of stacked arrays (N, ...), frame numbers (N,))."""
    flat = [flatten(d) for _, d in detections]
    mapping: dict[str, np.ndarray] = {}
    for key, aliases in KEYS.items():
        if key == "frame":
            continue
        alias = next((a for a in aliases if all(a in f for f in flat)), None)
        if alias is None:
            continue
        try:
            mapping[alias] = np.stack([numeric(f[alias], alias) for f in flat])
        except ValueError:
            shapes = sorted({np.shape(f[alias]) for f in flat})
            raise BadInput(f"{alias}: detections disagree on its shape ({shapes})") from None
    return mapping, np.array([frame for frame, _ in detections], np.int64)


# ------------------------------------------------------------------------------------------------- the core
def mano_artifact(mapping: dict, frame: np.ndarray | None = None, *, fmt: str, details: dict | None = None,
                  num_frames: int | None = None):
    """Any of the layouts above -> Artifact (artifact conventions, camera frame, metres)."""
    mapping = flatten(mapping)
    for key in ("global_orient", "hand_pose"):
        if _get(mapping, key) is None:
            raise BadInput(f"{fmt}: missing key '{key}'")
    orient, pose, batch, rotation_format = pose_to_axis_angle(_get(mapping, "global_orient"),
                                                              _get(mapping, "hand_pose"))
    n = int(np.prod(batch, dtype=np.int64))
    if frame is None and _get(mapping, "frame") is not None:
        frame = numeric(_get(mapping, "frame"), "frame_index").reshape(-1).astype(np.int64)
    if frame is not None:
        layout = "detections"
        if frame.size != n:
            raise BadInput(f"frame_index: {frame.size} values for {n} detections")
    elif len(batch) <= 1:
        layout = "frames"
    elif len(batch) == 2:
        layout = "tracks"
    else:
        raise BadInput(f"hand_pose: leading axes {batch} are neither (T,), (H, T) nor detections with a frame_index")
    details = {**(details or {}), "layout": layout, "rotation_format": rotation_format,
               "hand_pose_zero": "flat hand (MANOLayer on rotation matrices)"}
    orient, pose = orient.reshape(n, 3), pose.reshape(n, 15, 3)

    cam_t = _get(mapping, "cam_t")
    if cam_t is None:
        hint = " ('pred_cam_t' is the crop camera's; save pred_cam_t_full)" if "pred_cam_t" in mapping else ""
        raise BadInput(f"{fmt}: missing the full-image camera translation 'pred_cam_t_full' (or 'cam_t'){hint}")
    cam_t = fit_shape(cam_t, (*batch, 3), "pred_cam_t_full").reshape(n, 3)
    num_tracks_hint = batch[0] if layout == "tracks" else None
    is_right_raw = _get(mapping, "is_right")
    if is_right_raw is None:
        is_right = np.ones(n, bool)
        details["is_right"] = "not in the file: assumed right hands"
    elif num_tracks_hint is not None and numeric(is_right_raw, "is_right").size == num_tracks_hint:
        is_right = np.repeat(flags(is_right_raw, num_tracks_hint, "is_right"), batch[1])
    else:
        is_right = flags(is_right_raw, n, "is_right")
    betas = _betas(_get(mapping, "betas"), batch, n, details)
    keypoints = _get(mapping, "keypoints3d")
    if keypoints is not None:
        keypoints = fit_shape(keypoints, (*batch, 21, 3), "pred_keypoints_3d").reshape(n, 21, 3)
    row_valid = np.isfinite(orient).all(1) & np.isfinite(pose).all((1, 2)) & np.isfinite(cam_t).all(1)
    if _get(mapping, "valid") is not None:
        row_valid &= flags(_get(mapping, "valid"), n, "valid")

    mean_flag = _get(mapping, "flat_hand_mean")
    if mean_flag is not None and not flags(mean_flag, 1, "flat_hand_mean")[0]:
        pose = _add_hands_mean(pose, is_right, rotation_format, keypoints, orient)
        details["hand_pose_zero"] = "MANO mean pose in the file (flat_hand_mean=False): converted to flat-hand zero"

    # left hands: bring parameters and keypoints into the artifact convention (mirror of the right hand)
    params_flipped, keypoints_flipped, evidence = resolve_left_frames(orient, keypoints, ~is_right, rotation_format)
    details["left_hands"] = evidence
    flip = ~is_right & params_flipped
    orient = np.where(flip[:, None], mirror_axis_angle(orient), orient)
    pose = np.where(flip[:, None, None], mirror_axis_angle(pose), pose)
    if keypoints is not None:
        keypoints = _camera_keypoints(keypoints, cam_t, ~is_right & bool(keypoints_flipped), details)

    track, time, num_frames, track_is_right, extras = _place_rows(layout, batch, frame, is_right, keypoints, cam_t,
                                                                  num_frames)
    extras.update(_camera(mapping, batch, n, keypoints, details))
    if _get(mapping, "fps") is not None:
        extras["fps"] = float(numeric(_get(mapping, "fps"), "fps").reshape(-1)[0])
    boxes = _get(mapping, "boxes")
    rows = Rows(track=track, time=time, num_frames=num_frames, is_right=track_is_right, valid=row_valid,
                keypoints3d=keypoints, global_orient=orient, hand_pose=pose, transl=cam_t, betas=betas,
                boxes=None if boxes is None else fit_shape(boxes, (*batch, 4), "hand_bbox").reshape(n, 4),
                extras=extras)
    return rows_to_artifact(rows, fmt=fmt, details=details, hand_model="mano")


def _betas(raw: Any, batch: tuple[int, ...], n: int, details: dict) -> np.ndarray:
    if raw is None:
        details["betas"] = "not in the file: mean shape (zeros)"
        return np.zeros((n, 10))
    betas = numeric(raw, "betas")
    if betas.size == 10:
        return np.repeat(betas.reshape(1, 10), n, 0)
    if len(batch) == 2 and betas.size == batch[0] * 10:  # one shape per track
        return np.repeat(betas.reshape(batch[0], 10), batch[1], 0)
    return fit_shape(betas, (*batch, 10), "betas").reshape(n, 10)


def _add_hands_mean(pose: np.ndarray, is_right: np.ndarray, rotation_format: str, keypoints, orient) -> np.ndarray:
    """Poses relative to MANO's mean -> relative to the flat hand, in the frame the parameters are in."""
    from handcli.importers.handmodel import hands_mean

    params_flipped, _, _ = resolve_left_frames(orient, keypoints, ~is_right, rotation_format)
    # parameters in the mirrored (right-hand) frame take the right hand's mean
    side = is_right | params_flipped
    return pose + np.where(side[:, None, None], hands_mean(True), hands_mean(False))


def resolve_left_frames(orient: np.ndarray, keypoints: np.ndarray | None, left: np.ndarray,
                        rotation_format: str) -> tuple[bool, bool | None, str]:
    """For the left-hand rows: are the parameters, and the keypoints, in the network's mirrored frame?

    The wrist-to-knuckle directions depend only on the global orientation, so with keypoints present each
    of the four combinations predicts them: params mirrored & keypoints mirrored (HaMeR) d = R r; neither
    (WiLoR-mini) d = R M r; params mirrored & keypoints not d = M R r; params not & keypoints mirrored
    d = M R M r (r: the right hand's rest directions, M = diag(-1,1,1)). The best fit wins when it is clear;
    otherwise the rule by rotation format applies.
    """
    rule = rotation_format == "rotation matrices"
    rule_text = ("rotation matrices: taken as the network's mirrored frame (HaMeR / WiLoR convention)" if rule else
                 "axis-angle: taken as already un-mirrored (WiLoR-mini convention)")
    if not left.any():
        return rule, rule, "no left hands"
    if keypoints is None:
        return rule, None, rule_text + "; no keypoints in the file to check it"
    from handcli.importers.handmodel import rest_finger_directions

    rows = left & np.isfinite(orient).all(1) & np.isfinite(keypoints).all((1, 2))
    if not rows.any():
        return rule, rule, rule_text
    rest = rest_finger_directions()  # (5, 3)
    observed = keypoints[rows][:, FINGER_BASES] - keypoints[rows][:, :1]
    observed /= np.linalg.norm(observed, axis=-1, keepdims=True) + 1e-12
    rotation = axis_angle_to_matrices(orient[rows])  # (L, 3, 3)
    mirror = np.diag([-1.0, 1.0, 1.0])
    hypotheses = {  # (params mirrored, keypoints mirrored) -> predicted directions (L, 5, 3)
        (True, True): rotation @ rest.T,
        (False, False): rotation @ (mirror @ rest.T),
        (True, False): mirror @ rotation @ rest.T,
        (False, True): mirror @ rotation @ (mirror @ rest.T),
    }
    errors = {key: float(np.mean(1 - np.einsum("ljk,lkj->lj", observed, pred))) for key, pred in hypotheses.items()}
    ranked = sorted(errors, key=errors.get)
    best, second = ranked[0], ranked[1]
    summary = ", ".join(f"{_frame_name(k)}: {errors[k]:.3f}" for k in ranked)
    if errors[best] < 0.15 and errors[second] > 2 * errors[best] + 0.02:
        return best[0], best[1], (f"measured from {int(rows.sum())} left detections: parameters "
                                  f"{'mirrored' if best[0] else 'un-mirrored'}, keypoints "
                                  f"{'mirrored' if best[1] else 'un-mirrored'} (direction error {summary})")
    return rule, rule, rule_text + f"; keypoints did not decide it (direction error {summary})"


def _frame_name(key: tuple[bool, bool]) -> str:
    return f"params {'M' if key[0] else 'U'}/keypoints {'M' if key[1] else 'U'}"


def _camera_keypoints(keypoints: np.ndarray, cam_t: np.ndarray, mirror_rows: np.ndarray, details: dict) -> np.ndarray:
    """Keypoints in the camera frame: un-mirror where needed, add the camera translation unless included."""
    finite = np.isfinite(keypoints).all((1, 2)) & np.isfinite(cam_t).all(1)
    centre = keypoints[finite].mean(1)
    included = bool(finite.any()) and (np.median(np.linalg.norm(centre - cam_t[finite], axis=-1))
                                       < np.median(np.linalg.norm(centre, axis=-1)))
    relative = keypoints - cam_t[:, None] if included else keypoints
    relative = np.where(mirror_rows[:, None, None], mirror_points(relative), relative)
    details["keypoints_translation"] = ("pred_keypoints_3d already held the camera translation" if included else
                                        "pred_keypoints_3d are root-relative: pred_cam_t_full added")
    return relative + cam_t[:, None]


def _place_rows(layout: str, batch: tuple[int, ...], frame: np.ndarray | None, is_right: np.ndarray,
                keypoints: np.ndarray | None, cam_t: np.ndarray, num_frames: int | None):
    """(track, time, T, is_right per track, extras) for the layout (`num_frames`: frames 0..T-1 when the
    file's layout fixes them, else the span of the detections' frame numbers)."""
    n = is_right.shape[0]
    if layout == "frames":
        if is_right.size and (is_right != is_right[0]).any():
            raise BadInput("is_right changes between frames: one row per frame is one hand; for several hands "
                           "per frame give a 'frame_index' per row (detections) or (H, T) arrays")
        return np.zeros(n, np.int64), np.arange(n), max(n, 1), is_right[:1].copy() if n else np.ones(1, bool), {}
    if layout == "tracks":
        num_tracks, num_frames = batch
        per_track = is_right.reshape(num_tracks, num_frames)
        if (per_track != per_track[:, :1]).any():
            raise BadInput("is_right changes within a track")
        grid_track, grid_time = np.divmod(np.arange(n), num_frames)
        return grid_track, grid_time, num_frames, per_track[:, 0].copy(), {}
    first, span = frame_span(frame)
    if num_frames is not None:
        first, span = 0, num_frames
    num_frames = span
    wrist = keypoints[:, 0] if keypoints is not None else cam_t
    track, track_is_right = assign_tracks(frame, is_right, wrist)
    return track, frame - first, num_frames, track_is_right, {"frame_index": np.arange(first, first + num_frames)}


def _camera(mapping: dict, batch: tuple[int, ...], n: int, keypoints: np.ndarray | None, details: dict) -> dict:
    """K (and image size) when the file gives the focal length: principal point from img_size, else from
    pred_keypoints_2d (u = f x/z + cx holds exactly for the tools' projection)."""
    focal = _get(mapping, "focal")
    if focal is None:
        return {}
    focal_values = numeric(focal, "scaled_focal_length").reshape(-1)
    if not np.isfinite(focal_values).all() or np.ptp(focal_values) > 1e-3 * abs(focal_values[0]):
        details["camera"] = "focal length varies between rows: K not set"
        return {}
    f = float(focal_values[0])
    size = _get(mapping, "image_size")
    if size is not None:
        size = numeric(size, "img_size").reshape(-1, 2)[0]
        centre = size / 2
        source = "img_size / 2"
    elif _get(mapping, "keypoints2d") is not None and keypoints is not None:
        uv = fit_shape(_get(mapping, "keypoints2d"), (*batch, 21, 2), "pred_keypoints_2d").reshape(n, 21, 2)
        z = keypoints[..., 2:3]
        estimates = (uv - f * keypoints[..., :2] / np.where(np.abs(z) > 1e-9, z, np.nan)).reshape(-1, 2)
        estimates = estimates[np.isfinite(estimates).all(1)]
        if estimates.size == 0:
            return {}
        centre = np.median(estimates, 0)
        spread = np.median(np.abs(estimates - centre), 0).max()
        if spread > 0.01 * abs(f) or (centre <= 0).any():  # e.g. HaMeR's crop-normalised 2D keypoints
            details["camera"] = "pred_keypoints_2d are not full-image projections: K not set"
            return {}
        size = np.round(2 * centre)
        source = "recovered from pred_keypoints_2d"
    else:
        details["camera"] = f"focal length {f:g} px but no image size: K not set"
        return {}
    details["camera"] = f"K from the tool's focal length {f:g} px, principal point {source}"
    K = np.array([[f, 0, centre[0]], [0, f, centre[1]], [0, 0, 1]])
    return {"K": K, "image_size": np.asarray(size, np.int64)}
