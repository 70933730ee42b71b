"""Variance maps from Var(x^0) per keypoint coordinate: joints (H, T, 21), mesh vertices (H, T, V) and
generalized forces (H, T, 51) (PAD-Hand eq. 17).

Joints: the sum of a keypoint's three coordinate variances, m² (the expected squared position error).

Vertices: a linearisation of keypoints -> vertices through the hand model's skinning. In the rest pose every
vertex is projected onto the bone segments of the joints it is skinned to (head joint -> child keypoint; the
wrist's part onto its nearest wrist -> knuckle segment), which writes it as an affine combination
v ≈ Σ_k M_vk p_k of keypoints (rows of M sum to 1). A vertex's standard deviation is then Σ_k M_vk σ_k, i.e.
the keypoint errors are taken as fully correlated along a bone (the refiner's errors are smooth in space);
a vertex at a keypoint gets exactly that keypoint's variance.

Forces: Var(F_t) = diag(J_F Var(x^0) J_Fᵀ) with J_F linearised at E[x^0] by its dominant term. F = M(q) q̈ + C + g
with q̈ from the (1, -2, 1) / h² stencil of the generalized coordinates, so ∂F_t/∂x_s ≈ c_s M(q_t) J_q(x_t) / h²,
where J_q maps a keypoint perturbation to the generalized coordinates of `handcli.physics` (wrist position in
the wrist frame, body-frame rotation increments). The dropped terms (∂C/∂q̇, ∂g/∂q, ∂M/∂q q̈, and the change
of J_q across the stencil's three frames) are a few per cent at 30 fps (tests/test_variance.py checks the
approximation against the exact `handcli.physics.banded_force_jacobian`). M(q_t) J_q(x_t) is computed on
every `stride`-th frame and held for the frames in between (it depends on the configuration, which changes
slowly; the variance itself enters at every frame).
"""

from __future__ import annotations

import numpy as np
import torch

from handcli.handmodels.kinematics import MANO21_PARENTS, MANO21_TO_CANONICAL, mirror_points
from handcli.physics.dynamics import GRAVITY_CAMERA_Y_DOWN

WRIST_SEGMENT_ENDS = (1, 5, 9, 13, 17)  # canonical: thumb CMC and the four knuckles


def joint_variance(coordinate_variance: np.ndarray) -> np.ndarray:
    """(..., 21, 3) per-coordinate variance -> (..., 21) per-keypoint variance (sum over x, y, z)."""
    return np.asarray(coordinate_variance).sum(-1)


# ------------------------------------------------------------------------------------------------ vertices
def vertex_weights(rest_vertices: np.ndarray, rest_keypoints: np.ndarray, skinning_weights: np.ndarray) -> np.ndarray:
    """(V, 21) affine weights of keypoints for every vertex (rows sum to 1).

    rest_vertices: (V, 3); rest_keypoints: (21, 3) canonical order; skinning_weights: (V, 16) MANO joint order.
    """
    canonical_of = {mano: canonical for canonical, mano in enumerate(MANO21_TO_CANONICAL)}
    num_vertices = len(rest_vertices)
    weights = np.zeros((num_vertices, 21))
    rows = np.arange(num_vertices)
    for joint in range(skinning_weights.shape[1]):
        head = canonical_of[joint]
        if joint == 0:
            tails = list(WRIST_SEGMENT_ENDS)
        else:
            tails = [canonical_of[child] for child, parent in enumerate(MANO21_PARENTS) if parent == joint]
        start = rest_keypoints[head]
        segments = rest_keypoints[tails] - start  # (S, 3)
        offsets = rest_vertices - start  # (V, 3)
        along = np.clip(offsets @ segments.T / (segments ** 2).sum(1), 0.0, 1.0)  # (V, S)
        closest = start + along[..., None] * segments  # (V, S, 3)
        nearest = np.linalg.norm(rest_vertices[:, None] - closest, axis=-1).argmin(1)  # (V,)
        fraction = along[rows, nearest]
        skin = skinning_weights[:, joint]
        weights[rows, head] += skin * (1 - fraction)
        np.add.at(weights, (rows, np.asarray(tails)[nearest]), skin * fraction)
    return weights / weights.sum(1, keepdims=True)


def hand_vertex_weights(model, betas: np.ndarray | None) -> np.ndarray:
    """`vertex_weights` of a HandModel's rest pose for a shape betas (nb,) (None: the template). (V, 21)."""
    with torch.no_grad():
        shape = torch.zeros(1, model.num_betas) if betas is None else torch.as_tensor(betas, dtype=torch.float32)[None]
        zeros = torch.zeros(1, 3)
        rest = model(zeros, torch.zeros(1, 15, 3), shape, zeros, True)
    return vertex_weights(rest.vertices[0].double().numpy(), rest.joints[0].double().numpy(),
                          model.skinning_weights.double().numpy())


def vertex_variance(var_joints: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(..., 21) keypoint variance, (V, 21) weights -> (..., V): (Σ_k M_vk σ_k)²."""
    std = np.sqrt(np.maximum(np.asarray(var_joints, np.float64), 0.0))
    return np.square(std @ weights.T)


# --------------------------------------------------------------------------------------------------- forces
JACOBIAN_CHUNK = 256  # knots whose force Jacobians are computed together (bounds the memory)
ACCELERATION_STENCIL = (1.0, -2.0, 1.0)  # on x_{s}, x_{s+1}, x_{s+2}, divided by h²
VELOCITY_STENCILS = {"first": (-3.0, 4.0, -1.0), "inner": (-1.0, 0.0, 1.0), "last": (1.0, -4.0, 3.0)}  # / 2h
OWN_SLOT = {"first": 0, "inner": 1, "last": 2}  # where frame t sits in its stencil


def stencil_frames(num_frames: int) -> np.ndarray:
    """(T, 3) the frames the derivatives of frame t are taken from (central inside, one-sided at the ends),
    as `handcli.physics.derivatives`."""
    start = np.clip(np.arange(num_frames) - 1, 0, num_frames - 3)
    return start[:, None] + np.arange(3)


def pose_of(keypoints3d: torch.Tensor, rest_joints21: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Analytic IK as rotations: (..., 21, 3) right hand -> (local rotations (..., 16, 3, 3), transl (..., 3))."""
    from handcli.fitting import analytic_ik
    from handcli.handmodels.kinematics import axis_angle_to_matrix

    orient, pose, transl = analytic_ik(keypoints3d, rest_joints21)
    return axis_angle_to_matrix(torch.cat([orient[..., None, :], pose], -2)), transl


def coordinate_jacobian(keypoints3d: torch.Tensor, rotations: torch.Tensor, rest_joints21: torch.Tensor,
                        step: float = 1e-6) -> torch.Tensor:
    """J_q of the analytic IK by forward differences in float64 (forward-mode AD through its SVDs is ~10x
    slower; the truncation error of a 1 µm step is ~1e-5 relative).

    keypoints3d: (C, 21, 3) right hand, float64; rotations: (C, 16, 3, 3) their IK rotations; rest_joints21:
    (21, 3) MANO21 order. Returns (C, 51, 63): keypoint perturbation -> [wrist position in the wrist frame,
    wrist and joint rotation increments in their own frames] (`handcli.physics` generalized coordinates).
    """
    from handcli.physics import rotation_log

    offsets = step * torch.eye(63, dtype=keypoints3d.dtype).reshape(63, 21, 3)
    moved, transl = pose_of(keypoints3d[:, None] + offsets, rest_joints21)  # (C, 63, ...)
    _, base_transl = pose_of(keypoints3d, rest_joints21)
    base = rotations[:, None]
    wrist = (base[..., 0, :, :].transpose(-1, -2) @ (transl - base_transl[:, None])[..., None])[..., 0]
    coordinates = torch.cat([wrist, rotation_log(base.transpose(-1, -2) @ moved).flatten(-2)], -1)  # (C, 63, 51)
    return (coordinates / step).transpose(-1, -2)


def partial_force_jacobians(keypoints3d: torch.Tensor, rest_joints21: torch.Tensor, inertia, fps: float,
                            frames: np.ndarray, gravity=GRAVITY_CAMERA_Y_DOWN) -> torch.Tensor:
    """∂F/∂(q̈, q̇, q) · J_q at some frames of a right-hand motion, each (51, 63).

    keypoints3d: (T, 21, 3) the whole motion, float64 (velocities and accelerations need the neighbours);
    frames: (C,) the frames to evaluate. Returns (C, 3, 51, 63): [M J_q, (∂τ/∂q̇) J_q, (∂τ/∂q) J_q] with the
    partial derivatives of RNEA's τ(q, q̇, q̈) (configuration perturbed on the right, as the velocities are).
    """
    from handcli.physics import generalized_derivatives, inverse_dynamics, mass_matrix

    rest16 = rest_joints21[:16]
    pick = torch.as_tensor(frames, dtype=torch.long)
    rotations, transl = pose_of(keypoints3d, rest_joints21)
    velocity, acceleration = generalized_derivatives(rotations, transl, fps)
    rotations, velocity, acceleration = rotations[pick], velocity[pick], acceleration[pick]
    jacobian = coordinate_jacobian(keypoints3d[pick], rotations, rest_joints21)
    dynamics = lambda r, v, a: inverse_dynamics(r, v, a, rest16, inertia, gravity)

    def turned(increments: torch.Tensor, r: torch.Tensor) -> torch.Tensor:  # R exp([δθ]×) to first order
        x, y, z = increments.reshape(16, 3).unbind(-1)
        skew = torch.stack([torch.stack([0 * x, -z, y], -1), torch.stack([z, 0 * x, -x], -1),
                            torch.stack([-y, x, 0 * x], -1)], -2)
        return r + r @ skew

    by_velocity = torch.func.vmap(torch.func.jacfwd(lambda v, r, a: dynamics(r, v, a)))(velocity, rotations,
                                                                                         acceleration)
    by_rotation = torch.func.vmap(torch.func.jacfwd(lambda d, r, v, a: dynamics(turned(d, r), v, a)))(
        torch.zeros(len(pick), 48, dtype=rotations.dtype), rotations, velocity, acceleration)
    by_configuration = torch.cat([torch.zeros_like(by_rotation[..., :3]), by_rotation], -1)  # position: no effect
    inertia_matrix = mass_matrix(rotations, rest16, inertia)
    return torch.stack([inertia_matrix @ jacobian, by_velocity @ jacobian, by_configuration @ jacobian], 1)


def force_variance(keypoints3d: np.ndarray, coordinate_variance: np.ndarray, fps: float, is_right: bool,
                   rest_joints21: torch.Tensor, inertia, stride: int = 8) -> np.ndarray:
    """Var(F) per frame and generalized-force dimension of one track (eq. 17, linearised J_F).

    keypoints3d: (T, 21, 3) E[x^0], metres, camera frame; coordinate_variance: (T, 21, 3) m²; rest_joints21:
    (21, 3) MANO21 order of the track's shape; inertia: its right-hand PartInertia; stride: the partial
    Jacobians are computed on every stride-th frame (and the first two and last two) and interpolated
    linearly in between. Returns (T, 51) float64 (N² and (N m)²). Fewer than 3 frames: zeros.
    """
    frames = len(keypoints3d)
    if frames < 3:
        return np.zeros((frames, 51))
    points = torch.as_tensor(np.asarray(keypoints3d), dtype=torch.float64)
    if not is_right:
        points = mirror_points(points)  # variances are unchanged by mirroring
    inner = np.arange(1, frames - 1)
    knots = np.unique(np.r_[inner[::max(1, stride)], inner[-1]])  # interior frames where J is computed
    computed = np.r_[0, knots, frames - 1]
    # in chunks of knots, kept as float32: the Jacobians of all knots at once (and RNEA's intermediates for
    # them) took 2.6 GB on a 10-minute clip; float32 holds them to ~1e-7, far below the variance's own error
    partial = np.concatenate([
        partial_force_jacobians(points, rest_joints21.double(), inertia.to(torch.float64), fps,
                                computed[begin:begin + JACOBIAN_CHUNK]).numpy().astype(np.float32)
        for begin in range(0, len(computed), JACOBIAN_CHUNK)])  # (C, 3, 51, 63)
    # interior frames: linear interpolation between the bracketing knots; the two ends: their own
    upper = np.clip(np.searchsorted(knots, inner), 1, max(len(knots) - 1, 1))
    lower = upper - 1 if len(knots) > 1 else upper * 0
    upper = np.minimum(upper, len(knots) - 1)
    span = np.maximum(knots[upper] - knots[lower], 1)
    weight = np.clip((inner - knots[lower]) / span, 0.0, 1.0)
    variance = np.asarray(coordinate_variance, np.float64).reshape(frames, 63)[stencil_frames(frames)]  # (T, 3, 63)
    out = np.zeros((frames, 51))
    for kind, rows, blocks_of in (
            ("first", np.array([0]), lambda rows: partial[:1]),
            ("last", np.array([frames - 1]), lambda rows: partial[-1:]),
            ("inner", inner, None)):
        velocity_stencil = VELOCITY_STENCILS[kind]
        for begin in range(0, len(rows), 512):  # bounded memory on long clips
            chunk = rows[begin:begin + 512]
            if blocks_of is not None:
                blocks = blocks_of(chunk)
            else:
                index = chunk - 1
                w = weight[index][:, None, None, None]
                blocks = (1 - w) * partial[1 + lower[index]] + w * partial[1 + upper[index]]
            for slot in range(3):
                block = (ACCELERATION_STENCIL[slot] * fps ** 2 * blocks[:, 0]
                         + velocity_stencil[slot] * fps / 2 * blocks[:, 1]
                         + (slot == OWN_SLOT[kind]) * blocks[:, 2])
                out[chunk] += np.einsum("tdn,tn->td", np.square(block), variance[chunk, slot])
    return out
