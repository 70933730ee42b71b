"""Variance of the refined motion: the backbone's Laplace variance carried through the reverse diffusion
(PAD-Hand Algorithm 1, eqs. 13-16), by moment matching with S Monte Carlo samples per step.

Reverse step (eq. 13): x^{n-1} = A_n x^n + B_n x̂ + sqrt(Σ_n) ε, x̂ ~ N(f_φ(x^n), diag γ²(x^n, y, n)). Then

    E[x^{n-1}]   = A_n E[x^n] + B_n E[x̂]                                               (eq. 16)
    Var(x^{n-1}) = A_n² Var(x^n) + B_n² Var(x̂) + Σ_n + 2 A_n B_n Cov(x^n, x̂)             (eq. 14)
    Cov(x^n, x̂)  ≈ mean_i(x^{n,i} X̂^i) - mean_i(x^{n,i}) mean_i(X̂^i),  X̂^i = f_φ(x^{n,i})  (eq. 15)

with the S samples x^{n,i} drawn from N(E[x^n], Var(x^n)) (Algorithm 1, line 9). Choices the paper leaves
open, made explicit here:
* The chain starts at the prior's mean, E[x^N] = y, Var(x^N) = 0 (Algorithm 1 starts from one draw with zero
  variance), so the first step needs no samples.
* E[x̂] and γ² are taken at the mean, f_φ(E[x^n]) and γ²(E[x^n], y, n) (first order in Var(x^n)): the mean
  then follows the refiner's own deterministic path, E[x^0] is what refine returns, and the condition's
  reliability covariates are not polluted by the sampling noise of the states.
* Var(x̂) by the law of total variance: γ² + Var_i(X̂^i), the Laplace term plus the spread of the backbone's
  output over the state's samples.
At n = 1, A_1 = Σ_1 = 0 and B_1 = 1, so Var(x^0) = Var(x̂) of the last step. Coordinates are treated as
independent (diagonal variances), as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from handcli.diffusion.conditions import Conditions
from handcli.diffusion.model import RefinerBackbone
from handcli.diffusion.schedule import ShiftSchedule
from handcli.variance.posterior import VariancePosterior
from handcli.variance.reliability import condition_covariates


@dataclass
class Propagation:
    """mean: (B, W, 21, 3) E[x^0]; variance: (B, W, 21, 3) Var(x^0); both model units (squared)."""

    mean: torch.Tensor
    variance: torch.Tensor


def repeat_conditions(conditions: Conditions, times: int) -> Conditions:
    """The conditions of B windows repeated `times` times along the batch (sample-major: row s * B + b)."""
    values = {}
    for field in fields(conditions):
        value = getattr(conditions, field.name)
        values[field.name] = value.repeat(times, *([1] * (value.dim() - 1)))
    return Conditions(**values)


def slice_conditions(conditions: Conditions, rows: slice) -> Conditions:
    return Conditions(**{field.name: getattr(conditions, field.name)[rows] for field in fields(conditions)})


def backbone_outputs(backbone: RefinerBackbone, states: torch.Tensor, conditions: Conditions, step: int,
                     chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and X̂ = f_φ(x^n) of a batch of states. states: (R, W, 21, 3); conditions: of R rows.
    Returns (features (R, W, D), X̂ (R, W, 21, 3))."""
    features, predictions = [], []
    for begin in range(0, states.shape[0], chunk):
        rows = slice(begin, begin + chunk)
        part = slice_conditions(conditions, rows)
        steps = torch.full((states[rows].shape[0],), step, dtype=torch.long, device=states.device)
        features.append(backbone.features(states[rows], part, steps))
        predictions.append(backbone.decode(features[-1], part, states[rows], steps))
    return torch.cat(features), torch.cat(predictions)


@torch.inference_mode()
def propagate(backbone: RefinerBackbone, schedule: ShiftSchedule, posterior: VariancePosterior,
              conditions: Conditions, samples: int = 20, generator: torch.Generator | None = None,
              chunk: int = 512, direct: bool = False) -> Propagation:
    """Algorithm 1 for B windows: E[x^0] and Var(x^0) per coordinate, model units.

    conditions: of B windows of W frames; samples: S Monte Carlo samples per step (S >= 2); direct: the
    refiner returns its first clean estimate f_φ(y, y, N) instead of running the chain, so only that step is
    taken (A = Σ = 0, B = 1: the variance is γ²(y, y, N), no sampling needed).
    """
    mean = conditions.keypoints3d  # (B, W, 21, 3)
    variance = torch.zeros_like(mean)
    repeated = None
    for step in range(schedule.num_steps, 0, -1):
        a, b, sigma = (0.0, 1.0, 0.0) if direct else schedule.coefficients(step)
        features, predicted = backbone_outputs(backbone, mean, conditions, step, chunk)
        predicted_variance = posterior.predictive_variance(features, condition_covariates(conditions, predicted),
                                                           step)
        covariance = torch.zeros_like(mean)
        if bool((variance > 0).any()):
            noise = torch.randn((samples,) + mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
            states = mean + variance.sqrt() * noise  # (S, B, W, 21, 3)
            if repeated is None:  # built once, and only when a step needs samples
                repeated = repeat_conditions(conditions, samples)
            _, outputs = backbone_outputs(backbone, states.flatten(0, 1), repeated, step, chunk)
            outputs = outputs.unflatten(0, (samples, -1))
            predicted_variance = predicted_variance + outputs.var(0, unbiased=False)
            covariance = (states * outputs).mean(0) - states.mean(0) * outputs.mean(0)
        variance = (a * a * variance + b * b * predicted_variance + sigma + 2 * a * b * covariance).clamp_min(0)
        mean = a * mean + b * predicted
        if direct:
            break
    return Propagation(mean, variance)
