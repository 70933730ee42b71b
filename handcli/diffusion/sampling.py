"""Reverse sampling of the conditional shift diffusion (PAD-Hand eq. 13), batched over windows."""

from __future__ import annotations

import math

import torch

from handcli.diffusion.conditions import Conditions
from handcli.diffusion.model import RefinerBackbone
from handcli.diffusion.schedule import ShiftSchedule


def reverse_steps(backbone: RefinerBackbone, schedule: ShiftSchedule, state: torch.Tensor, conditions: Conditions,
                  from_step: int, generator: torch.Generator | None = None, stop_at: int = 0,
                  stochastic: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the reverse chain from x^{from_step} down to x^{stop_at}.

    state: (B, W, 21, 3) x^n in model units. Returns (x^{stop_at} (B, W, 21, 3), motion-state logits of the
    last backbone call (B, W, num_states) or None). At n = 1, A_1 = Sigma_1 = 0: x^0 is the clean estimate.
    stochastic=False follows the mean path E[x^{n-1}] = A_n E[x^n] + B_n x_hat (PAD-Hand eq. 16).
    """
    logits = None
    for step in range(from_step, stop_at, -1):
        steps = torch.full((state.shape[0],), step, dtype=torch.long, device=state.device)
        clean, logits = backbone(state, conditions, steps)
        a, b, variance = schedule.coefficients(step)
        state = a * state + b * clean
        if stochastic and variance > 0:
            noise = torch.randn(state.shape, generator=generator, dtype=state.dtype, device=state.device)
            state = state + math.sqrt(variance) * noise
    return state, logits


def sample(backbone: RefinerBackbone, schedule: ShiftSchedule, conditions: Conditions,
           generator: torch.Generator | None = None, stochastic: bool = True,
           direct: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw x^0 ~ p(x | y): start at N(y, kappa^2 I) and take all N reverse steps; with stochastic=False,
    the mean path from E[x^N] = y instead (deterministic; PAD-Hand's E[x^0] of eq. 16).

    direct=True returns the backbone's first clean estimate x_hat = f(y, y, N) (one network call; the
    posterior-mean estimate the n = N training step regresses on).

    Returns (x^0 (B, W, 21, 3) model units, motion-state logits (B, W, num_states)).
    """
    condition = conditions.keypoints3d
    if direct:
        steps = torch.full((condition.shape[0],), schedule.num_steps, dtype=torch.long, device=condition.device)
        return backbone(condition, conditions, steps)
    if not stochastic:
        return reverse_steps(backbone, schedule, condition, conditions, schedule.num_steps, stochastic=False)
    noise = torch.randn(condition.shape, generator=generator, dtype=condition.dtype, device=condition.device)
    start = schedule.prior_sample(condition, noise)
    return reverse_steps(backbone, schedule, start, conditions, schedule.num_steps, generator)
