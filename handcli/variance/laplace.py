"""Last-layer Laplace approximation of the refiner's linear head (PAD-Hand §3.4, eq. 12), in closed form.

The head is x̂ = s + W φ + b with penultimate features φ (D,), K = 63 outputs and s the backbone's non-linear
part (handcli.diffusion.model: `skip_base`), which does not depend on W, b. With the body frozen,
output k is a Bayesian linear regression on φ̃ = [φ, 1] (D1 = D + 1 values): Gaussian likelihood with noise σ²_k
and an isotropic Gaussian prior of precision λ centred at zero. For a linear head the Hessian of the negative
log posterior equals the generalized Gauss-Newton matrix,

    H_k = G / σ²_k + λ I,    G = Σ_n φ̃_n φ̃_nᵀ  (the feature outer products over the fitting data),

so the posterior is N(θ*_k, H_k⁻¹) about the trained weights θ*_k, and the predictive variance of output k is

    γ²_k = φ̃ᵀ H_k⁻¹ φ̃  (epistemic)  +  σ²_k  (aleatoric).

All outputs share G, so one eigendecomposition G = U diag(s) Uᵀ gives every H_k⁻¹ = U diag(1 / (s / σ²_k + λ)) Uᵀ.
λ maximises the Laplace marginal likelihood (MacKay's evidence) over a log grid refined by golden section.

The aleatoric σ²_k here is the mean residual per output; `handcli.variance.noise` replaces it by a
heteroscedastic one that depends on the condition. The GGN keeps the mean noise so all outputs share one
eigenbasis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG_PRIOR_GRID = torch.linspace(-6.0, 8.0, 57, dtype=torch.float64)  # log10 λ candidates


def with_bias(features: torch.Tensor) -> torch.Tensor:
    """(..., D) -> (..., D + 1): append the constant feature of the bias."""
    return torch.cat([features, torch.ones_like(features[..., :1])], -1)


@dataclass
class GramStatistics:
    """Sufficient statistics of the fitting data, accumulated batch by batch.

    gram: (D1, D1) Σ φ̃ φ̃ᵀ; squared_residuals: (K,) Σ r²; count: rows seen. float64.
    """

    gram: torch.Tensor
    squared_residuals: torch.Tensor
    count: int = 0

    @classmethod
    def empty(cls, feature_dim: int, num_outputs: int) -> "GramStatistics":
        return cls(torch.zeros(feature_dim + 1, feature_dim + 1, dtype=torch.float64),
                   torch.zeros(num_outputs, dtype=torch.float64))

    def add(self, features: torch.Tensor, residuals: torch.Tensor) -> None:
        """features: (N, D); residuals: (N, K) target minus the trained head's prediction."""
        augmented = with_bias(features.reshape(-1, features.shape[-1]).to(torch.float64))
        self.gram += augmented.T @ augmented
        self.squared_residuals += residuals.reshape(-1, residuals.shape[-1]).to(torch.float64).square().sum(0)
        self.count += augmented.shape[0]

    @property
    def noise(self) -> torch.Tensor:
        """(K,) maximum-likelihood noise variance per output: the mean squared residual."""
        return self.squared_residuals / max(self.count, 1)


def log_evidence(log10_prior: float | torch.Tensor, eigenvalues: torch.Tensor, noise: torch.Tensor,
                 weight_norms: torch.Tensor) -> torch.Tensor:
    """Laplace log marginal likelihood of all outputs, up to a constant independent of λ.

    log Z_k = log p(D | θ*_k) - λ |θ*_k|² / 2 + (D1 / 2) log λ - ½ Σ_i log(s_i / σ²_k + λ);
    the data term does not depend on λ and is dropped. eigenvalues: (D1,) of G; noise: (K,) σ²_k;
    weight_norms: (K,) |θ*_k|² of the trained head (bias included).
    """
    prior = 10.0 ** torch.as_tensor(log10_prior, dtype=torch.float64)
    dims = eigenvalues.numel()
    precisions = eigenvalues[None, :].clamp_min(0) / noise[:, None] + prior  # (K, D1)
    per_output = -0.5 * prior * weight_norms + 0.5 * dims * torch.log(prior) - 0.5 * torch.log(precisions).sum(1)
    return per_output.sum()


def optimise_prior_precision(eigenvalues: torch.Tensor, noise: torch.Tensor, weight_norms: torch.Tensor) -> float:
    """λ maximising `log_evidence`: the best point of LOG_PRIOR_GRID, then golden-section search around it."""
    values = torch.stack([log_evidence(g, eigenvalues, noise, weight_norms) for g in LOG_PRIOR_GRID])
    best = int(values.argmax())
    low = float(LOG_PRIOR_GRID[max(best - 1, 0)])
    high = float(LOG_PRIOR_GRID[min(best + 1, len(LOG_PRIOR_GRID) - 1)])
    ratio = (math.sqrt(5) - 1) / 2
    objective = lambda g: float(log_evidence(g, eigenvalues, noise, weight_norms))
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = objective(a), objective(b)
    for _ in range(40):
        if fa > fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = objective(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = objective(b)
    return 10.0 ** (0.5 * (low + high))


@dataclass
class LastLayerLaplace:
    """The fitted posterior of the head and its predictive variance γ² (eq. 12), in model units squared.

    eigenvectors: (D1, D1), eigenvalues: (D1,) of the Gram matrix G; noise: (K,) mean σ²_k (homoscedastic);
    prior_precision: λ. The heteroscedastic aleatoric term is `handcli.variance.noise.NoiseModel`.
    """

    eigenvectors: torch.Tensor
    eigenvalues: torch.Tensor
    noise: torch.Tensor
    prior_precision: float

    @classmethod
    def from_statistics(cls, statistics: GramStatistics, head_weight: torch.Tensor, head_bias: torch.Tensor,
                        prior_precision: float | None = None, effective_rows: float | None = None
                        ) -> "LastLayerLaplace":
        """Posterior from accumulated statistics and the trained head (weight (K, D), bias (K,)).

        effective_rows: how many independent observations the rows amount to (default: all of them); the
        Gram matrix is scaled by effective_rows / count (rows that move together must not count as many).
        """
        scale = 1.0 if effective_rows is None else effective_rows / max(statistics.count, 1)
        eigenvalues, eigenvectors = torch.linalg.eigh(statistics.gram * scale)
        eigenvalues = eigenvalues.clamp_min(0)
        noise = statistics.noise.clamp_min(1e-12)
        theta = torch.cat([head_weight, head_bias[:, None]], 1).to(torch.float64)
        if prior_precision is None:
            prior_precision = optimise_prior_precision(eigenvalues, noise, theta.square().sum(1))
        return cls(eigenvectors, eigenvalues, noise, float(prior_precision))

    def posterior_covariance(self, output: int) -> torch.Tensor:
        """(D1, D1) H_k⁻¹ of one output (for tests and inspection)."""
        scale = 1.0 / (self.eigenvalues / self.noise[output] + self.prior_precision)
        return (self.eigenvectors * scale) @ self.eigenvectors.T

    def epistemic(self, features: torch.Tensor) -> torch.Tensor:
        """φ̃ᵀ H_k⁻¹ φ̃ for every output. features (..., D) -> (..., K), same dtype as features."""
        projected = with_bias(features).to(self.eigenvectors.dtype) @ self.eigenvectors  # (..., D1)
        scale = 1.0 / (self.eigenvalues[:, None] / self.noise[None, :] + self.prior_precision)  # (D1, K)
        return (projected.square() @ scale).to(features.dtype)

    def predictive_variance(self, features: torch.Tensor) -> torch.Tensor:
        """γ² with the homoscedastic noise: epistemic + σ²_k, (..., D) -> (..., K)."""
        return self.epistemic(features) + self.noise.to(features.dtype)

    def state_dict(self) -> dict:
        return {"eigenvectors": self.eigenvectors, "eigenvalues": self.eigenvalues, "noise": self.noise,
                "prior_precision": self.prior_precision}

    @classmethod
    def from_state_dict(cls, state: dict) -> "LastLayerLaplace":
        return cls(state["eigenvectors"].to(torch.float64), state["eigenvalues"].to(torch.float64),
                   state["noise"].to(torch.float64), float(state["prior_precision"]))
