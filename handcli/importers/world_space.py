"""World-space hand tracks: HaWoR's `world_space_res.pth` and Dyn-HaMR's `*_world_results.npz`.

Both hold MANO parameters per track and frame, no joints, in the world frame of their SLAM camera
trajectory (metres). They are imported in that world frame (`meta.import.frame` says so): the camera
extrinsics needed to go back to each frame's camera are not in HaWoR's file at all and are optional in
Dyn-HaMR's, so keypoints3d here are world coordinates, not camera coordinates. Keypoints are computed with
the hand model from the parameters (handcli/importers/handmodel.py). Betas vary per frame in both tools;
each track keeps its mean over valid frames.

HaWoR (ThunderVVV/HaWoR, `hawor_infiller`: joblib.dump([pred_trans, pred_rot, pred_hand_pose, pred_betas,
pred_valid])): torch tensors trans (2,T,3), rot (2,T,3) axis-angle, hand_pose (2,T,45) axis-angle, betas
(2,T,10), valid (2,T); index 0 is the left hand, run through the real MANO_LEFT (with the shapedirs fix) on
rotation matrices: left parameters are already in the left-hand (mirrored) convention, flat-hand zero,
`trans` added after posing. That is the artifact convention as is. A track never valid is dropped.

Dyn-HaMR (`*_world_results.npz`): trans (B,T,3), root_orient (B,T,3), pose_body (B,T,45), betas (B,10) or
(B,T,10), is_right (B,T) / (B,); its `run_mano` poses the RIGHT MANO for every track and then negates x of
the joints and vertices of left tracks, translation included: left(θ, t) = M·(right(θ) + t). In the artifact
convention left(θ', t') = M·right(Mθ') + t', so θ' = mirror(θ), t' = M t. No per-frame validity is saved
(it lives in track_info.json): every frame counts as valid.
"""

from __future__ import annotations

from collections.abc import Mapping

from typing import Any

import numpy as np

from handcli.errors import BadInput
from handcli.importers.build import Rows, rows_to_artifact
from handcli.importers.convert import fit_shape, flags, mirror_axis_angle, mirror_points, numeric
from handcli.importers.source import Source

HAWOR_FIELDS = ("trans", "rot", "hand_pose", "betas", "valid")
HAWOR_TRAILING = {"trans": (3,), "rot": (3,), "hand_pose": (45,), "betas": (10,), "valid": ()}


def _hawor_fields(obj: Any) -> dict | None:
    """The five HaWoR arrays from a 5-list or a dict with those names; None if it is not that."""
    if isinstance(obj, (list, tuple)) and len(obj) == 5 and all(isinstance(v, np.ndarray) for v in obj):
        fields = dict(zip(HAWOR_FIELDS, obj))
    elif isinstance(obj, Mapping) and all(isinstance(obj.get(k), np.ndarray) for k in HAWOR_FIELDS):
        fields = {k: obj[k] for k in HAWOR_FIELDS}
    else:
        return None
    trans = fields["trans"]
    if trans.ndim != 3 or trans.shape[0] != 2 or trans.shape[2] != 3:
        return None
    if fields["hand_pose"].shape[-1:] != (45,) or fields["betas"].shape[-1:] != (10,):
        return None
    return fields


class HaworWorldSpace:
    name = "hawor-world-space"
    description = "HaWoR world_space_res.pth: [trans, rot, hand_pose, betas, valid], index 0 = left hand"

    def sniff(self, source: Source) -> bool:
        if source.kind == "npz":  # the same five arrays re-saved with np.savez(**dict(zip(names, res)))
            return all(key in source.npz_headers for key in HAWOR_FIELDS) and "global_orient" not in source.npz_headers
        return source.kind in ("pickle", "torch-zip") and _hawor_fields(source.pickled) is not None

    def load(self, source: Source):
        fields = _hawor_fields(source.npz_arrays if source.kind == "npz" else source.pickled)
        if fields is None:
            raise BadInput(f"{source.path}: HaWoR arrays with unexpected shapes (need trans (2,T,3), rot (2,T,3), "
                           "hand_pose (2,T,45), betas (2,T,10), valid (2,T))")
        num_frames = fields["trans"].shape[1]
        shape = lambda key: (2, num_frames, *HAWOR_TRAILING[key])  # noqa: E731
        transl = fit_shape(fields["trans"], shape("trans"), "trans")
        orient = fit_shape(fields["rot"], shape("rot"), "rot")
        pose = fit_shape(fields["hand_pose"], shape("hand_pose"), "hand_pose").reshape(2, num_frames, 15, 3)
        betas = fit_shape(fields["betas"], shape("betas"), "betas")
        valid = fit_shape(fields["valid"], shape("valid"), "valid") > 0.5
        keep = np.flatnonzero(valid.any(1))
        details = {"frame": "world (HaWoR's SLAM world frame, metres); not the camera frame",
                   "left_hands": "track 0 = left, MANO_LEFT parameters (already the mirrored convention)",
                   "hand_pose_zero": "flat hand (MANOLayer on rotation matrices)",
                   "betas": "per-frame in the file: mean over valid frames per track",
                   "dropped_tracks": [("left", "right")[h] for h in range(2) if h not in keep],
                   "valid": "HaWoR's valid after its infiller (infilled frames count as valid)"}
        return world_artifact(orient[keep], pose[keep], transl[keep], betas[keep], valid[keep],
                              np.array([False, True])[keep], fmt=self.name, details=details)


class DynHamrWorldResults:
    name = "dyn-hamr-world-results"
    description = "Dyn-HaMR *_world_results.npz: trans, root_orient, pose_body, betas, is_right"

    def sniff(self, source: Source) -> bool:
        keys = source.npz_headers
        return all(k in keys for k in ("trans", "root_orient", "pose_body")) and "keypoints3d" not in keys

    def load(self, source: Source):
        arrays = source.npz_arrays
        trans = numeric(arrays["trans"], "trans")
        if trans.ndim == 2:  # a single track saved without the batch axis
            trans = trans[None]
        if trans.ndim != 3 or trans.shape[-1] != 3:
            raise BadInput(f"trans: expected (B,T,3), got {arrays['trans'].shape}")
        num_tracks, num_frames = trans.shape[:2]
        orient = fit_shape(arrays["root_orient"], (num_tracks, num_frames, 3), "root_orient")
        pose = fit_shape(arrays["pose_body"], (num_tracks, num_frames, 45), "pose_body").reshape(
            num_tracks, num_frames, 15, 3)
        betas = numeric(arrays["betas"], "betas") if "betas" in arrays else np.zeros((num_tracks, 10))
        if betas.size == num_tracks * 10:
            betas = np.repeat(betas.reshape(num_tracks, 1, 10), num_frames, 1)
        betas = fit_shape(betas, (num_tracks, num_frames, 10), "betas")
        if "is_right" not in arrays:
            raise BadInput("dyn-hamr-world-results: missing key 'is_right'")
        side = numeric(arrays["is_right"], "is_right").reshape(num_tracks, -1)
        is_right = flags(side[:, 0], num_tracks, "is_right")
        if ((side > 0.5) != is_right[:, None]).any():
            raise BadInput("is_right changes within a track")
        # Dyn-HaMR poses the right MANO and mirrors the result (translation included) for left tracks
        left = ~is_right
        orient = np.where(left[:, None, None], mirror_axis_angle(orient), orient)
        pose = np.where(left[:, None, None, None], mirror_axis_angle(pose), pose)
        trans = np.where(left[:, None, None], mirror_points(trans), trans)
        valid = np.isfinite(orient).all(-1) & np.isfinite(trans).all(-1)
        details = {"frame": "world (Dyn-HaMR's world frame, metres); not the camera frame",
                   "left_hands": "right-hand MANO parameters mirrored with their translation in the file: "
                                 "parameters mirrored, transl x negated",
                   "hand_pose_zero": "flat hand (taken as MANOLayer's; see docs/importers.md)",
                   "valid": "not in the file: every frame valid"}
        return world_artifact(orient, pose, trans, betas, valid, is_right, fmt=self.name, details=details)


def world_artifact(orient: np.ndarray, pose: np.ndarray, transl: np.ndarray, betas: np.ndarray, valid: np.ndarray,
                   is_right: np.ndarray, *, fmt: str, details: dict):
    """(H,T,3), (H,T,15,3), (H,T,3), (H,T,10), (H,T) bool, (H,) bool -> Artifact (keypoints from the model)."""
    num_tracks, num_frames = valid.shape
    track, time = np.divmod(np.arange(num_tracks * num_frames), num_frames)
    rows = Rows(track=track, time=time, num_frames=num_frames, is_right=is_right, valid=valid.reshape(-1),
                global_orient=orient.reshape(-1, 3), hand_pose=pose.reshape(-1, 15, 3),
                transl=transl.reshape(-1, 3), betas=betas.reshape(-1, 10))
    return rows_to_artifact(rows, fmt=fmt, details=details, hand_model="mano")
