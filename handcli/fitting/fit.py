"""Fit a hand model to 3D keypoint tracks: one shape per track, a pose per frame, all frames at once.

Objective per valid frame (millimetres): sum of squared keypoint errors + LIMIT_WEIGHT * squared excess of
the joint angles beyond anatomical limits (radians^2) + SHAPE_WEIGHT * |betas|^2. Betas start from the
pose-independent distances (bone lengths, palm), poses from the analytic IK with that shape; then
Levenberg-Marquardt over every frame of every track together (solver.py). Left hands are
mirrored to right hands and back. Frames without observations are excluded and filled afterwards by
interpolating the pose between their valid neighbours, so every output is finite.
"""

from __future__ import annotations

from contextlib import contextmanager

from dataclasses import dataclass

import numpy as np
import torch

from handcli.fitting.ik import analytic_ik
from handcli.fitting.interpolate import fill_linear, fill_rotations
from handcli.fitting.limits import anatomical_frames, limit_bounds
from handcli.fitting.solver import FrameProblem, levenberg_marquardt
from handcli.handmodels.kinematics import CANONICAL_PARENTS, MANO21_TO_CANONICAL, mirror_axis_angle, mirror_points

LIMIT_WEIGHT = 1000.0  # mm^2 per rad^2: 6 degrees beyond a limit costs as much as 3 mm on one joint
SHAPE_WEIGHT = 0.5  # mm^2 per frame per unit^2 (betas are in standard deviations)
MM = 1000.0


@dataclass
class FitResult:
    """float32 arrays. per_frame_error: mean keypoint distance (m) to the observed keypoints of that frame,
    NaN where nothing was observed."""

    global_orient: np.ndarray  # (H, T, 3)
    hand_pose: np.ndarray  # (H, T, 15, 3)
    transl: np.ndarray  # (H, T, 3)
    betas: np.ndarray  # (H, nb)
    keypoints3d_fit: np.ndarray  # (H, T, 21, 3) canonical order
    per_frame_error: np.ndarray  # (H, T)


def fit_keypoints(model, keypoints3d, valid, is_right, *, iterations: int = 10, device: str = "cpu",
                  fit_shape: bool = True, betas=None, limit_weight: float = LIMIT_WEIGHT,
                  shape_weight: float = SHAPE_WEIGHT, landmark_offsets=None) -> FitResult:
    """Fit `model` (a HandModel) to keypoint tracks.

    keypoints3d (H, T, 21, 3) metres, canonical order, NaN allowed; valid (H, T) bool; is_right (H,) bool.
    iterations: Levenberg-Marquardt iterations (0: analytic IK only). betas (H, nb): a shape to start from, or
    to keep with fit_shape=False. landmark_offsets (21, 3) metres, canonical order, or None: the keypoints
    are a detector's landmarks, offset from the model's keypoints (handcli.fitting.landmarks); the
    Levenberg-Marquardt refinement fits them, the outputs stay the model's keypoints. Returns FitResult
    (numpy, float32).
    """
    with single_thread():
        return _fit(model, keypoints3d, valid, is_right, iterations, device, fit_shape, betas, limit_weight,
                    shape_weight, landmark_offsets)


@contextmanager
def single_thread():
    """Run torch on one thread: the fit is thousands of tiny batched solves, where a second thread only adds
    synchronisation (and on a busy machine, oversubscription: measured 2 s -> 29 s for 621 frames)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _fit(model, keypoints3d, valid, is_right, iterations, device, fit_shape, betas, limit_weight,
         shape_weight, landmark_offsets) -> FitResult:
    model = model.to(device)
    dtype = model.v_template.dtype
    points = torch.as_tensor(np.asarray(keypoints3d), dtype=dtype, device=device)
    num_tracks, num_frames = points.shape[:2]
    right = torch.as_tensor(np.asarray(is_right), dtype=torch.bool, device=device).reshape(num_tracks)
    valid = torch.as_tensor(np.asarray(valid), dtype=torch.bool, device=device).reshape(num_tracks, num_frames)
    joint_seen = torch.isfinite(points).all(-1) & valid[..., None]  # (H, T, 21)
    frame_seen = joint_seen.any(-1)
    points = torch.where(right[:, None, None, None], points, mirror_points(points))  # left -> right hands
    points = torch.where(joint_seen[..., None], points, torch.zeros_like(points))

    if betas is not None:
        shape = torch.as_tensor(np.asarray(betas), dtype=dtype, device=device).reshape(num_tracks, -1).clone()
    elif fit_shape:
        shape = estimate_shape(model, points, joint_seen, shape_weight)
    else:
        shape = torch.zeros(num_tracks, model.num_betas, dtype=dtype, device=device)
    with torch.no_grad():
        orient, pose, transl = _initial_pose(model, points, joint_seen, shape)

    # optimise only the observed frames, flattened: padding and gaps cost nothing
    track, frame = frame_seen.nonzero(as_tuple=True)
    if track.numel() and iterations > 0:
        orient_seen, pose_seen, transl_seen, shape = _optimise(
            model, points[track, frame], joint_seen[track, frame], track, orient[track, frame], pose[track, frame],
            transl[track, frame], shape, fit_shape, iterations, limit_weight, shape_weight, landmark_offsets)
        orient, pose, transl = orient.clone(), pose.clone(), transl.clone()
        orient[track, frame], pose[track, frame], transl[track, frame] = orient_seen, pose_seen, transl_seen

    with torch.no_grad():
        orient = fill_rotations(orient, frame_seen)
        pose = fill_rotations(pose, frame_seen)
        transl = fill_linear(transl, frame_seen)
        fitted = _keypoints(model, orient, pose, shape, transl)
        distance = torch.where(joint_seen, (fitted - points).norm(dim=-1), torch.zeros_like(points[..., 0]))
        error = distance.sum(-1) / joint_seen.sum(-1).clamp_min(1)
        error = torch.where(frame_seen, error, torch.full_like(error, float("nan")))
        left = ~right  # back to each track's own side
        orient = torch.where(left[:, None, None], mirror_axis_angle(orient), orient)
        pose = torch.where(left[:, None, None, None], mirror_axis_angle(pose), pose)
        transl = torch.where(left[:, None, None], mirror_points(transl), transl)
        fitted = torch.where(left[:, None, None, None], mirror_points(fitted), fitted)
    as_np = lambda x: x.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    return FitResult(as_np(orient), as_np(pose), as_np(transl), as_np(shape), as_np(fitted), as_np(error))


def _optimise(model, points, joint_seen, track, orient, pose, transl, shape, fit_shape, iterations,
              limit_weight, shape_weight, landmark_offsets=None):
    """Levenberg-Marquardt over N observed frames: points (N, 21, 3), joint_seen (N, 21), track (N,) long;
    pose variables (N, ...); shape (H, nb). Returns (orient, pose, transl, shape)."""
    zero = torch.zeros(1, model.num_betas, dtype=points.dtype, device=points.device)
    frames = anatomical_frames(model.rest_joints21(zero)[0])
    lower, upper = limit_bounds(points.dtype, points.device)
    if landmark_offsets is not None:
        canonical_to_mano21 = [MANO21_TO_CANONICAL.index(k) for k in range(21)]
        landmark_offsets = torch.as_tensor(np.asarray(landmark_offsets)[canonical_to_mano21], dtype=points.dtype,
                                           device=points.device)[None]
    problem = FrameProblem(model, points, joint_seen.to(points.dtype), track, frames, lower, upper, limit_weight,
                           shape_weight, shape.shape[0], landmark_offsets=landmark_offsets)
    return levenberg_marquardt(problem, orient, pose, transl, shape, iterations, fit_shape)


def _distance_pairs() -> list[tuple[int, int]]:
    """Keypoint pairs (canonical order) whose distance is pose-independent: bones, and palm point pairs."""
    bones = [(parent, child) for child, parent in enumerate(CANONICAL_PARENTS) if parent >= 0]
    palm = (0, 1, 5, 9, 13, 17)
    return bones + [(a, b) for i, a in enumerate(palm) for b in palm[i + 1:] if (a, b) not in bones]


def estimate_shape(model, points: torch.Tensor, joint_seen: torch.Tensor, shape_weight: float = SHAPE_WEIGHT,
                   steps: int = 5) -> torch.Tensor:
    """Per-track betas from pose-independent distances (bone lengths, palm layout), Gauss-Newton on the
    median observed distances with the same shape prior. points (H, T, 21, 3), joint_seen (H, T, 21) -> (H, nb)."""
    pairs = torch.tensor(_distance_pairs(), device=points.device)  # (P, 2) canonical indices
    seen = joint_seen[..., pairs[:, 0]] & joint_seen[..., pairs[:, 1]]  # (H, T, P)
    distance = (points[..., pairs[:, 0], :] - points[..., pairs[:, 1], :]).norm(dim=-1)
    distance = torch.where(seen, distance, torch.full_like(distance, float("nan")))
    observed = distance.nanmedian(dim=1).values * MM  # (H, P)
    has = torch.isfinite(observed)
    observed = torch.nan_to_num(observed)
    num_tracks, num_betas = points.shape[0], model.num_betas
    # the model's keypoints are linear in betas: rest = base + dirs @ betas
    to_canonical = list(MANO21_TO_CANONICAL)
    zero = torch.zeros(1, num_betas, dtype=points.dtype, device=points.device)
    base = model.rest_joints21(zero)[0][to_canonical] * MM  # (21, 3)
    dirs = torch.autograd.functional.jacobian(lambda b: model.rest_joints21(b)[0][to_canonical], zero)[:, :, 0] * MM  # (21, 3, nb)
    offset_base = base[pairs[:, 0]] - base[pairs[:, 1]]  # (P, 3)
    offset_dirs = dirs[pairs[:, 0]] - dirs[pairs[:, 1]]  # (P, 3, nb)
    betas = torch.zeros(num_tracks, num_betas, dtype=points.dtype, device=points.device)
    weight = has.to(points.dtype)
    # the same prior as one frame of the fit carries: a weak pull towards the mean hand
    ridge = shape_weight * torch.eye(num_betas, dtype=points.dtype, device=points.device)
    for _ in range(steps):
        offset = offset_base + torch.einsum("pdk,hk->hpd", offset_dirs, betas)  # (H, P, 3)
        length = offset.norm(dim=-1).clamp_min(1e-6)
        jac = torch.einsum("hpd,pdk->hpk", offset / length[..., None], offset_dirs)  # (H, P, nb)
        residual = (length - observed) * weight
        normal = torch.einsum("hpk,hpl->hkl", jac * weight[..., None], jac) + ridge
        gradient = torch.einsum("hpk,hp->hk", jac, residual) + shape_weight * betas
        betas = betas - torch.linalg.solve(normal, gradient)
    return betas


def _keypoints(model, orient, pose, shape, transl) -> torch.Tensor:
    """Right-hand keypoints (H, T, 21, 3) for per-frame pose and per-track shape."""
    num_tracks, num_frames = orient.shape[:2]
    flat_shape = shape[:, None].expand(num_tracks, num_frames, shape.shape[-1]).reshape(-1, shape.shape[-1])
    keypoints = model.keypoints(orient.reshape(-1, 3), pose.reshape(-1, 15, 3), flat_shape, transl.reshape(-1, 3), True)
    return keypoints.reshape(num_tracks, num_frames, 21, 3)


def _initial_pose(model, points, joint_seen, shape):
    """Analytic IK on frames with every keypoint seen; the other frames interpolated from those."""
    num_tracks, num_frames = points.shape[:2]
    complete = joint_seen.all(-1)
    rest = model.rest_joints21(shape)  # (H, 21, 3) MANO21 order
    orient = points.new_zeros(num_tracks, num_frames, 3)
    pose = points.new_zeros(num_tracks, num_frames, 15, 3)
    transl = points.new_zeros(num_tracks, num_frames, 3)
    track, frame = complete.nonzero(as_tuple=True)
    if track.numel():
        orient[track, frame], pose[track, frame], transl[track, frame] = analytic_ik(points[track, frame], rest[track])
    orient, pose, transl = fill_rotations(orient, complete), fill_rotations(pose, complete), fill_linear(transl, complete)
    # tracks without a complete frame start flat, centred on what was seen
    seen_centre = (points * joint_seen[..., None]).sum(-2) / joint_seen.sum(-1, keepdim=True).clamp_min(1)
    no_reference = ~complete.any(-1)[:, None].expand_as(complete)
    transl = torch.where(no_reference[..., None], seen_centre - rest[:, None, 0], transl)
    return orient, pose, transl


def blend_toward_fit(keypoints3d: np.ndarray, fitted: np.ndarray, span: np.ndarray, sigma: float) -> np.ndarray:
    """Move smooth keypoint tracks onto the hand model's kinematic manifold without adding jitter.

    keypoints3d, fitted (H, T, 21, 3): a smooth motion and the hand model's keypoints fitted to it; span (H, T)
    bool, the frames to correct (each track's observed span). Returns keypoints3d + G_sigma(fitted -
    keypoints3d), the correction Gaussian-smoothed over sigma frames within each span and held outside it.
    The fit removes what a hand cannot do (bent hinge joints, sideways finger tips, wrong proportions), but it
    is solved frame by frame, so its correction carries frame-to-frame noise that the smoothing takes out.
    """
    from scipy.ndimage import gaussian_filter1d

    out = np.array(keypoints3d, dtype=np.float32, copy=True)
    for h, row in enumerate(np.asarray(span, bool)):
        seen = np.flatnonzero(row)
        if seen.size == 0:
            continue
        first, last = int(seen[0]), int(seen[-1]) + 1
        correction = (np.asarray(fitted[h, first:last], np.float64)
                      - np.asarray(keypoints3d[h, first:last], np.float64))
        if sigma > 0:
            correction = gaussian_filter1d(correction, sigma, axis=0, mode="nearest")
        out[h, first:last] += correction.astype(np.float32)
        out[h, :first] = out[h, first]
        out[h, last:] = out[h, last - 1]
    return out
