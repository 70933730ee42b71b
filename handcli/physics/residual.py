"""Euler–Lagrange residuals and losses of PAD-Hand (§3.3, eq. 8-10, 17; App. C.5, eq. 28).

F(x) = M(q) q̈ + C(q, q̇) + g(q) is the generalized force that explains a motion x (inverse dynamics,
`sequence_dynamics`). The hand model has no contacts, so the "pseudo-force" F̂ of eq. 8 (PAD-Hand follows
PhysPT [67]) is the same inverse dynamics applied to the ground-truth motion: F̂ = F(x_gt). Then

    Z_t    = F_t(x) - F̂_t                                   (eq. 8)
    L^D_EL = Σ_t ||Z_t||_1                                   (deterministic penalty, ablation)
    L_EL   = ||Z(x0)||² / (2 σ_n)                            (eq. 10, virtual-observable NLL, σ_n a variance)
    R(q)   = (1/T) Σ_t ||F_t(x) - F̄_t||_1,  F̄ = F(x_gt)     (eq. 28)
    Var(F) ≈ J_F Var(x) J_Fᵀ,  J_F = ∂F/∂x                  (eq. 17; F̂ is a constant shift)

Forces mix units (N for the wrist force, N m for torques); every function takes optional `dof_weights`
(D,) to rescale the 51 components, identity by default as in the paper.
"""

from __future__ import annotations

from typing import Callable

import torch


def euler_lagrange_residual(forces: torch.Tensor, pseudo_forces: torch.Tensor) -> torch.Tensor:
    """Z = F(x) - F̂ (eq. 8): forces, pseudo_forces (..., T, D) -> (..., T, D)."""
    return forces - pseudo_forces


def _weighted(residual: torch.Tensor, dof_weights: torch.Tensor | None) -> torch.Tensor:
    return residual if dof_weights is None else residual * dof_weights


def el_nll_loss(residual: torch.Tensor, sigma: torch.Tensor | float,
                dof_weights: torch.Tensor | None = None) -> torch.Tensor:
    """L_EL (eq. 10): Σ_{t,d} Z² / (2 σ), averaged over the batch.

    residual: (B, T, D) (or (T, D)); sigma: variance of the virtual observable, a float or (B,) per sample
    (PAD-Hand: σ_n = Σ_n / c at diffusion step n). Returns a scalar.
    """
    squared = _weighted(residual, dof_weights).square().sum((-1, -2))  # (B,) or ()
    return (squared / (2 * torch.as_tensor(sigma, dtype=residual.dtype, device=residual.device))).mean()


def el_l1_loss(residual: torch.Tensor, dof_weights: torch.Tensor | None = None) -> torch.Tensor:
    """L^D_EL: Σ_t ||Z_t||_1, averaged over the batch. residual: (B, T, D) or (T, D) -> scalar."""
    return _weighted(residual, dof_weights).abs().sum((-1, -2)).mean()


def el_residual_metric(forces: torch.Tensor, reference_forces: torch.Tensor,
                       dof_weights: torch.Tensor | None = None) -> torch.Tensor:
    """R(q) (eq. 28): (1/T) Σ_t ||F_t - F̄_t||_1 per sequence.

    forces: (..., T, D) of the evaluated motion; reference_forces: (..., T, D) of the ground truth.
    Returns (...,) in the forces' units (N and N m mixed unless dof_weights says otherwise).
    """
    return _weighted(forces - reference_forces, dof_weights).abs().sum(-1).mean(-1)


def force_jacobian(force_fn: Callable[[torch.Tensor], torch.Tensor], motion: torch.Tensor,
                   forward_mode: bool = True) -> torch.Tensor:
    """J_F = ∂F/∂x at `motion` (eq. 17), as a (F.numel(), x.numel()) matrix.

    force_fn: maps motion (any shape, e.g. (T, 16, 3) axis-angle or (T, 21, 3) keypoints) to forces (T, D),
    written with out-of-place torch ops (all of `handcli.physics` is). Forward mode (torch.func.jacfwd) is the
    default since inputs and outputs are of similar size; forward_mode=False uses torch.func.jacrev.
    """
    transform = torch.func.jacfwd if forward_mode else torch.func.jacrev
    jacobian = transform(force_fn)(motion)  # (*F.shape, *x.shape)
    return jacobian.reshape(-1, motion.numel())


def banded_force_jacobian(force_fn: Callable[[torch.Tensor], torch.Tensor], motion: torch.Tensor) -> torch.Tensor:
    """The non-zero blocks of J_F for a per-frame force with a 3-frame finite-difference stencil.

    The force of frame t depends only on motion frames s(t) .. s(t) + 2, s(t) = clamp(t - 1, 0, T - 3) (central
    differences inside, one-sided ones at the ends, as `sequence_dynamics`), so frames t ≡ c (mod 3) can be
    perturbed together: 3 N forward-mode products instead of T N (N = values per frame).
    force_fn: motion (T, ...) -> forces (T, D); motion: (T, ...) with T >= 3.
    Returns blocks (T, D, 3, N): blocks[t, :, k] = ∂F_t / ∂x_{s(t) + k}, x flattened per frame.
    """
    frames = motion.shape[0]
    per_frame = motion[0].numel()
    colour = torch.arange(frames, device=motion.device) % 3
    # tangent (c, i) moves value i of every frame of colour c
    tangents = (colour[None, :, None] == torch.arange(3, device=motion.device)[:, None, None]).to(motion.dtype)
    tangents = tangents[:, None] * torch.eye(per_frame, dtype=motion.dtype, device=motion.device)[None, :, None]
    tangents = tangents.reshape(3 * per_frame, *motion.shape)  # (3 N, T, ...)
    pushforward = lambda tangent: torch.func.jvp(force_fn, (motion,), (tangent,))[1]
    products = torch.func.vmap(pushforward)(tangents).unflatten(0, (3, per_frame))  # (3, N, T, D)
    start = (torch.arange(frames, device=motion.device) - 1).clamp(0, frames - 3)
    source = start[:, None] + torch.arange(3, device=motion.device)  # (T, 3) frames each force depends on
    blocks = products[colour[source], :, torch.arange(frames, device=motion.device)[:, None]]  # (T, 3, N, D)
    return blocks.permute(0, 3, 1, 2)


def banded_force_variance(blocks: torch.Tensor, motion_variance: torch.Tensor) -> torch.Tensor:
    """Diagonal of J Var(x) Jᵀ (eq. 17) from `banded_force_jacobian` blocks.

    blocks: (T, D, 3, N); motion_variance: (T, ...) with N values per frame. Returns (T, D).
    """
    frames = blocks.shape[0]
    start = (torch.arange(frames, device=blocks.device) - 1).clamp(0, frames - 3)
    source = start[:, None] + torch.arange(3, device=blocks.device)
    variance = motion_variance.reshape(frames, -1).to(blocks.dtype)[source]  # (T, 3, N)
    return torch.einsum("tdkn,tkn->td", blocks.square(), variance)


def force_variance(jacobian: torch.Tensor, motion_variance: torch.Tensor) -> torch.Tensor:
    """Diagonal of J Var(x) Jᵀ for a diagonal Var(x) (eq. 17).

    jacobian: (N_F, N_x); motion_variance: (N_x,) or any shape with N_x elements. Returns (N_F,).
    """
    return jacobian.square() @ motion_variance.reshape(-1).to(jacobian.dtype)
