"""Variance: the closed-form last-layer Laplace against brute force, the noise fit, Algorithm 1 against its
closed form, the vertex and force maps, the posterior file, the stage and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handcli.artifacts import load_artifact
from handcli.diffusion.conditions import build_conditions
from handcli.diffusion.schedule import ShiftSchedule
from handcli.errors import BadInput
from handcli.variance.laplace import GramStatistics, LastLayerLaplace, log_evidence, optimise_prior_precision
from handcli.variance.noise import NoiseModel, fit_log_linear_noise
from handcli.variance.posterior import VariancePosterior, load_laplace, save_laplace
from handcli.variance.propagate import propagate
from handcli.variance.reliability import DISTANCE, INFILLED, NUM_COVARIATES, condition_covariates, frames_to_observation
from tests.conftest import assert_one_line_error, random_keypoints, run_cli


# --------------------------------------------------------------------------------------------------- Laplace
def tiny_regression(seed: int = 0):
    """A frozen tanh body, a trained linear head, data: (body, head, inputs (N, 4), targets (N, 3))."""
    torch.manual_seed(seed)
    body = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh()).double()
    head = torch.nn.Linear(5, 3).double()
    inputs = torch.randn(60, 4, dtype=torch.float64)
    targets = head(body(inputs)).detach() + 0.1 * torch.randn(60, 3, dtype=torch.float64)
    return body, head, inputs, targets


def fitted(body, head, inputs, targets, prior: float | None = None) -> LastLayerLaplace:
    with torch.no_grad():
        features = body(inputs)
        statistics = GramStatistics.empty(5, 3)
        statistics.add(features[:25], targets[:25] - head(features[:25]))  # batches accumulate
        statistics.add(features[25:], targets[25:] - head(features[25:]))
    return LastLayerLaplace.from_statistics(statistics, head.weight, head.bias, prior)


def brute_force_hessian(body, head, inputs, targets, noise: torch.Tensor, prior: float):
    """Full Hessian of the negative log posterior in the head's parameters [W (3x5) row-major, b (3)]."""
    features = body(inputs).detach()

    def negative_log_posterior(theta: torch.Tensor) -> torch.Tensor:
        weight, bias = theta[:15].reshape(3, 5), theta[15:]
        residual = targets - (features @ weight.T + bias)
        return (residual.square() / (2 * noise)).sum() + 0.5 * prior * theta.square().sum()

    theta = torch.cat([head.weight.detach().flatten(), head.bias.detach()])
    return torch.autograd.functional.hessian(negative_log_posterior, theta), theta


def test_laplace_epistemic_variance_equals_brute_force():
    body, head, inputs, targets = tiny_regression()
    laplace = fitted(body, head, inputs, targets, prior=0.7)
    hessian, theta = brute_force_hessian(body, head, inputs, targets, laplace.noise, 0.7)
    covariance = torch.linalg.inv(hessian)
    test_inputs = torch.randn(7, 4, dtype=torch.float64)

    def outputs(theta: torch.Tensor) -> torch.Tensor:
        weight, bias = theta[:15].reshape(3, 5), theta[15:]
        return body(test_inputs).detach() @ weight.T + bias

    jacobian = torch.autograd.functional.jacobian(outputs, theta).reshape(7 * 3, -1)
    expected = torch.diagonal(jacobian @ covariance @ jacobian.T).reshape(7, 3)
    torch.testing.assert_close(laplace.epistemic(body(test_inputs).detach()), expected, rtol=1e-8, atol=1e-12)
    # the per-output posterior covariance is the matching block ([w_k, b_k] ordering)
    order = [5 * 1 + i for i in range(5)] + [16]
    torch.testing.assert_close(laplace.posterior_covariance(1), covariance[order][:, order], rtol=1e-8, atol=1e-12)


def test_evidence_matches_brute_force_and_is_maximised():
    body, head, inputs, targets = tiny_regression(1)
    laplace = fitted(body, head, inputs, targets, prior=1.0)
    norms = torch.cat([head.weight, head.bias[:, None]], 1).detach().square().sum(1)

    def brute(prior: float) -> float:  # Laplace evidence up to λ-independent terms, from the full Hessian
        hessian, theta = brute_force_hessian(body, head, inputs, targets, laplace.noise, prior)
        return float(-0.5 * prior * theta.square().sum() + 0.5 * theta.numel() * np.log(prior)
                     - 0.5 * torch.logdet(hessian))

    for low, high in ((0.1, 3.0), (2.0, 50.0)):
        closed = float(log_evidence(np.log10(high), laplace.eigenvalues, laplace.noise, norms)
                       - log_evidence(np.log10(low), laplace.eigenvalues, laplace.noise, norms))
        assert closed == pytest.approx(brute(high) - brute(low), rel=1e-9, abs=1e-9)
    best = optimise_prior_precision(laplace.eigenvalues, laplace.noise, norms)
    assert brute(best) >= max(brute(best * 1.05), brute(best / 1.05))


def test_log_linear_noise_fit_recovers_the_noise_function():
    rng = np.random.default_rng(0)
    covariates = rng.normal(size=(20000, 2))
    truth = np.array([0.8, -0.5, np.log(0.3)])
    design = np.concatenate([covariates, np.ones((20000, 1))], 1)
    residuals = rng.normal(size=(20000, 3)) * np.exp(0.5 * design @ truth)[:, None]
    weights = fit_log_linear_noise(torch.as_tensor(design), torch.as_tensor(residuals ** 2), ridge=0.0)
    np.testing.assert_allclose(weights.numpy(), truth, atol=0.04)


# ----------------------------------------------------------------------------------------------- covariates
def test_frames_to_observation_and_covariates():
    mask = torch.tensor([[True, False, False, False, True, True, False]])
    assert frames_to_observation(mask).tolist() == [[0, 1, 2, 1, 0, 0, 1]]
    keypoints = torch.as_tensor(random_keypoints(1, 7), dtype=torch.float32)
    conditions = build_conditions(keypoints, mask, torch.tensor([True]))
    covariates = condition_covariates(conditions, conditions.baseline)
    assert covariates.shape == (1, 7, 21, NUM_COVARIATES) and torch.isfinite(covariates).all()
    assert covariates[0, :, 0, INFILLED].tolist() == [0, 1, 1, 1, 0, 0, 1]
    assert covariates[0, 2, 0, DISTANCE] == pytest.approx(np.log(3))


# ----------------------------------------------------------------------------------------------- Algorithm 1
class AffineBackbone:
    """X̂ = α x^n + β (elementwise), so eqs. 14-16 have a closed form: Var(X̂) = α² Var(x^n), Cov = α Var(x^n)."""

    def __init__(self, alpha: float, beta: float):
        self.alpha, self.beta = alpha, beta

    def features(self, noisy, conditions, step):
        return noisy.flatten(-2)

    def decode(self, features, conditions, noisy, step):
        return self.alpha * noisy + self.beta


class ConstantPosterior:
    def __init__(self, value: float):
        self.value = value

    def predictive_variance(self, features, covariates, step):
        return torch.full(covariates.shape[:-1] + (3,), self.value, dtype=features.dtype)


def window_conditions(windows: int = 2, frames: int = 8) -> "build_conditions":
    keypoints = torch.as_tensor(random_keypoints(windows, frames), dtype=torch.float64)
    return build_conditions(keypoints, torch.ones(windows, frames, dtype=torch.bool),
                            torch.ones(windows, dtype=torch.bool))


def test_propagation_matches_the_closed_form():
    schedule = ShiftSchedule(num_steps=4, kappa=0.5)
    alpha, beta, gamma2 = 0.6, 0.01, 0.003
    conditions = window_conditions()
    result = propagate(AffineBackbone(alpha, beta), schedule, ConstantPosterior(gamma2), conditions, samples=4000,
                       generator=torch.Generator().manual_seed(0))
    mean, variance = conditions.keypoints3d.clone(), 0.0
    for step in range(schedule.num_steps, 0, -1):
        a, b, sigma = schedule.coefficients(step)
        variance = (a + b * alpha) ** 2 * variance + b * b * gamma2 + sigma
        mean = a * mean + b * (alpha * mean + beta)
    torch.testing.assert_close(result.mean, mean)
    assert float(result.variance.mean()) == pytest.approx(variance, rel=0.03)
    assert float(result.variance.std() / result.variance.mean()) < 0.2  # Monte Carlo noise, no structure


def test_direct_mode_is_one_step_without_sampling():
    conditions = window_conditions()
    result = propagate(AffineBackbone(0.5, 0.02), ShiftSchedule(), ConstantPosterior(0.004), conditions,
                       samples=2, direct=True)
    torch.testing.assert_close(result.mean, 0.5 * conditions.keypoints3d + 0.02)
    torch.testing.assert_close(result.variance, torch.full_like(result.variance, 0.004))


# ------------------------------------------------------------------------------------------------------ maps
def test_vertex_weights_are_affine_and_fingertips_follow_their_keypoint():
    from handcli.handmodels import load_hand_model
    from handcli.handmodels.kinematics import MANO21_TO_CANONICAL
    from handcli.variance.maps import hand_vertex_weights, vertex_variance

    model = load_hand_model("open")
    weights = hand_vertex_weights(model, None)
    assert weights.shape == (model.num_vertices, 21) and (weights >= 0).all()
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-9)
    tips = [MANO21_TO_CANONICAL.index(16 + i) for i in range(5)]  # canonical index of each MANO21 tip
    assert (weights[model.tip_vertex_ids.numpy(), tips] > 0.8).all()
    np.testing.assert_allclose(vertex_variance(np.full((3, 21), 4e-6), weights), 4e-6, rtol=1e-9)
    spiky = np.zeros(21)
    spiky[tips[1]] = 1e-4  # only the index tip is uncertain: the index tip's vertices, not the pinky's
    spread = vertex_variance(spiky, weights)
    assert spread[model.tip_vertex_ids[1]] > 50 * spread[model.tip_vertex_ids[4]]


def test_force_variance_matches_the_exact_jacobian():
    from handcli.datagen import sample_motion
    from handcli.handmodels import load_hand_model
    from handcli.physics import banded_force_jacobian, banded_force_variance, forces_from_keypoints, hand_physics
    from handcli.variance.maps import force_variance

    model = load_hand_model("open")
    motion = sample_motion(1, 16, np.random.default_rng(0))
    betas = torch.as_tensor(motion.betas, dtype=torch.float32)
    _, inertia = hand_physics(model, betas)
    inertia = type(inertia)(*(field[0] for field in inertia))
    rest = model.rest_joints21(betas)[0]
    keypoints = torch.as_tensor(motion.keypoints3d[0])
    variance = np.random.default_rng(1).uniform(1e-6, 1e-5, (16, 21, 3))
    blocks = banded_force_jacobian(lambda x: forces_from_keypoints(x[None], rest, inertia, 30.0)[0], keypoints)
    exact = banded_force_variance(blocks.double(), torch.as_tensor(variance)).numpy()
    approx = force_variance(keypoints.numpy(), variance, 30.0, True, rest, inertia, stride=1)
    relative = np.abs(approx - exact) / exact
    assert np.median(relative) < 0.03 and np.percentile(relative, 90) < 0.15
    mirrored = force_variance(keypoints.numpy() * [-1, 1, 1], variance, 30.0, False, rest, inertia, stride=1)
    np.testing.assert_allclose(mirrored, approx, rtol=1e-6)


# --------------------------------------------------------------------------------------- posterior and stage
def tiny_posterior(seed: int = 0, width: int = 32) -> VariancePosterior:
    generator = torch.Generator().manual_seed(seed)
    statistics = GramStatistics.empty(width, 63)
    statistics.add(torch.randn(500, width, generator=generator), 0.02 * torch.randn(500, 63, generator=generator))
    laplace = LastLayerLaplace.from_statistics(statistics, 0.01 * torch.randn(63, width, generator=generator),
                                               torch.zeros(63))
    rows = []
    for _ in range(4):  # residuals five times larger on infilled frames
        covariates = torch.randn(400, 21, NUM_COVARIATES, generator=generator)
        infilled = (torch.rand(400, generator=generator) < 0.2).to(torch.float32)
        covariates[..., INFILLED] = infilled[:, None]
        scale = 0.002 * (1 + 4 * infilled)[:, None, None]
        rows.append((scale * torch.randn(400, 21, 3, generator=generator), covariates))
    return VariancePosterior(laplace, NoiseModel.fit(rows))


@pytest.fixture
def tiny_weights(tmp_path):
    """(refiner weights, posterior) files of a tiny untrained refiner."""
    from handcli.diffusion.weights import save_weights
    from tests.test_diffusion import tiny_refiner

    refiner = tiny_refiner()
    weights = tmp_path / "tiny.pt"
    save_weights(weights, refiner.backbone, refiner.schedule, {"direct": True})
    save_laplace(tmp_path / "tiny_laplace.pt", tiny_posterior(), weights, {"note": "test"})
    return weights, tmp_path / "tiny_laplace.pt"


def test_posterior_file_round_trip_and_binding(tiny_weights, tmp_path):
    weights, path = tiny_weights
    posterior, summary = load_laplace(None, weights)  # found beside the weights
    assert summary == {"note": "test"}
    torch.testing.assert_close(posterior.noise.local_weights, tiny_posterior().noise.local_weights)
    other = tmp_path / "other.pt"
    other.write_bytes(weights.read_bytes() + b"x")
    with pytest.raises(BadInput, match="other refiner weights"):
        load_laplace(path, other)
    with pytest.raises(BadInput, match="not found"):
        load_laplace(tmp_path / "missing.pt", weights)


def test_bundled_posterior_matches_bundled_weights():
    from handcli.diffusion.weights import default_weights_path
    from handcli.variance.posterior import default_laplace_path

    if not default_weights_path().is_file() or not default_laplace_path().is_file():
        pytest.skip("bundled weights or posterior absent")
    load_laplace()  # raises when weights/refiner.pt changed without `python scripts/variance_fit.py`


def test_fit_posterior_on_a_tiny_data_source(tiny_weights):
    from handcli.diffusion.weights import load_weights
    from handcli.training.data import SyntheticBatches
    from handcli.variance.fit import FitSettings, fit_posterior
    from tests.test_diffusion import _TinyDatagen

    backbone, schedule, _ = load_weights(tiny_weights[0])
    batches = SyntheticBatches(4, 16, np.random.default_rng(0), datagen=_TinyDatagen, pool_size=4, rotate=False)
    posterior, summary = fit_posterior(backbone, schedule, FitSettings(batches=2, batch_size=4, noise_rows=400),
                                       batches=batches)
    assert summary["rows"] == 2 * 4 * 16 * 4 and posterior.laplace.prior_precision > 0
    assert posterior.noise.local_weights.shape == (4, 21, NUM_COVARIATES + 1)


def test_variance_stage_maps_and_infilled_frames(tiny_weights):
    from handcli.artifacts import Artifact
    from handcli.stages.variance import VarianceConfig, variance
    from tests.test_diffusion import hand_track

    weights, posterior = tiny_weights
    keypoints = np.stack([hand_track(40, 0), hand_track(40, 1) * [-1, 1, 1]]).astype(np.float32)
    valid = np.ones((2, 40), bool)
    valid[0, 15:22] = False
    keypoints[~valid] = np.nan
    artifact = Artifact(keypoints, valid, np.array([True, False]), fps=30.0)
    result = variance(artifact, VarianceConfig(weights=weights, laplace=posterior, samples=4, device="cpu"))
    assert result.var_joints.shape == (2, 40, 21) and result.var_force.shape == (2, 40, 51)
    assert result.var_vertices.shape[:2] == (2, 40)
    for values in (result.var_joints, result.var_vertices, result.var_force):
        assert np.isfinite(values).all() and (values >= 0).all()
    gap = result.var_joints[0, 17:20].mean()
    assert gap > 2 * np.median(result.var_joints[0, valid[0]])  # infilled frames are uncertain
    assert result.meta["stage"] == "variance"


def test_cli_variance_and_refine_variance(tiny_weights, tmp_path):
    weights, posterior = tiny_weights
    keypoints = random_keypoints(1, 30)
    valid = np.ones((1, 30), bool)
    valid[0, 10:14] = False
    keypoints[~valid] = np.nan
    np.savez(tmp_path / "in.npz", keypoints3d=keypoints, valid=valid)
    refined = run_cli("refine", "--input", tmp_path / "in.npz", "--out", tmp_path / "r.npz", "--weights", weights,
                      "--variance", "--device", "cpu")
    assert refined.returncode == 0, refined.stderr
    out = load_artifact(tmp_path / "r.npz")
    assert out.var_joints.shape == (1, 30, 21) and out.var_force.shape == (1, 30, 51)
    result = run_cli("variance", "--input", tmp_path / "r.npz", "--out", tmp_path / "v.npz", "--weights", weights,
                     "--laplace", posterior, "--samples", "3", "--heatmap", tmp_path / "h.png")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = load_artifact(tmp_path / "v.npz")
    assert out.var_joints.shape == (1, 30, 21) and np.isfinite(out.var_vertices).all()
    assert out.meta["inputs"]["sha256"] and out.meta["hand_model"] == "open"
    bad = run_cli("variance", "--input", tmp_path / "in.npz", "--out", tmp_path / "x.npz", "--weights", weights,
                  "--laplace", tmp_path / "nope.pt")
    assert_one_line_error(bad, 2, "not found")
    assert not (tmp_path / "x.npz").exists()
    bad_png = run_cli("variance", "--input", tmp_path / "in.npz", "--out", tmp_path / "x.npz", "--heatmap",
                      tmp_path / "h.jpg")
    assert_one_line_error(bad_png, 2, ".png")
