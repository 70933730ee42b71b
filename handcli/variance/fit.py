"""Fit the last-layer Laplace posterior post hoc on synthetic training data (handcli.datagen via the training
batches), with the refiner's backbone frozen.

Fitting rows are (features φ, residual clean - x̂) of every frame of every window at every diffusion step n.
The states x^n come from the reverse chain's mean path started at the prior's mean y (around which
Algorithm 1 samples at inference), or from the forward marginal q(x^n | x, y) (what the backbone was trained
on) with `states="forward"`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from handcli.diffusion.model import RefinerBackbone
from handcli.diffusion.schedule import ShiftSchedule
from handcli.variance.laplace import GramStatistics, LastLayerLaplace
from handcli.variance.noise import NoiseModel
from handcli.variance.posterior import VariancePosterior
from handcli.variance.reliability import condition_covariates


@dataclass
class FitSettings:
    batches: int = 40
    batch_size: int = 32
    noise_rows: int = 120_000  # rows kept (uniformly at random) for the heteroscedastic noise head
    states: str = "reverse"  # "reverse" | "forward"
    ridge: float = 1e-3
    seed: int = 0


def fitting_rows(backbone: RefinerBackbone, schedule: ShiftSchedule, conditions, clean: torch.Tensor,
                 states: str, generator: torch.Generator):
    """Yield (step n, features (B, W, D), residuals (B, W, 21, 3), covariates (B, W, 21, Q)) for n = N..1 of
    one batch of windows (clean and conditions in model units)."""
    if states not in ("reverse", "forward"):
        raise ValueError(f"states must be 'reverse' or 'forward', got {states!r}")
    state = conditions.keypoints3d  # the mean path starts at the prior's mean, as `propagate`
    for step in range(schedule.num_steps, 0, -1):
        steps = torch.full((clean.shape[0],), step, dtype=torch.long)
        if states == "forward":
            state = schedule.q_sample(clean, conditions.keypoints3d, steps, torch.randn(clean.shape, generator=generator))
        features = backbone.features(state, conditions, steps)
        predicted = backbone.decode(features, conditions, state, steps)
        yield step, features, clean - predicted, condition_covariates(conditions, predicted)
        if states == "reverse":  # the mean path E[x^{n-1}] = A_n x^n + B_n x̂ (eq. 16)
            a, b, _ = schedule.coefficients(step)
            state = a * state + b * predicted


@torch.inference_mode()
def fit_posterior(backbone: RefinerBackbone, schedule: ShiftSchedule, settings: FitSettings = FitSettings(),
                  batches=None, progress=None) -> tuple[VariancePosterior, dict]:
    """Accumulate the Gram matrix and residuals over synthetic batches, choose λ by the evidence, fit the
    noise model. batches: an object with `.next()` returning handcli.training.data.Batch (default: the training
    data pipeline with the training run's corruption). Returns (posterior, summary dict for the card)."""
    from handcli.training.config import TrainConfig
    from handcli.training.data import SyntheticBatches
    from handcli.training.train import batch_conditions

    backbone = backbone.eval()
    rng = np.random.default_rng(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    if batches is None:
        train = TrainConfig()
        batches = SyntheticBatches(settings.batch_size, backbone.config.window, rng, prob_2d=train.prob_2d,
                                   corruption=train.corruption, pool_size=128, refresh=8, speed=train.speed)
    width = backbone.head.in_features
    statistics = GramStatistics.empty(width, backbone.head.out_features)
    kept: dict[int, list[tuple[torch.Tensor, ...]]] = {step: [] for step in range(1, schedule.num_steps + 1)}
    rows_per_batch = settings.batch_size * backbone.config.window * schedule.num_steps
    keep_fraction = min(1.0, settings.noise_rows / (rows_per_batch * settings.batches))
    for index in range(settings.batches):
        conditions, clean = batch_conditions(batches.next(), torch.device("cpu"))
        for step, features, residuals, covariates in fitting_rows(backbone, schedule, conditions, clean,
                                                                  settings.states, generator):
            features = features.reshape(-1, width)
            residuals, covariates = residuals.reshape(-1, 21, 3), covariates.reshape(-1, 21, covariates.shape[-1])
            statistics.add(features, residuals.flatten(-2))
            keep = torch.rand(len(features), generator=generator) < keep_fraction
            kept[step].append((residuals[keep], covariates[keep]))
        if progress is not None:
            progress(index + 1, settings.batches)
    # the frames of a window and its diffusion steps move together: one independent observation per window
    windows = settings.batches * settings.batch_size
    laplace = LastLayerLaplace.from_statistics(statistics, backbone.head.weight.detach(), backbone.head.bias.detach(),
                                               effective_rows=windows)
    rows = [tuple(torch.cat(parts) for parts in zip(*kept[step])) for step in sorted(kept)]
    noise = NoiseModel.fit(rows, settings.ridge)
    summary = {"rows": statistics.count, "effective_rows": windows, "noise_rows": int(sum(len(r[0]) for r in rows)),
               "prior_precision": laplace.prior_precision,
               "rms_residual_mm": float(statistics.noise.mean().sqrt() * 100.0),
               "settings": vars(settings)}
    return VariancePosterior(laplace, noise), summary
