"""Keypoint fitting: analytic IK (fast, differentiable) and the per-track shape + per-frame pose fit."""

from handcli.fitting.fit import FitResult, blend_toward_fit, fit_keypoints
from handcli.fitting.ik import CANONICAL_TO_MANO21, analytic_ik

__all__ = ["CANONICAL_TO_MANO21", "FitResult", "analytic_ik", "blend_toward_fit", "fit_keypoints"]
