"""Levenberg-Marquardt for many frames sharing one shape per track (the bundle-adjustment structure).

Unknowns: per frame a local rotation increment for each of the 16 joints (applied on the right, R <- R exp(d))
and a translation; per track the betas. Residuals per frame: keypoint errors (mm), joint-limit excess
(scaled radians); per track: the shape prior. Each frame's normal equations are a dense 51x51 block that
couples to its track's betas only, so the betas are solved first through the Schur complement, then every
frame in one batched solve. Keypoint Jacobians are the rigid-body ones, d p_k / d d_j = -[p_k - p_j]x W_j,
exact for the joints and for fingertips that ride rigidly on their last joint; the step is accepted only if
the exact objective drops, so any approximation costs speed, not accuracy.
"""

from __future__ import annotations

import torch

from handcli.fitting.landmarks import LANDMARK_PARENT
from handcli.handmodels.kinematics import (
    MANO21_PARENTS,
    MANO21_TO_CANONICAL,
    axis_angle_to_matrix,
    forward_kinematics_by_level,
    matrix_to_axis_angle,
)

MM = 1000.0
CHUNK = 4096  # frames per batched linear-algebra pass (bounds memory)


def _ancestors() -> torch.Tensor:
    """(21, 16) bool: MANO joint j (0..15) is an ancestor of keypoint k (MANO21 order), k itself excluded."""
    table = torch.zeros(21, 16, dtype=torch.bool)
    for k in range(21):
        parent = MANO21_PARENTS[k]
        while parent >= 0:
            table[k, parent] = True
            parent = MANO21_PARENTS[parent]
    return table


def _skew(vectors: torch.Tensor) -> torch.Tensor:
    x, y, z = vectors.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*vectors.shape, 3)


def inverse_right_jacobian(axis_angle: torch.Tensor) -> torch.Tensor:
    """d(axis-angle)/d(right increment) of SO(3): (..., 3) -> (..., 3, 3)."""
    angle = axis_angle.norm(dim=-1, keepdim=True)[..., None].clamp_min(1e-8)
    skew = _skew(axis_angle)
    coefficient = 1 / angle**2 - (1 + torch.cos(angle)) / (2 * angle * torch.sin(angle).clamp_min(1e-8))
    coefficient = torch.where(angle < 1e-4, torch.full_like(angle, 1 / 12), coefficient)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + 0.5 * skew + coefficient * (skew @ skew)


class FrameProblem:
    """Keypoint + joint-limit residuals of N frames for `model`, with the scalings that make a unit step of
    every variable move keypoints by roughly a millimetre."""

    def __init__(self, model, points, weight, track, frames, lower, upper, limit_weight, shape_weight, num_tracks,
                 scales=(100.0, 40.0, MM, 4.0), landmark_offsets=None):
        """landmark_offsets (N or 1, 21, 3) metres, MANO21 order, or None: the observed points are not the
        model's keypoints but landmarks riding on each keypoint's parent bone (handcli.fitting.landmarks)."""
        self.model, self.points, self.weight, self.track = model, points, weight, track
        self.landmark_offsets = landmark_offsets
        self.frames, self.lower, self.upper = frames, lower, upper
        self.limit_weight, self.shape_weight = limit_weight, shape_weight
        self.count = points.shape[0]
        self.frames_per_track = torch.bincount(track, minlength=num_tracks).to(points.dtype)
        self.orient_scale, self.pose_scale, self.transl_scale, self.shape_scale = scales
        self.to_mano21 = [MANO21_TO_CANONICAL.index(k) for k in range(21)]
        self.ancestors = _ancestors().to(points.device)
        # (keypoint, ancestor joint) index pairs, plus (wrist, root): the root turns nothing at the wrist
        # itself (a zero column), but it does turn a point riding on the root (`points` of _frame_jacobian)
        self.pairs = (self.ancestors | (torch.arange(21)[:, None] + torch.arange(16) == 0).to(points.device)
                      ).nonzero(as_tuple=True)
        self.pair_scale = torch.where(self.pairs[1] == 0, MM / self.orient_scale, MM / self.pose_scale).to(points.dtype)
        zero = torch.zeros(1, model.num_betas, dtype=points.dtype, device=points.device)
        rest_dirs = torch.autograd.functional.jacobian(lambda b: model.rest_joints21(b)[0], zero)[:, :, 0]  # (21, 3, nb)
        # bone k runs parent(k) -> k (bone 0: the wrist's own displacement, not rotated); path[k, l]: bone l lies
        # on the way from the root to keypoint k
        parents = [max(p, 0) for p in MANO21_PARENTS]
        self.bone_parents = parents
        self.bone_dirs = rest_dirs - rest_dirs[parents] * (torch.arange(21) > 0)[:, None, None].to(rest_dirs)
        path = torch.zeros(21, 21, dtype=rest_dirs.dtype, device=rest_dirs.device)
        for k in range(21):
            node = k
            while node >= 0:
                path[k, node] = 1
                node = MANO21_PARENTS[node]
        self.path = path

    # ------------------------------------------------------------------------------------------ objective
    def residuals(self, rotations, transl, shape, world=None):
        """(keypoint residual (N, 21, 3) mm in MANO21 order, limit residual (N, 15, 3) scaled, posed points,
        pose). world: the joints' global rotations if already known (only landmark offsets need them)."""
        predicted, pose = self.posed(rotations, transl, shape)
        observed = self.points[:, self.to_mano21]
        keypoint_residual = ((self.landmarks(rotations, predicted, shape, world) - observed) * MM
                             * self.weight[:, self.to_mano21, None].sqrt())
        return keypoint_residual, self.limit_residual(pose), predicted, pose

    def posed(self, rotations, transl, shape):
        """The model's keypoints (N, 21, 3) MANO21 order and the hand pose (N, 15, 3) axis-angle."""
        orient = matrix_to_axis_angle(rotations[:, 0])
        pose = matrix_to_axis_angle(rotations[:, 1:])
        return self.model.keypoints(orient, pose, shape[self.track], transl, True)[:, self.to_mano21], pose

    def limit_residual(self, pose) -> torch.Tensor:
        """Scaled joint-angle excess beyond the limits: pose (N, 15, 3) -> (N, 15, 3)."""
        angles = (self.frames @ pose[..., None])[..., 0]
        excess = angles - torch.minimum(torch.maximum(angles, self.lower), self.upper)
        return excess * self.limit_weight**0.5

    def world_rotations(self, rotations, shape) -> torch.Tensor:
        """Global rotation of each joint (N, 16, 3, 3) from the local ones (N, 16, 3, 3)."""
        _, transforms = forward_kinematics_by_level(rotations, self.model.rest_joints16(shape)[self.track])
        return transforms[..., :3, :3]

    def landmarks(self, rotations, predicted, shape, world=None) -> torch.Tensor:
        """The points the observations are of (N, 21, 3) MANO21: the keypoints `predicted`, each moved by its
        landmark offset turned with its parent joint (no offsets: the keypoints themselves)."""
        if self.landmark_offsets is None:
            return predicted
        world = self.world_rotations(rotations, shape) if world is None else world
        return predicted + (world[:, list(LANDMARK_PARENT)] @ self.landmark_offsets[..., None])[..., 0]

    def objective(self, rotations, transl, shape) -> torch.Tensor:
        keypoint_residual, limit_residual, _, _ = self.residuals(rotations, transl, shape)
        prior = self.shape_weight * (self.frames_per_track * (shape**2).sum(-1)).sum()
        return (keypoint_residual.square().sum() + limit_residual.square().sum() + prior) / self.count

    # ------------------------------------------------------------------------------------------ one step
    def step(self, rotations, transl, shape, damping: float, fit_shape: bool):
        """Solve the damped normal equations; returns increments (frame (N, 51), shape (H, nb)) in scaled units."""
        world = self.world_rotations(rotations, shape)  # (N, 16, 3, 3)
        keypoint_residual, limit_residual, predicted, pose = self.residuals(rotations, transl, shape, world)
        points = self.landmarks(rotations, predicted, shape, world)
        num_tracks, num_betas = shape.shape
        dtype, device = predicted.dtype, predicted.device
        # d keypoints / d betas: the rest-shape displacement of each bone, turned by its parent, summed down the chain
        rotated = torch.einsum("nkab,kbq->nkaq", world[:, self.bone_parents[1:]], self.bone_dirs[1:])  # (N, 20, 3, nb)
        rotated = torch.cat([self.bone_dirs[:1].expand(rotated.shape[0], 1, 3, num_betas), rotated], 1)
        shape_jac = torch.einsum("kl,nlaq->nkaq", self.path, rotated) * (MM / self.shape_scale)
        sum_bab = torch.zeros(num_tracks, num_betas, num_betas, dtype=dtype, device=device)
        sum_bag = torch.zeros(num_tracks, num_betas, dtype=dtype, device=device)
        track_c = torch.zeros(num_tracks, num_betas, num_betas, dtype=dtype, device=device)
        track_g = torch.zeros(num_tracks, num_betas, dtype=dtype, device=device)
        inv_a_b, inv_a_g = [], []
        for start in range(0, rotations.shape[0], CHUNK):
            chunk = slice(start, start + CHUNK)
            jac = self._frame_jacobian(predicted[chunk], world[chunk], points[chunk])  # (n, 63, 51)
            root_weight = self.weight[chunk][:, self.to_mano21].sqrt().repeat_interleave(3, 1)[..., None]
            jac = jac * root_weight
            residual = keypoint_residual[chunk].reshape(-1, 63)
            a = jac.transpose(1, 2) @ jac
            g = (jac.transpose(1, 2) @ residual[..., None])[..., 0]
            a, g = self._add_limits(a, g, pose[chunk], limit_residual[chunk])
            diagonal = torch.diagonal(a, dim1=1, dim2=2)
            a = a + torch.diag_embed(damping * diagonal + 1e-6)
            factor, failed = torch.linalg.cholesky_ex(a)
            if bool(failed.any()):  # round-off on nearly unconstrained frames: damp those harder
                extra = 1e-3 * diagonal.mean(-1, keepdim=True).clamp_min(1e-3) * (failed > 0)[:, None]
                factor = torch.linalg.cholesky(a + torch.diag_embed(extra.expand_as(diagonal)))
            inv_a_g.append(torch.cholesky_solve(g[..., None], factor)[..., 0])
            if fit_shape:
                shape_rows = (shape_jac[chunk].reshape(-1, 63, num_betas) * root_weight)
                b = jac.transpose(1, 2) @ shape_rows  # (n, 51, nb)
                inv_a_b.append(torch.cholesky_solve(b, factor))
                tracks = self.track[chunk]
                track_c.index_add_(0, tracks, shape_rows.transpose(1, 2) @ shape_rows)
                track_g.index_add_(0, tracks, (shape_rows.transpose(1, 2) @ residual[..., None])[..., 0])
                sum_bab.index_add_(0, tracks, b.transpose(1, 2) @ inv_a_b[-1])
                sum_bag.index_add_(0, tracks, (b.transpose(1, 2) @ inv_a_g[-1][..., None])[..., 0])
        inv_a_g = torch.cat(inv_a_g)
        if not fit_shape:
            return -inv_a_g, torch.zeros_like(shape)
        inv_a_b = torch.cat(inv_a_b)
        # shape prior shape_weight * T_h * |betas|^2 in scaled units
        prior = self.shape_weight * self.frames_per_track / self.shape_scale**2
        track_c = track_c + torch.diag_embed(prior[:, None].expand(-1, num_betas))
        track_g = track_g + prior[:, None] * shape * self.shape_scale
        schur = track_c - sum_bab
        schur = schur + torch.diag_embed(damping * torch.diagonal(schur, dim1=1, dim2=2).clamp_min(0) + 1e-6)
        shape_step = -torch.linalg.solve(schur, track_g - sum_bag)
        frame_step = -(inv_a_g + (inv_a_b @ shape_step[self.track][..., None])[..., 0])
        return frame_step, shape_step

    def _frame_jacobian(self, predicted, world, points=None) -> torch.Tensor:
        """d keypoints (mm) / d scaled frame variables: (n, 21, 3) MANO21, (n, 16, 3, 3) -> (n, 63, 51).

        A right increment d of joint j turns keypoint k by (W_j d) x (p_k - p_j): column c of the block is
        w_jc x (p_k - p_j), w_jc the c-th column of W_j. Only the 50 (keypoint, ancestor) pairs are nonzero.
        points (n, 21, 3) MANO21: where the tracked points are, if not at the keypoints themselves (points
        riding rigidly on each keypoint's parent bone, e.g. a detector's landmark convention)."""
        n = predicted.shape[0]
        keypoint, joint = self.pairs
        points = predicted if points is None else points
        offsets = points[:, keypoint] - predicted[:, joint]  # (n, P, 3)
        columns = world[:, joint].transpose(-1, -2)  # (n, P, 3 columns, 3)
        blocks = torch.linalg.cross(columns, offsets[:, :, None].expand_as(columns), dim=-1)  # (n, P, c, xyz)
        blocks = blocks * self.pair_scale[:, None, None]
        rotation_part = predicted.new_zeros(n, 21, 16, 3, 3)
        rotation_part[:, keypoint, joint] = blocks.transpose(-1, -2)  # (xyz, c)
        rotation_part = rotation_part.permute(0, 1, 3, 2, 4).reshape(n, 63, 48)
        translation_part = torch.eye(3, dtype=predicted.dtype, device=predicted.device).repeat(21, 1) * (MM / self.transl_scale)
        return torch.cat([rotation_part, translation_part.expand(n, 63, 3)], -1)

    def _add_limits(self, a, g, pose, limit_residual):
        """Add the joint-limit rows (each touches one joint's 3 rotation variables) to the normal equations."""
        active = (limit_residual != 0).to(a.dtype)  # (n, 15, 3)
        jac = (self.frames @ inverse_right_jacobian(pose)) * (self.limit_weight**0.5 / self.pose_scale)  # (n, 15, 3, 3)
        jac = jac * active[..., None]
        block_a = jac.transpose(-1, -2) @ jac  # (n, 15, 3, 3)
        block_g = (jac.transpose(-1, -2) @ limit_residual[..., None])[..., 0]
        n = a.shape[0]
        eye = torch.eye(15, dtype=a.dtype, device=a.device)
        block_diagonal = torch.einsum("njab,jk->njakb", block_a, eye).reshape(n, 45, 45)
        a = a + torch.nn.functional.pad(block_diagonal, (3, 3, 3, 3))
        g = g + torch.nn.functional.pad(block_g.reshape(n, 45), (3, 3))
        return a, g

    def apply(self, rotations, transl, shape, frame_step, shape_step):
        """New (rotations, transl, shape) after a step in scaled units."""
        increments = frame_step[:, :48].reshape(-1, 16, 3)
        scale = torch.full((16, 1), 1 / self.pose_scale, dtype=increments.dtype, device=increments.device)
        scale[0] = 1 / self.orient_scale
        rotations = rotations @ axis_angle_to_matrix(increments * scale)
        return rotations, transl + frame_step[:, 48:] / self.transl_scale, shape + shape_step / self.shape_scale


def levenberg_marquardt(problem: FrameProblem, orient, pose, transl, shape, iterations: int, fit_shape: bool = True):
    """Minimise problem.objective from the given start; returns (orient, pose, transl, shape)."""
    rotations = axis_angle_to_matrix(torch.cat([orient[:, None], pose], 1))
    damping = 1e-3
    with torch.no_grad():
        current = problem.objective(rotations, transl, shape)
        for _ in range(iterations):
            frame_step, shape_step = problem.step(rotations, transl, shape, damping, fit_shape)
            candidate = problem.apply(rotations, transl, shape, frame_step, shape_step)
            value = problem.objective(*candidate)
            if torch.isfinite(value) and value < current:
                improvement = (current - value) / current.clamp_min(1e-12)
                rotations, transl, shape = candidate
                current = value
                damping = max(damping / 3, 1e-7)
                if improvement < 1e-4:  # converged: the objective moved by less than 0.01 %
                    break
            else:
                damping *= 8
    orient = matrix_to_axis_angle(rotations[:, 0])
    pose = matrix_to_axis_angle(rotations[:, 1:])
    return orient, pose, transl, shape
