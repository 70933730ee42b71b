"""Generalized velocities and accelerations of a sampled motion, by finite differences on SO(3).

For a rotation track R_t sampled every h seconds, D_t = log(R_tᵀ R_{t+1}) is the body-frame increment.
Around frame t, φ(s) = log(R_tᵀ R(t + s)) = s ω + s² ω̇ / 2 + O(s³) (ω, ω̇ in the body frame), and
log(R_tᵀ R_{t-1}) = -D_{t-1} exactly, so the central differences are

    ω_t = (D_t + D_{t-1}) / 2h,    ω̇_t = (D_t - D_{t-1}) / h²          (error O(h²))

and at the two ends the one-sided second-order formulas use φ(±h), φ(±2h):
ω_0 = (4 φ(h) - φ(2h)) / 2h,  ω̇_0 = (φ(2h) - 2 φ(h)) / h²  (the latter equals ω̇ at frame 1 to first order).
Translations use the same stencils on plain vectors.
"""

from __future__ import annotations

import torch

from handcli.errors import BadInput
from handcli.handmodels.kinematics import matrix_to_quaternion


def rotation_log(matrix: torch.Tensor) -> torch.Tensor:
    """SO(3) logarithm (..., 3, 3) -> axis-angle (..., 3), angle in [0, pi].

    Finite gradients everywhere, including the identity (static frames), for autograd and torch.func.
    """
    quat = matrix_to_quaternion(matrix)
    quat = torch.where(quat[..., :1] < 0, -quat, quat)
    w, xyz = quat[..., :1], quat[..., 1:]
    norm_sq = (xyz * xyz).sum(-1, keepdim=True)
    small = norm_sq < 1e-12
    # both branches must stay finite: a NaN in the unused branch of torch.where would still poison gradients
    norm = torch.sqrt(torch.where(small, torch.ones_like(norm_sq), norm_sq))
    scale = torch.where(small, 2.0 / w.clamp_min(0.5), 2.0 * torch.atan2(norm, w) / norm)
    return xyz * scale


def _central(increments: torch.Tensor, start_two: torch.Tensor, end_two: torch.Tensor, dt: float):
    """Velocity and acceleration stencils from forward increments.

    increments: (..., T-1, C), D_t for t = 0..T-2 (D_t = φ_t(h));
    start_two: (..., C) = φ_0(2h); end_two: (..., C) = φ_{T-1}(-2h).
    Returns (velocity, acceleration), each (..., T, C).
    """
    forward, backward = increments[..., 1:, :], increments[..., :-1, :]  # D_t and D_{t-1} for interior t
    first, last = increments[..., 0, :], increments[..., -1, :]
    velocity = torch.cat([
        ((4 * first - start_two) / (2 * dt))[..., None, :],
        (forward + backward) / (2 * dt),
        ((4 * last + end_two) / (2 * dt))[..., None, :],  # φ(-h) = -D_{T-2}; ω = -(4 φ(-h) - φ(-2h)) / 2h
    ], -2)
    acceleration = torch.cat([
        ((start_two - 2 * first) / dt**2)[..., None, :],
        (forward - backward) / dt**2,
        ((end_two + 2 * last) / dt**2)[..., None, :],
    ], -2)
    return velocity, acceleration


def angular_derivatives(rotations: torch.Tensor, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Body-frame angular velocity and acceleration of a rotation track.

    rotations: (..., T, 3, 3) with T >= 3 along the time axis -> (omega (..., T, 3), omega_dot (..., T, 3)).
    """
    increments = rotation_log(rotations[..., :-1, :, :].transpose(-1, -2) @ rotations[..., 1:, :, :])
    start_two = rotation_log(rotations[..., 0, :, :].transpose(-1, -2) @ rotations[..., 2, :, :])
    end_two = rotation_log(rotations[..., -1, :, :].transpose(-1, -2) @ rotations[..., -3, :, :])
    return _central(increments, start_two, end_two, dt)


def linear_derivatives(positions: torch.Tensor, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
    """positions: (..., T, 3) -> (velocity (..., T, 3), acceleration (..., T, 3)), same stencils as rotations."""
    increments = positions[..., 1:, :] - positions[..., :-1, :]
    start_two = positions[..., 2, :] - positions[..., 0, :]
    end_two = positions[..., -3, :] - positions[..., -1, :]
    return _central(increments, start_two, end_two, dt)


def generalized_derivatives(rotations: torch.Tensor, transl: torch.Tensor,
                            fps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized velocity and acceleration (layout of `handcli.physics.dynamics`) of a hand motion.

    rotations: (..., T, J, 3, 3) local rotations ([0] = wrist in the world frame); transl: (..., T, 3)
    (the wrist point moves with transl: it is the rest wrist plus transl); fps: frames per second.
    Returns (velocity, acceleration), each (..., T, 6 + 3 (J-1)).
    """
    if rotations.dim() < 4 or rotations.shape[-4] < 3:
        raise BadInput("physics needs at least 3 frames to take velocities and accelerations")
    if fps <= 0:
        raise BadInput(f"fps must be positive, got {fps}")
    dt = 1.0 / fps
    per_joint = rotations.movedim(-3, 0)  # (J, ..., T, 3, 3): every joint's track
    omega, omega_dot = angular_derivatives(per_joint, dt)  # (J, ..., T, 3)
    linear_velocity, linear_acceleration = linear_derivatives(transl, dt)
    root = rotations[..., 0, :, :]
    # wrist linear part in the wrist frame: v = Rᵀ ṗ and a = d/dt (Rᵀ ṗ) = Rᵀ p̈ - ω × v
    body_velocity = (root.transpose(-1, -2) @ linear_velocity[..., None])[..., 0]
    body_acceleration = ((root.transpose(-1, -2) @ linear_acceleration[..., None])[..., 0]
                         - torch.cross(omega[0], body_velocity, dim=-1))
    velocity = torch.cat([body_velocity, omega.movedim(0, -2).flatten(-2)], -1)
    acceleration = torch.cat([body_acceleration, omega_dot.movedim(0, -2).flatten(-2)], -1)
    return velocity, acceleration
