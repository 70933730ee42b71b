"""How well variance maps describe real errors: nominal radii, coverage, RMS ratios and sparsification.

The contract (docs/variance.md): `var_joints` is a joint's expected squared distance to the truth (m²). A
joint's error is modelled as a zero-mean Gaussian with covariance Σ_j = var_root + a · I, where `var_root`
(3, 3) is the whole-hand part (mostly along the camera ray) and a = (var_joints - tr var_root) / 3 spreads
the rest evenly over the three axes; without `var_root`, Σ_j = var_joints / 3 · I. The nominal p radius is
the p-quantile of |e| under that Gaussian: a joint is covered when its error is shorter.

|e|² under N(0, Σ) is Σ_i λ_i χ²₁ with λ the eigenvalues of Σ; its quantiles use the Welch–Satterthwaite
match g χ²_ν (g = Σλ² / Σλ, ν = (Σλ)² / Σλ²), exact for the isotropic case (ν = 3) and for a single axis
(ν = 1), and within a few per cent of the exact quantile in between (tests/test_variance_calibration.py).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import chi2


def isotropic_rest(var_joints: np.ndarray, var_root: np.ndarray | None = None) -> np.ndarray:
    """(..., 21) m² per coordinate: the contract's a = (var_joints - tr var_root) / 3, each joint's error beyond
    the whole hand (its articulation), clipped at zero (var_joints below tr var_root counts as the root alone).

    var_joints: (..., 21) m²; var_root: (..., 3, 3) m² for the same leading shape without the joint axis, or
    None (then a = var_joints / 3)."""
    var_joints = np.asarray(var_joints, np.float64)
    if var_root is None:
        return var_joints / 3.0
    root_total = np.trace(np.asarray(var_root, np.float64), axis1=-2, axis2=-1)[..., None]
    return np.maximum(var_joints - root_total, 0.0) / 3.0


def articulation_variance(variance: np.ndarray, var_root: np.ndarray) -> np.ndarray:
    """(..., N) m²: what joint (or vertex) variances hold beyond the whole hand, over all three coordinates
    (3 `isotropic_rest`): the part that differs from joint to joint, which the heat map, the render and
    `handcli info` show apart from the whole hand's (the same for every joint).

    variance: (..., N) m² total over the coordinates; var_root: (..., 3, 3) m²."""
    return 3.0 * isotropic_rest(variance, var_root)


def joint_covariance_eigenvalues(var_joints: np.ndarray, var_root: np.ndarray | None = None) -> np.ndarray:
    """Eigenvalues (..., 3) of each joint's error covariance (m²), var_root + `isotropic_rest` · I.

    var_joints: (..., 21) m²; var_root: (..., 3, 3) m² for the same leading shape without the joint axis, or
    None."""
    rest = isotropic_rest(var_joints, var_root)  # (..., 21)
    if var_root is None:
        return np.repeat(rest[..., None], 3, -1)
    root = np.linalg.eigvalsh(np.asarray(var_root, np.float64))  # (..., 3)
    return root[..., None, :] + rest[..., None]


def nominal_radius(var_joints: np.ndarray, var_root: np.ndarray | None = None, probability: float = 0.5
                   ) -> np.ndarray:
    """(..., 21) metres: the radius that holds the joint's error with `probability` under the contract's
    Gaussian (module docstring)."""
    eigenvalues = joint_covariance_eigenvalues(var_joints, var_root)
    total = eigenvalues.sum(-1)
    squares = np.square(eigenvalues).sum(-1)
    safe = np.maximum(squares, 1e-300)
    scale = squares / np.maximum(total, 1e-300)
    dof = np.clip(np.square(total) / safe, 1.0, 3.0)
    return np.sqrt(np.where(total > 0, scale * chi2.ppf(probability, dof), 0.0))


def coverage(errors: np.ndarray, radii: np.ndarray) -> float:
    """Fraction of errors (N,) no longer than their radii (N,)."""
    errors, radii = np.asarray(errors).ravel(), np.asarray(radii).ravel()
    return float(np.mean(errors <= radii)) if errors.size else float("nan")


def rms_ratio(squared_errors: np.ndarray, predicted_variance: np.ndarray) -> float:
    """Observed RMS / predicted RMS: sqrt(mean e²) / sqrt(mean var) over the same items."""
    return float(np.sqrt(np.mean(squared_errors) / max(np.mean(predicted_variance), 1e-300)))


def reliability_bins(predicted_variance: np.ndarray, squared_errors: np.ndarray, bins: int = 10) -> list[dict]:
    """Items (N,) sorted by predicted variance into `bins` equal-count bins (deciles by default); per bin the
    predicted and observed RMS (same unit as sqrt of the inputs) and their ratio."""
    order = np.argsort(predicted_variance, kind="stable")
    rows = []
    for part in np.array_split(order, bins):
        if part.size == 0:
            continue
        predicted = float(np.sqrt(np.mean(predicted_variance[part])))
        observed = float(np.sqrt(np.mean(squared_errors[part])))
        rows.append({"items": int(part.size), "predicted_rms": predicted, "observed_rms": observed,
                     "ratio": observed / predicted if predicted > 0 else float("nan")})
    return rows


def sparsification_curve(order_scores: np.ndarray, squared_errors: np.ndarray, steps: int = 20) -> np.ndarray:
    """(steps,) RMS error of the items kept after removing the fraction k / steps (k = 0 .. steps-1) with the
    highest scores."""
    order = np.argsort(-np.asarray(order_scores), kind="stable")
    sorted_errors = np.asarray(squared_errors)[order]
    count = len(sorted_errors)
    tail_sums = np.cumsum(sorted_errors[::-1])[::-1]  # sum of items from position i on
    curve = []
    for k in range(steps):
        start = int(round(k / steps * count))
        kept = count - start
        curve.append(np.sqrt(tail_sums[start] / kept) if kept else 0.0)
    return np.array(curve)


def ause(predicted_variance: np.ndarray, squared_errors: np.ndarray, steps: int = 20, seed: int = 0) -> dict:
    """Area under the sparsification error: the gap between removing items by predicted variance and by
    their true error (the oracle), averaged over the removal fractions; beside it the same for a random order
    (mean of 5 shuffles). `relative` = AUSE / random AUSE (0: oracle ranking, 1: no better than chance)."""
    squared_errors = np.asarray(squared_errors, np.float64)
    oracle = sparsification_curve(squared_errors, squared_errors, steps)
    ours = sparsification_curve(predicted_variance, squared_errors, steps)
    rng = np.random.default_rng(seed)
    randoms = [sparsification_curve(rng.random(len(squared_errors)), squared_errors, steps) for _ in range(5)]
    area = float(np.mean(ours - oracle))
    random_area = float(np.mean([np.mean(r - oracle) for r in randoms]))
    return {"ause": area, "random_ause": random_area,
            "relative": area / random_area if random_area > 0 else float("nan")}


def calibration_summary(errors: np.ndarray, var_joints: np.ndarray, var_root: np.ndarray | None = None,
                        bins: int = 10) -> dict:
    """Everything the calibration report shows, for joint errors (N, 21) metres (NaN: not scored) against
    var_joints (N, 21) m² and var_root (N, 3, 3) or None, N frames.

    Coverage is per joint; deciles and AUSE are over frames (frame mean of squared error against frame mean
    of var_joints), as the reliability diagrams in docs/results.md."""
    errors = np.asarray(errors, np.float64)
    scored = np.isfinite(errors)
    r50 = nominal_radius(var_joints, var_root, 0.5)
    r90 = nominal_radius(var_joints, var_root, 0.9)
    frames = scored.any(1)
    squared = np.where(scored, errors ** 2, np.nan)
    frame_squared = np.nanmean(squared[frames], 1)
    frame_variance = np.array([np.mean(v[m]) for v, m in zip(np.asarray(var_joints, np.float64)[frames],
                                                              scored[frames])])
    deciles = reliability_bins(frame_variance, frame_squared, bins)
    ratios = [row["ratio"] for row in deciles]
    return {"joints": int(scored.sum()), "frames": int(frames.sum()),
            "coverage50": coverage(errors[scored], r50[scored]),
            "coverage90": coverage(errors[scored], r90[scored]),
            "rms_ratio": rms_ratio(squared[scored], np.asarray(var_joints, np.float64)[scored]),
            "decile_ratio_min": float(np.min(ratios)), "decile_ratio_max": float(np.max(ratios)),
            "deciles": deciles, **{f"{k}": v for k, v in ause(frame_variance, frame_squared).items()}}


def calibrated_error_draw(var_joints: np.ndarray, var_root: np.ndarray | None, fps: float,
                          rng: np.random.Generator, correlation_frames: float = 0.0, constant_root: float = 0.0,
                          constant_articulation: float = 0.0) -> np.ndarray:
    """(N, 21) metres: one track's joint error lengths drawn from the maps themselves, i.e. what an exactly
    calibrated model's errors would look like on those frames.

    var_joints: (N, 21) m², var_root: (N, 3, 3) m² or None, for N consecutive frames of one track. Each joint's
    error is Gaussian with the contract's covariance (module docstring), and in time it has the structure
    `handcli.variance.estimate.sample_estimate_errors` gives it (a track-constant share plus a smooth
    fluctuation of Gaussian autocorrelation width `correlation_frames`; the calibration file's values).

    Why: when most of a clip's error is one whole-hand offset, a test split of a few clips holds only a few
    independent draws, and even exact maps scatter widely around the targets. Repeating this draw over a
    split's clips gives the range its measures would show if the maps were right (scripts/variance_bench.py
    --null-draws), so a miss can be told from the luck of the clips."""
    from handcli.variance.estimate import EstimateUncertainty, sample_estimate_errors

    articulation = isotropic_rest(var_joints, var_root)
    var_root = np.zeros((*articulation.shape[:-1], 3, 3)) if var_root is None else np.asarray(var_root, np.float64)
    uncertainty = EstimateUncertainty(var_root[None], articulation[None])
    errors = sample_estimate_errors(uncertainty, correlation_frames, fps, rng, constant_root, constant_articulation)
    return np.linalg.norm(errors[0], axis=-1)
