"""Fit the hand model to the image: per frame rotation, translation and articulation against 2D keypoints.

Why: MediaPipe's world landmarks are hand-centred, and their size and rotation are a network's guess. Placing
them by a translation alone (handcli.detect.lifting) inherits both, so a far hand lands 30-40 % too near and
turned by 15-30 degrees (issue #12). Here the hand is the model, with one shape per track whose size comes
from adult hand-length statistics (handcli.handmodels.size); its pose is what makes it project onto
MediaPipe's 2D keypoints through the camera K. Depth then follows from the known size and the hand's extent in
pixels; rotation from the perspective layout of 21 points.

Objective per frame, every term in millimetres at the hand (SMPLify-style, solved with the same
Levenberg-Marquardt structure as the 3D fit, handcli.fitting.solver):
  * reprojection: (x/z - x_obs, y/z - y_obs) in normalised image coordinates times the hand's depth, i.e.
    the 2D error expressed as a lateral offset at the hand, under a Cauchy robust weight (IRLS);
  * articulation prior: each joint's rotation relative to the fit of the learned lifter's 3D joints
    (handcli.fitting.lifter: MediaPipe's 2D keypoints and world landmarks -> the articulation, which the 2D
    keypoints alone cannot tell along the ray), or of the world landmarks themselves (lifter_share 0);
  * orientation prior: towards that fit's orientation, strong with the lifter, a weak tie-breaker with the
    world landmarks;
  * depth prior: the keypoints' mean depth towards the lifter's, smoothed over time (the lifter's joints
    average what the image cannot tell apart into a flatter hand, which alone would be placed too far);
  * joint limits (the fitter's hinge prior, handcli.fitting.limits);
  * temporal terms: rotation and translation pulled towards their Gaussian-smoothed track (the targets are
    re-smoothed between rounds), which mostly steadies the depth, the one direction the image pins weakly.
Left hands are mirrored to right hands (x -> -x, so u -> 2 cx - u) and back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from handcli.fitting.fit import LIMIT_WEIGHT, FitResult, fit_keypoints, single_thread
from handcli.fitting.interpolate import _quaternion_to_matrix, fill_linear, fill_rotations
from handcli.fitting.landmarks import load_offsets
from handcli.fitting.limits import anatomical_frames, limit_bounds
from handcli.fitting.solver import FrameProblem, inverse_right_jacobian, levenberg_marquardt
from handcli.handmodels.kinematics import (
    MANO21_TO_CANONICAL,
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    mirror_axis_angle,
    mirror_points,
)
from handcli.handmodels.size import HAND_LENGTH_MEAN_M, hand_length

MM = 1000.0
PALM = (0, 1, 5, 9, 13, 17)  # canonical keypoints on the palm's rigid part: wrist, thumb base, four knuckles


@dataclass
class ImageFitConfig:
    """Weights are squared-residual ratios: mm^2 of reprojection offset per rad^2 (or mm^2) of prior."""

    hand_length: float = HAND_LENGTH_MEAN_M  # metres: the size every track is given (no size cue in one image)
    landmark_offsets: str | None = None  # calibration file (handcli.fitting.landmarks); None: the shipped one
    prior_offsets: bool = True  # the world landmarks are in the detector's landmark convention too
    finger_image_weight: float = 1.0  # reprojection weight of finger keypoints relative to the palm's
    prior_iterations: int = 2  # LM iterations of the 3D fit to the world landmarks (the articulation prior)
    rounds: int = 2  # outer rounds: robust weights and temporal targets are updated between them
    iterations: int = 3  # LM iterations per round
    articulation_weight: float = 400.0  # ~ (3 mm / 0.15 rad)^2
    lifter_share: float = 1.0  # articulation prior: 0 MediaPipe's world landmarks, 1 the learned lifter
    lifter_weights: str | None = None  # None: weights/lifter.pt
    # ~ (3 mm / 3 mm)^2: the lifter's depth, smoothed, sets the depth; the 2D spread of the fitted hand only
    # refines it. Tuning split (render version 5, 36 clips, after refine): weight 0.1 -> 58.5 mm MPJPE, depth
    # error 6.6 % (placed +4.9 % too far), 1.0 -> 54.0 mm, 6.1 % (+3.1 %), 10 -> 53.7 mm, 6.1 %; the final 2D
    # error 12.3 -> 12.7 px (MediaPipe's own 15.8). What remains is mostly the hand's unknown size.
    depth_weight: float = 1.0
    depth_smooth_seconds: float = 0.1  # Gaussian width over which the lifter's depth is averaged
    # the hand's proportions from the lifter too (False: from the world landmarks). The lifter learned the skin
    # keypoint convention of real hands (weights/lifter.md); tuning split after refine, root-relative / PA /
    # 2D: 18.5 mm / 9.1 mm / 14.6 px from the world landmarks, 16.4 / 6.9 / 12.4 from the lifter
    lifter_proportions: bool = True
    # ~ (3 mm / 0.02 rad)^2: the prior's orientation (the lifter's) is trusted; with MediaPipe's world landmarks
    # it was only a tie-breaker (60). Tuning split (render version 5, 36 clips, after refine) root-relative /
    # rotation: 1500 -> 17.3 mm / 8.1 deg, 5000 -> 16.4 / 7.6, 20000 -> 15.8 / 7.3, 100000 -> 15.7 / 7.2
    orient_weight: float = 20000.0
    landmark_orient_weight: float = 60.0  # the orientation prior's weight when the prior is the world landmarks
    robust_scale_mm: float = 10.0  # Cauchy scale of the reprojection offset
    smooth_seconds: float = 0.07  # Gaussian width of the temporal targets
    transl_smooth_weight: float = 0.3  # ~ (3 mm / 5.5 mm)^2 per translation axis
    orient_smooth_weight: float = 100.0  # ~ (3 mm / 0.3 rad)^2


@dataclass
class ImageFitResult(FitResult):
    """FitResult plus reprojection_px (H, T): mean pixel distance between the fitted keypoints' projections
    and the 2D keypoints (NaN unseen); it includes the wrist's and thumb base's landmark-convention offset."""

    reprojection_px: np.ndarray = None


def fit_to_image(model, world_landmarks, keypoints2d, valid, is_right, K, fps: float,
                 config: ImageFitConfig | None = None, device: str = "cpu") -> ImageFitResult:
    """Fit `model` per track to 2D keypoints, placing it in the camera frame.

    world_landmarks (H, T, 21, 3) metres hand-centred camera-aligned (MediaPipe world landmarks), keypoints2d
    (H, T, 21, 2+) pixels, valid (H, T) bool, is_right (H,) bool, K (3, 3). Returns camera-frame parameters
    and keypoints (H, T, 21, 3); frames that are not valid are interpolated from their neighbours.
    """
    config = config or ImageFitConfig()
    with single_thread():
        return _fit(model, world_landmarks, keypoints2d, valid, is_right, np.asarray(K, np.float64), fps, config,
                    device)


def _fit(model, world_landmarks, keypoints2d, valid, is_right, K, fps, config, device) -> ImageFitResult:
    if config.lifter_share <= 0:  # MediaPipe's own rotation is 24 degrees off (median): only a tie-breaker
        config = replace(config, orient_weight=config.landmark_orient_weight)
    valid = np.asarray(valid, bool)
    is_right = np.asarray(is_right, bool)
    offsets = load_offsets(config.landmark_offsets) * config.hand_length  # (21, 3) metres, canonical
    model = model.to(device)
    dtype = model.v_template.dtype
    as_tensor = lambda array: torch.as_tensor(np.asarray(array), dtype=dtype, device=device)  # noqa: E731
    right = torch.as_tensor(is_right, device=device)
    valid_t = torch.as_tensor(valid, device=device)
    # everything below works on right hands: mirror left tracks' image (and below, their prior)
    uv = np.array(keypoints2d[..., :2], np.float64)
    uv[~is_right, ..., 0] = 2 * K[0, 2] - uv[~is_right, ..., 0]
    normalised = as_tensor(np.stack([(uv[..., 0] - K[0, 2]) / K[0, 0], (uv[..., 1] - K[1, 2]) / K[1, 1]], -1))
    seen = valid_t & torch.isfinite(normalised).all(-1).all(-1)
    prior_points, prior_offsets, lifted_depth = _articulation_targets(world_landmarks, normalised, seen, right,
                                                                      offsets, config)
    proportions = None
    if lifted_depth is not None and not config.lifter_proportions:
        # the hand's proportions (betas 1-9) from the world landmarks, the lifter's joints only for the pose
        # (the setting for a lifter whose skeleton convention differs from the hand model's, as the first,
        # FPHA-skeleton lifter's did: docs/hand_models.md)
        proportions = fit_keypoints(model, world_landmarks, valid, is_right, iterations=config.prior_iterations,
                                    device=device, landmark_offsets=offsets if config.prior_offsets else None).betas
    prior = fit_keypoints(model, prior_points, valid, is_right, iterations=config.prior_iterations,
                          device=device, landmark_offsets=prior_offsets, fit_shape=proportions is None,
                          betas=proportions)
    orient_prior = _to_right(as_tensor(prior.global_orient), right, mirror_axis_angle)
    pose_prior = _to_right(as_tensor(prior.hand_pose), right, mirror_axis_angle)
    betas = sized_betas(model, as_tensor(prior.betas), config.hand_length)

    track, frame = seen.nonzero(as_tuple=True)
    orient, pose = orient_prior.clone(), pose_prior.clone()
    transl = torch.zeros(*orient.shape[:2], 3, dtype=dtype, device=device)
    if track.numel():
        depth_target = None
        if lifted_depth is not None:
            depth_target = _smooth_depth(lifted_depth, seen, config.depth_smooth_seconds * fps)[track, frame]
        solved = _solve(model, normalised[track, frame], track, orient_prior[track, frame], pose_prior[track, frame],
                        betas, frame, seen, fps, config, as_tensor(offsets), depth_target)
        orient[track, frame], pose[track, frame], transl[track, frame] = solved
    with torch.no_grad():
        orient, pose, transl = (fill_rotations(orient, seen), fill_rotations(pose, seen), fill_linear(transl, seen))
        num_tracks, num_frames = orient.shape[:2]
        keypoints = model.keypoints(orient.reshape(-1, 3), pose.reshape(-1, 15, 3),
                                    betas[:, None].expand(-1, num_frames, -1).reshape(num_tracks * num_frames, -1),
                                    transl.reshape(-1, 3), True).reshape(num_tracks, num_frames, 21, 3)
        projected = keypoints[..., :2] / keypoints[..., 2:3]
        scale = torch.as_tensor(K[[0, 1], [0, 1]], dtype=dtype, device=device)
        reprojection = ((projected - normalised) * scale).norm(dim=-1).mean(-1)
        reprojection = torch.where(seen, reprojection, torch.full_like(reprojection, float("nan")))
        orient = _to_right(orient, right, mirror_axis_angle)  # mirroring is its own inverse
        pose = _to_right(pose, right, mirror_axis_angle)
        transl = _to_right(transl, right, mirror_points)
        keypoints = _to_right(keypoints, right, mirror_points)
    as_np = lambda x: x.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    # per_frame_error: the reprojection error as a lateral offset at the hand (metres), like the 3D fit's
    lateral = reprojection / torch.as_tensor(K[0, 0], dtype=dtype) * transl[..., 2].abs()
    return ImageFitResult(as_np(orient), as_np(pose), as_np(transl), as_np(betas), as_np(keypoints),
                          as_np(lateral), as_np(reprojection))


def _articulation_targets(world_landmarks, normalised, seen, right, offsets, config: ImageFitConfig):
    """What the priors are fitted to: (points (H, T, 21, 3) metres, hand-centred, camera axes, each track's
    own handedness; the landmark offsets (21, 3) to fit them with, None when they are the model's own
    keypoints; the lifter's mean joint depth (H, T) metres, None without the lifter).

    lifter_share 0: MediaPipe's world landmarks (the detector's landmark convention: fitted with the offsets);
    1: the learned lifter (handcli.fitting.lifter) applied to the 2D keypoints and the world landmarks, in the
    model's convention and scaled to the configured hand length; between: a blend of the two shapes at that
    length."""
    share = float(config.lifter_share)
    landmark_offsets = offsets if config.prior_offsets else None
    if share <= 0.0:
        return world_landmarks, landmark_offsets, None
    from handcli.fitting.lifter import load_lifter, unit_shape

    world_right = _to_right(torch.as_tensor(np.asarray(world_landmarks), dtype=normalised.dtype,
                                            device=normalised.device), right, mirror_points)
    lifter = load_lifter(config.lifter_weights)
    lifted, depth = lifter.lift(torch.nan_to_num(normalised), torch.nan_to_num(world_right))
    lifted = _to_right(lifted, right, mirror_points).cpu().numpy().astype(np.float64) * config.hand_length
    unseen = ~seen.cpu().numpy()
    lifted[unseen] = np.nan
    depth = depth * config.hand_length
    if share >= 1.0:
        return lifted, None, depth
    landmarks = unit_shape(np.asarray(world_landmarks, np.float64)) * config.hand_length
    blended = share * lifted + (1.0 - share) * landmarks
    return blended, None if landmark_offsets is None else (1.0 - share) * landmark_offsets, depth


def _to_right(values: torch.Tensor, right: torch.Tensor, mirror) -> torch.Tensor:
    """Mirror the tracks that are not right hands: values (H, ...)."""
    return torch.where(right.reshape(-1, *[1] * (values.dim() - 1)), values, mirror(values))


def sized_betas(model, betas: torch.Tensor, length: float, steps: int = 3) -> torch.Tensor:
    """betas (H, nb) with beta 0 (overall size, scaled about the wrist) set so that the hand is `length`
    metres long (handcli.handmodels.size.hand_length); the other betas (proportions) are kept."""
    betas = betas.clone()
    canonical = list(MANO21_TO_CANONICAL)
    for _ in range(steps):  # hand length is linear in betas up to the bone directions: Newton converges fast
        size = betas[:, :1].clone().requires_grad_(True)
        current = hand_length(model.rest_joints21(torch.cat([size, betas[:, 1:]], 1))[:, canonical])
        (slope,) = torch.autograd.grad(current.sum(), size)
        betas[:, 0] = betas[:, 0] - (current.detach() - length) / slope[:, 0]
    return betas


def _solve(model, normalised, track, orient_prior, pose_prior, betas, frame, seen, fps, config, offsets,
           depth_target=None):
    """LM over the N seen frames: normalised (N, 21, 2) image coordinates, track/frame (N,) long, priors
    (N, 3) / (N, 15, 3), betas (H, nb), landmark offsets (21, 3) metres canonical, depth_target (N,) metres
    (the lifter's mean keypoint depth) or None. Returns orient (N, 3), pose (N, 15, 3), transl (N, 3)."""
    dtype, device = normalised.dtype, normalised.device
    zero = torch.zeros(1, model.num_betas, dtype=dtype, device=device)
    frames_axes = anatomical_frames(model.rest_joints21(zero)[0])
    lower, upper = limit_bounds(dtype, device)

    # the FrameProblem supplies the kinematics (landmarks, their Jacobian, joint limits); its own 3D keypoint
    # term is switched off (zero weights)
    kinematics = FrameProblem(model, torch.zeros(*normalised.shape[:2], 3, dtype=dtype, device=device),
                              torch.zeros(normalised.shape[:2], dtype=dtype, device=device), track, frames_axes,
                              lower, upper, LIMIT_WEIGHT, 0.0, betas.shape[0],
                              landmark_offsets=offsets[[MANO21_TO_CANONICAL.index(k) for k in range(21)]][None])
    problem = ImageProblem(kinematics, normalised, orient_prior, pose_prior, config, depth_target)
    with torch.no_grad():
        rest = model.keypoints(orient_prior, pose_prior, betas[track], torch.zeros_like(orient_prior), True)
    transl = _initial_translation(rest, normalised)
    orient, pose = orient_prior, pose_prior
    for round_index in range(config.rounds):
        # the first round is per frame: its targets would only pull towards the (rough) starting point
        problem.update(orient, pose, transl, betas, track, frame, seen, fps, later=round_index > 0)
        orient, pose, transl, _ = levenberg_marquardt(problem, orient, pose, transl, betas, config.iterations,
                                                      fit_shape=False)
    return orient, pose, transl


def _initial_translation(points: torch.Tensor, normalised: torch.Tensor) -> torch.Tensor:
    """Translation placing hand-centred points (N, 21, 3) onto normalised image coordinates (N, 21, 2):
    the linear least squares of x + tx = n_x (z + tz), y + ty = n_y (z + tz), then once more weighted by the
    first pass's depths so that the residual is the image-plane error. -> (N, 3)."""
    from handcli.detect.lifting import solve_translation

    K = np.eye(3)
    return torch.as_tensor(solve_translation(points.cpu().numpy(), normalised.cpu().numpy(), K),
                           dtype=points.dtype, device=points.device)


class ImageProblem:
    """The LM problem of `levenberg_marquardt` (objective, step, apply) for the image fit of N frames.

    The kinematic Jacobian (d keypoints / d rotation increments and translation) and the joint limits come
    from a FrameProblem over the same frames; this class adds the image, prior and temporal residuals."""

    def __init__(self, kinematics: FrameProblem, normalised, orient_prior, pose_prior, config: ImageFitConfig,
                 depth_target=None):
        self.kinematics = kinematics
        self.depth_target = depth_target  # (N,) metres or None: the lifter's mean keypoint depth
        self.normalised = normalised  # (N, 21, 2) canonical order
        self.config = config
        self.prior_rotations = axis_angle_to_matrix(torch.cat([orient_prior[:, None], pose_prior], 1))
        n = normalised.shape[0]
        self.base_weight = torch.full((21,), config.finger_image_weight, dtype=normalised.dtype,
                                      device=normalised.device)
        self.base_weight[list(PALM)] = 1.0
        self.weight = self.base_weight.expand(n, 21)
        self.depth = torch.ones(n, dtype=normalised.dtype, device=normalised.device)
        self.smooth_transl = None
        self.smooth_orient = None
        self.temporal = 0.0  # 0 in the first round, then 1: the temporal terms' switch
        self.count = n

    # ------------------------------------------------------------------------------------- between rounds
    def update(self, orient, pose, transl, betas, track, frame, seen, fps, later: bool):
        """Refresh the hand's depth (the scale of the image residual) and, after the first round (`later`),
        the Cauchy weights and the temporal targets from the current solution."""
        with torch.no_grad():
            rotations = axis_angle_to_matrix(torch.cat([orient[:, None], pose], 1))
            self.depth = transl[:, 2].clamp_min(0.05)  # first: the robust weights read offsets at this depth
            image = self._image_residual(rotations, transl, betas)[0]
            self.smooth_transl, self.smooth_orient = _smooth_targets(orient, transl, track, frame, seen.shape,
                                                                     self.config.smooth_seconds * fps)
            self.temporal = 1.0 if later else 0.0
            if later:
                offset = image.norm(dim=-1)
                self.weight = self.base_weight / (1.0 + (offset / self.config.robust_scale_mm) ** 2)

    # ------------------------------------------------------------------------------------------ residuals
    def _image_residual(self, rotations, transl, betas):
        """(image residual (N, 21, 2) mm at the hand, canonical order; limit residual; predicted keypoints,
        landmarks (N, 21, 3) MANO21 metres; global joint rotations (N, 16, 3, 3); pose (N, 15, 3))."""
        kin = self.kinematics
        predicted, pose = kin.posed(rotations, transl, betas)
        world = kin.world_rotations(rotations, betas)
        landmarks = kin.landmarks(rotations, predicted, betas, world)
        limit_residual = kin.limit_residual(pose)
        canonical = landmarks[:, list(MANO21_TO_CANONICAL)]
        z = canonical[..., 2:3].clamp_min(1e-3)
        image = (canonical[..., :2] / z - self.normalised) * (self.depth[:, None, None] * MM)
        return image, limit_residual, predicted, landmarks, world, pose

    def _depth_residual(self, landmarks):
        """(N,) mm: the keypoints' mean depth against the lifter's (zeros without one)."""
        if self.depth_target is None:
            return landmarks.new_zeros(landmarks.shape[0])
        return (landmarks[..., 2].mean(-1) - self.depth_target) * MM

    def _prior_residuals(self, rotations, transl):
        """Rotation priors as (N, 16, 3) log-map residuals (radians, unweighted) and translation (N, 3) mm."""
        prior = matrix_to_axis_angle(self.prior_rotations.transpose(-1, -2) @ rotations)
        smooth = matrix_to_axis_angle(self.smooth_orient.transpose(-1, -2) @ rotations[:, 0])
        return prior, smooth, (transl - self.smooth_transl) * MM

    def _prior_weights(self, dtype, device):
        """(16,) weights of the per-joint prior: orientation first, then the 15 articulation joints."""
        weights = torch.full((16,), self.config.articulation_weight, dtype=dtype, device=device)
        weights[0] = self.config.orient_weight
        return weights

    def objective(self, rotations, transl, shape) -> torch.Tensor:
        image, limit_residual, _, landmarks = self._image_residual(rotations, transl, shape)[:4]
        prior, smooth, transl_offset = self._prior_residuals(rotations, transl)
        weights = self._prior_weights(image.dtype, image.device)
        total = ((image.square().sum(-1) * self.weight).sum() + limit_residual.square().sum()
                 + self.config.depth_weight * self._depth_residual(landmarks).square().sum()
                 + (prior.square().sum(-1) * weights).sum()
                 + self.temporal * self.config.orient_smooth_weight * smooth.square().sum()
                 + self.temporal * self.config.transl_smooth_weight * transl_offset.square().sum())
        return total / self.count

    # ------------------------------------------------------------------------------------------ one step
    def step(self, rotations, transl, shape, damping: float, fit_shape: bool):
        """Damped Gauss-Newton step per frame in the FrameProblem's scaled variables: (frame (N, 51), zeros)."""
        kin = self.kinematics
        image, limit_residual, predicted, landmarks, world, pose = self._image_residual(rotations, transl, shape)
        prior, smooth, transl_offset = self._prior_residuals(rotations, transl)
        weights = self._prior_weights(image.dtype, image.device)
        steps = []
        for start in range(0, rotations.shape[0], 4096):
            chunk = slice(start, start + 4096)
            jac3d = kin._frame_jacobian(predicted[chunk], world[chunk], landmarks[chunk])  # (n, 63, 51) MANO21 mm
            jac3d = jac3d.reshape(-1, 21, 3, 51)[:, list(MANO21_TO_CANONICAL)]
            points = landmarks[chunk][:, list(MANO21_TO_CANONICAL)]  # (n, 21, 3) m
            z = points[..., 2].clamp_min(1e-3)
            ratio = self.depth[chunk, None] / z  # d(image residual)/d(point, mm) = ratio * [1, 0, -x/z; 0, 1, -y/z]
            jac_image = ratio[..., None, None] * (
                jac3d[:, :, :2] - (points[..., :2] / z[..., None])[..., None] * jac3d[:, :, 2:3])
            root_weight = self.weight[chunk].sqrt()[..., None, None]
            jac_image = (jac_image * root_weight).reshape(-1, 42, 51)
            residual = (image[chunk] * root_weight[..., 0]).reshape(-1, 42)
            a = jac_image.transpose(1, 2) @ jac_image
            g = (jac_image.transpose(1, 2) @ residual[..., None])[..., 0]
            a, g = kin._add_limits(a, g, pose[chunk], limit_residual[chunk])
            a, g = self._add_rotation_prior(a, g, prior[chunk], weights, rotations.dtype)
            a, g = self._add_smoothness(a, g, smooth[chunk], transl_offset[chunk])
            if self.depth_target is not None and self.config.depth_weight > 0:
                # one row: the mean keypoint depth towards the lifter's (jac3d is d mm / d variable)
                jac_depth = jac3d[:, :, 2].mean(1) * self.config.depth_weight ** 0.5  # (n, 51)
                residual_depth = self._depth_residual(landmarks[chunk]) * self.config.depth_weight ** 0.5
                a = a + jac_depth[:, :, None] * jac_depth[:, None, :]
                g = g + jac_depth * residual_depth[:, None]
            diagonal = torch.diagonal(a, dim1=1, dim2=2)
            a = a + torch.diag_embed(damping * diagonal + 1e-6)
            steps.append(-torch.linalg.solve(a, g[..., None])[..., 0])
        return torch.cat(steps), torch.zeros_like(shape)

    def _add_rotation_prior(self, a, g, prior, weights, dtype):
        """Rows w_j^0.5 log(R_prior_j^T R_j) for the 16 joints; their Jacobian in a right increment is the
        inverse right Jacobian at the residual (scaled like the FrameProblem's variables)."""
        kin = self.kinematics
        scale = torch.full((16, 1, 1), 1 / kin.pose_scale, dtype=dtype, device=a.device)
        scale[0] = 1 / kin.orient_scale
        jac = inverse_right_jacobian(prior) * scale * weights.sqrt()[:, None, None]  # (n, 16, 3, 3)
        residual = prior * weights.sqrt()[:, None]
        block_a = jac.transpose(-1, -2) @ jac
        block_g = (jac.transpose(-1, -2) @ residual[..., None])[..., 0]
        n = a.shape[0]
        eye = torch.eye(16, dtype=a.dtype, device=a.device)
        a = a + torch.nn.functional.pad(torch.einsum("njab,jk->njakb", block_a, eye).reshape(n, 48, 48), (0, 3, 0, 3))
        g = g + torch.nn.functional.pad(block_g.reshape(n, 48), (0, 3))
        return a, g

    def _add_smoothness(self, a, g, smooth, transl_offset):
        """The temporal rows: orientation towards its smoothed target, translation towards its smoothed path."""
        kin = self.kinematics
        w_r, w_t = self.temporal * self.config.orient_smooth_weight, self.temporal * self.config.transl_smooth_weight
        jac_r = inverse_right_jacobian(smooth) / kin.orient_scale
        a = a.clone()
        g = g.clone()
        a[:, :3, :3] += w_r * jac_r.transpose(-1, -2) @ jac_r
        g[:, :3] += w_r * (jac_r.transpose(-1, -2) @ smooth[..., None])[..., 0]
        unit = MM / kin.transl_scale
        a[:, 48:, 48:] += w_t * unit**2 * torch.eye(3, dtype=a.dtype, device=a.device)
        g[:, 48:] += w_t * unit * transl_offset
        return a, g

    def apply(self, rotations, transl, shape, frame_step, shape_step):
        return self.kinematics.apply(rotations, transl, shape, frame_step, shape_step)


def _smooth_depth(depth: torch.Tensor, seen: torch.Tensor, sigma_frames: float) -> torch.Tensor:
    """The lifter's per-frame depth (H, T) smoothed over each track's seen frames in log space. Why: the
    per-frame value is noisy (~3 % at random), while the depth it corrects moves slowly (docs/results.md,
    lag-1 autocorrelation 0.9)."""
    if sigma_frames <= 0:
        return depth
    log_depth = np.log(np.clip(np.nan_to_num(depth.cpu().numpy().astype(np.float64), nan=1.0), 1e-3, None))
    smoothed = _masked_gaussian(log_depth, seen.cpu().numpy().astype(np.float64), sigma_frames)
    return torch.as_tensor(np.exp(smoothed), dtype=depth.dtype, device=depth.device)


def _masked_gaussian(values: np.ndarray, mask: np.ndarray, sigma_frames: float) -> np.ndarray:
    """values (H, T, ...) averaged over time (axis 1) with a Gaussian of `sigma_frames`, counting only the
    frames where mask (H, T, ...; broadcast against values) is 1: a normalised convolution, so gaps and the
    track's ends weigh nothing. Frames with no weight near them keep their value."""
    from scipy.ndimage import gaussian_filter1d

    smoothed = gaussian_filter1d(values * mask, sigma_frames, axis=1, mode="constant")
    weight = gaussian_filter1d(mask, sigma_frames, axis=1, mode="constant")
    return np.where(weight > 1e-6, smoothed / np.maximum(weight, 1e-6), values)


def _smooth_targets(orient, transl, track, frame, shape, sigma_frames):
    """Gaussian-smoothed translation (N, 3) and orientation matrices (N, 3, 3) of the N solved frames, per
    track over time (normalised convolution: gaps and ends weigh nothing)."""
    num_tracks, num_frames = shape
    quat = matrix_to_quaternion(axis_angle_to_matrix(orient)).cpu().numpy().astype(np.float64)
    values = np.zeros((num_tracks, num_frames, 7))
    mask = np.zeros((num_tracks, num_frames, 1))
    track_np, frame_np = track.cpu().numpy(), frame.cpu().numpy()
    values[track_np, frame_np, :3] = transl.cpu().numpy()
    values[track_np, frame_np, 3:] = quat
    mask[track_np, frame_np] = 1.0
    for h in range(num_tracks):  # quaternion signs made consistent along each track before averaging
        rows = np.flatnonzero(mask[h, :, 0])
        q = values[h, rows, 3:]
        flips = np.cumprod(np.where((q[1:] * q[:-1]).sum(-1) < 0, -1.0, 1.0))
        q[1:] *= flips[:, None]
        values[h, rows, 3:] = q
    if sigma_frames > 0:
        values = _masked_gaussian(values, mask, sigma_frames)
    picked = values[track_np, frame_np]
    q = picked[:, 3:] / np.linalg.norm(picked[:, 3:], axis=-1, keepdims=True)
    transl_target = torch.as_tensor(picked[:, :3], dtype=transl.dtype, device=transl.device)
    orient_target = _quaternion_to_matrix(torch.as_tensor(q, dtype=transl.dtype, device=transl.device))
    return transl_target, orient_target
