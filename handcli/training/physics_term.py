"""Adapter from handcli.physics (Euler-Lagrange residual of keypoint motion) to the refiner's training loss.

Forces F(x) = M q̈ + C + g come from keypoints through the differentiable analytic IK on the open hand model's
mean-shape skeleton. The pseudo-force is the ground truth's own F (PAD-Hand eq. 8 following PhysPT), so the
residual is Z = F(x) - F(x_gt). Forces mix newtons and newton-metres, so each of the 51 components is divided
by its spread in the ground truth of the batch (detached) before the losses.
"""

from __future__ import annotations

import torch


# components that barely vary in the batch (e.g. a fingertip joint's torque) are not amplified beyond a tenth
# of the median component's spread, else their noise would dominate the loss
FORCE_FLOOR_FRACTION = 0.1


class PhysicsTerm:
    """L_EL (virtual observable, `nll`) and the deterministic L1 penalty (`l1`) on keypoint windows (metres)."""

    def __init__(self, rest_joints21: torch.Tensor, inertia, fps: float = 30.0, variance_floor: float = 1.0):
        self.rest_joints21 = rest_joints21  # (21, 3) MANO21 order, as analytic_ik takes it
        self.inertia = inertia
        self.fps = fps
        self.variance_floor = variance_floor

    def forces(self, keypoints3d: torch.Tensor) -> torch.Tensor:
        """(B, W, 21, 3) metres -> (B, W, 51)."""
        from handcli.physics import forces_from_keypoints

        return forces_from_keypoints(keypoints3d, self.rest_joints21, self.inertia, self.fps)

    def _residual(self, keypoints3d: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            reference = self.forces(clean)
            scale = reference.flatten(0, 1).std(0)
            scale = scale.clamp_min(FORCE_FLOOR_FRACTION * float(scale.median()) + 1e-12)
        # the edge frames use one-sided differences; the physics evaluates them anyway
        return (self.forces(keypoints3d) - reference) / scale

    def nll(self, x0: torch.Tensor, clean: torch.Tensor, relative_variance: float) -> torch.Tensor:
        """PAD-Hand eq. 10, per residual component: mean Z^2 / (2 sigma_n), sigma_n = max(eta_n / c, floor)."""
        from handcli.physics import el_nll_loss

        residual = self._residual(x0, clean)
        sigma = max(relative_variance, self.variance_floor)
        return el_nll_loss(residual, sigma) / residual[0].numel()

    def l1(self, predicted: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """Deterministic penalty sum_t |Z_t|_1, per component (the ablation of eq. 8)."""
        from handcli.physics import el_l1_loss

        residual = self._residual(predicted, clean)
        return el_l1_loss(residual) / residual[0].numel()


def build_physics_term(config) -> tuple[PhysicsTerm | None, str]:
    """(term, note); term is None with the reason in `note` when the physics' dependencies are not built."""
    try:
        from handcli.fitting import analytic_ik  # noqa: F401
        from handcli.handmodels import load_hand_model
        from handcli.physics import PartInertia, hand_physics
    except ImportError as error:
        return None, f"unavailable ({error})"
    try:
        model = load_hand_model("open")
    except Exception as error:  # the open hand model is a build product (`make hand-model`)
        return None, f"unavailable (open hand model: {error})"
    betas = torch.zeros(1, model.num_betas)
    rest_joints21 = model.rest_joints21(betas)[0].detach()
    with torch.no_grad():
        _, inertia = hand_physics(model, betas)
    inertia = PartInertia(*(part[0] for part in inertia))  # unbatched: one mean-shape hand for every window
    return PhysicsTerm(rest_joints21, inertia), "PAD-Hand L_EL on open-hand inverse dynamics"
