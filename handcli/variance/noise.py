"""Heteroscedastic aleatoric variance of the refiner's prediction x̂, fitted on the head's residuals.

The residual r_j = x_j - x̂_j of joint j splits into a whole-hand shift s = mean_j r_j and the articulation
l_j = r_j - s, which behave differently: the shift carries the depth drift of monocular estimates (which no
observable predicts frame by frame), the articulation carries finger outliers and jitter. Per diffusion step n,
each gets a log-linear variance in the condition's reliability covariates ψ (handcli.variance.reliability):

    log σ²_s   = a_nᵀ [ψ̄_infilled, ψ̄_distance, 1]   (one value, shared by x, y, z)
    log σ²_l,j = b_njᵀ [ψ_j, 1]                       (per joint, shared by x, y, z)
    Var(r_jc)  = σ²_s + σ²_l,j

Each is fitted by Newton's method on the Gaussian negative log likelihood of its residuals (a convex problem).
The shift uses only where the observations are (a frame-level disagreement of the whole hand with the model is
the part of the depth noise the model removed, and says nothing about the part it kept); the penultimate
features are left out of both (they enter γ² through the Laplace term). docs/variance.md has the measurements
behind both choices.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from handcli.variance.laplace import with_bias
from handcli.variance.reliability import DISTANCE, INFILLED

SHIFT_COLUMNS = (INFILLED, DISTANCE)


def fit_log_linear_noise(design: torch.Tensor, squared_residuals: torch.Tensor, ridge: float = 1e-3,
                         iterations: int = 50) -> torch.Tensor:
    """log σ²(z) = aᵀ z by Newton's method on the Gaussian negative log likelihood of residuals.

    design: (N, P), its last column constant 1; squared_residuals: (N, C) r² of C outputs sharing the noise.
    Minimises Σ_n Σ_c ½ (η_n + r²_nc e^{-η_n}) / N + ½ ridge |a|², η = design a (convex). Returns (P,) float64.
    """
    design = design.to(torch.float64)
    totals = squared_residuals.to(torch.float64).sum(-1)  # (N,)
    per_row = squared_residuals.shape[-1]
    rows, dims = design.shape
    eye = torch.eye(dims, dtype=torch.float64)

    def objective(a: torch.Tensor) -> torch.Tensor:
        eta = design @ a
        return 0.5 * (per_row * eta + totals * torch.exp(-eta)).mean() + 0.5 * ridge * a @ a

    weights = torch.zeros(dims, dtype=torch.float64)
    weights[-1] = torch.log(totals.mean() / per_row)  # the homoscedastic solution
    current = objective(weights)
    for _ in range(iterations):
        scaled = totals * torch.exp(-(design @ weights))
        gradient = 0.5 * (per_row - scaled) @ design / rows + ridge * weights
        hessian = 0.5 * (design * scaled[:, None]).T @ design / rows + ridge * eye
        step = torch.linalg.solve(hessian, gradient)
        size, improved = 1.0, False
        for _ in range(30):  # backtracking: a full Newton step can overshoot the exponential
            trial = weights - size * step
            value = objective(trial)
            if value <= current:
                improved = True
                break
            size *= 0.5
        if not improved:
            break
        weights, gain, current = trial, float(current - value), value
        if gain < 1e-12:
            break
    return weights


@dataclass
class NoiseModel:
    """shift_weights: (N, len(SHIFT_COLUMNS) + 1) and local_weights: (N, 21, Q + 1), for steps n = 1..N
    (row n - 1)."""

    shift_weights: torch.Tensor
    local_weights: torch.Tensor

    @classmethod
    def fit(cls, rows: list[tuple[torch.Tensor, torch.Tensor]], ridge: float = 1e-3) -> "NoiseModel":
        """rows[n - 1] = (residuals (M, 21, 3), covariates (M, 21, Q)) of step n."""
        shift_weights, local_weights = [], []
        for residuals, covariates in rows:
            residuals, covariates = residuals.to(torch.float64), covariates.to(torch.float64)
            shift = residuals.mean(1)  # (M, 3)
            local = residuals - shift[:, None]
            shift_design = with_bias(covariates.mean(1)[:, list(SHIFT_COLUMNS)])
            shift_weights.append(fit_log_linear_noise(shift_design, shift.square(), ridge))
            local_weights.append(torch.stack([fit_log_linear_noise(with_bias(covariates[:, j]),
                                                                   local[:, j].square(), ridge)
                                              for j in range(residuals.shape[1])]))
        return cls(torch.stack(shift_weights), torch.stack(local_weights))

    def components(self, covariates: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(σ²_s (...,), σ²_l (..., 21)) per coordinate at step n; covariates (..., 21, Q)."""
        shift_weights = self.shift_weights[step - 1].to(covariates.dtype)
        local_weights = self.local_weights[step - 1].to(covariates.dtype)
        shift = with_bias(covariates.mean(-2)[..., list(SHIFT_COLUMNS)]) @ shift_weights
        local = (with_bias(covariates) * local_weights).sum(-1)
        return torch.exp(shift), torch.exp(local)

    def variance(self, covariates: torch.Tensor, step: int) -> torch.Tensor:
        """Var(r) per coordinate at step n: covariates (..., 21, Q) -> (..., 21, 3)."""
        shift, local = self.components(covariates, step)
        return (shift[..., None] + local)[..., None].expand(*local.shape, 3)

    def state_dict(self) -> dict:
        return {"shift_weights": self.shift_weights, "local_weights": self.local_weights}

    @classmethod
    def from_state_dict(cls, state: dict) -> "NoiseModel":
        return cls(state["shift_weights"].to(torch.float64), state["local_weights"].to(torch.float64))
