"""Conditional shift-diffusion schedule (PAD-Hand eqs. 2-6, ResShift's shifting sequence).

The forward chain moves a clean motion x towards its condition y: x^n ~ N(x + eta_n (y - x), kappa^2 eta_n I),
with eta_1 -> 0 and eta_N -> 1, so sampling starts from N(y, kappa^2 I) instead of pure noise and a handful of
steps (N = 4) suffice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ShiftSchedule:
    """eta_n, n = 1..N (index 0 holds eta_0 = 0), and the reverse-kernel coefficients of eq. 5.

    kappa is in the model's normalised units (see `conditions.POSITION_SCALE`).
    """

    num_steps: int = 4
    kappa: float = 0.1
    power: float = 0.3  # ResShift's p: how the sqrt(eta) grows between its end points
    eta_last: float = 0.999
    eta_first: float | None = None  # None: ResShift's min((0.04 / kappa)^2, 0.001)

    @property
    def etas(self) -> torch.Tensor:
        """(N + 1,) eta_0 = 0, eta_1 .. eta_N monotonically increasing to eta_last (float64)."""
        n = self.num_steps
        eta_first = self.eta_first if self.eta_first is not None else min((0.04 / self.kappa) ** 2, 0.001)
        if n == 1:
            return torch.tensor([0.0, self.eta_last], dtype=torch.float64)
        # geometric growth of sqrt(eta) along a power-warped step grid (ResShift eq. 10)
        warped = (torch.arange(n, dtype=torch.float64) / (n - 1)) ** self.power * (n - 1)
        base = math.exp(math.log(self.eta_last / eta_first) / (2 * (n - 1)))
        sqrt_eta = math.sqrt(eta_first) * base ** warped
        return torch.cat([torch.zeros(1, dtype=torch.float64), sqrt_eta ** 2])

    @property
    def alphas(self) -> torch.Tensor:
        """(N + 1,) alpha_n = eta_n - eta_{n-1} (alpha_0 unused, 0)."""
        etas = self.etas
        return torch.cat([torch.zeros(1, dtype=torch.float64), etas[1:] - etas[:-1]])

    def coefficients(self, step: int) -> tuple[float, float, float]:
        """(A_n, B_n, Sigma_n) of the reverse kernel N(A_n x^n + B_n x_hat, Sigma_n I) for step n in 1..N.

        Sigma_n is a variance (kappa^2 eta_{n-1}/eta_n alpha_n); at n = 1 it is 0 and A_1 = 0, so x^0 = x_hat.
        """
        etas, alphas = self.etas, self.alphas
        a = float(etas[step - 1] / etas[step])
        b = float(alphas[step] / etas[step])
        sigma = float(self.kappa ** 2 * etas[step - 1] / etas[step] * alphas[step])
        return a, b, sigma

    def skip_weights(self, baseline_std: float) -> torch.Tensor:
        """(N + 1,) 1 where x^n is already an accurate clean motion, else 0 (a hard EDM-style c_skip).

        x^n = x + eta_n (y - x) + kappa sqrt(eta_n) eps, so z_n = (x^n - eta_n y) / (1 - eta_n) is x plus white
        noise of std s_n = kappa sqrt(eta_n) / (1 - eta_n). Where s_n is below a tenth of the baseline's error
        (n = 1 with a small eta_1) the backbone keeps z_n and only corrects it; elsewhere any share of z_n would
        leak white noise (ruinous for acceleration and forces), so the backbone starts from the baseline.
        """
        etas = self.etas
        noise = self.kappa * etas.sqrt() / (1 - etas).clamp_min(1e-12)
        return (noise < 0.1 * baseline_std).to(etas.dtype)

    def q_sample(self, clean: torch.Tensor, condition: torch.Tensor, step: torch.Tensor,
                 noise: torch.Tensor) -> torch.Tensor:
        """Draw x^n from the marginal (eq. 3).

        clean, condition, noise: (B, ...); step: (B,) long in 1..N. Returns (B, ...).
        """
        eta = self.etas.to(clean.dtype).to(clean.device)[step].reshape(-1, *([1] * (clean.dim() - 1)))
        return clean + eta * (condition - clean) + self.kappa * eta.sqrt() * noise

    def prior_sample(self, condition: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x^N ~ N(y, kappa^2 eta_N I): the start of reverse sampling. (B, ...) -> (B, ...)."""
        eta = float(self.etas[-1])
        return condition + self.kappa * math.sqrt(eta) * noise
