"""Fill frames without observations from their valid neighbours (vectorised over tracks and frames)."""

from __future__ import annotations

import torch

from handcli.handmodels.kinematics import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_quaternion


def neighbour_weights(valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every frame the previous and next valid frame and the blend towards the next one.

    valid (H, T) bool -> (previous (H, T) long, following (H, T) long, alpha (H, T) float). Before the first
    valid frame both neighbours are the first valid frame, after the last both are the last; valid frames are
    their own neighbours. Tracks without valid frames point at frame 0 (callers decide what that means).
    """
    frames = valid.shape[-1]
    index = torch.arange(frames, device=valid.device).expand_as(valid)
    previous = torch.where(valid, index, torch.full_like(index, -1)).cummax(-1).values
    following = torch.where(valid, index, torch.full_like(index, frames)).flip(-1).cummin(-1).values.flip(-1)
    previous = torch.where(previous < 0, following, previous)
    following = torch.where(following >= frames, previous, following)
    previous, following = previous.clamp(0, frames - 1), following.clamp(0, frames - 1)
    span = (following - previous).clamp_min(1)
    alpha = ((index - previous).clamp_min(0) / span).to(torch.get_default_dtype())
    return previous, following, alpha


def _gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (H, T, ...) picked at frames index (H, T)."""
    expanded = index.reshape(*index.shape, *[1] * (values.dim() - 2)).expand_as(values)
    return torch.gather(values, 1, expanded)


def fill_linear(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """values (H, T, ...) with invalid frames replaced by linear interpolation; all-invalid tracks -> zeros."""
    previous, following, alpha = neighbour_weights(valid)
    alpha = alpha.to(values.dtype).reshape(*alpha.shape, *[1] * (values.dim() - 2))
    filled = (1 - alpha) * _gather(values, previous) + alpha * _gather(values, following)
    filled = torch.where(valid.reshape(*valid.shape, *[1] * (values.dim() - 2)), values, filled)
    return torch.where(valid.any(-1).reshape(-1, *[1] * (values.dim() - 1)), filled, torch.zeros_like(values))


def fill_rotations(axis_angle: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """axis_angle (H, T, ..., 3) with invalid frames replaced by normalised quaternion interpolation."""
    previous, following, alpha = neighbour_weights(valid)
    quat = matrix_to_quaternion(axis_angle_to_matrix(axis_angle))
    q0, q1 = _gather(quat, previous), _gather(quat, following)
    q1 = torch.where((q0 * q1).sum(-1, keepdim=True) < 0, -q1, q1)  # shortest way round
    alpha = alpha.to(quat.dtype).reshape(*alpha.shape, *[1] * (quat.dim() - 2))
    blended = (1 - alpha) * q0 + alpha * q1
    blended = blended / blended.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    filled = matrix_to_axis_angle(_quaternion_to_matrix(blended))
    keep = valid.reshape(*valid.shape, *[1] * (axis_angle.dim() - 2))
    filled = torch.where(keep, axis_angle, filled)
    return torch.where(valid.any(-1).reshape(-1, *[1] * (axis_angle.dim() - 1)), filled, torch.zeros_like(axis_angle))


def _quaternion_to_matrix(quat: torch.Tensor) -> torch.Tensor:
    """(..., 4) unit (w, x, y, z) -> (..., 3, 3)."""
    w, x, y, z = quat.unbind(-1)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    return torch.stack(rows, -1).reshape(*quat.shape[:-1], 3, 3)
