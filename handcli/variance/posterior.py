"""The variance posterior: the last-layer Laplace posterior with its heteroscedastic noise, γ²(x^n, y, n) of
PAD-Hand eq. 12; and its file (weights/refiner_laplace.pt), bound to one refiner weights file by its sha256,
loadable with torch.load(weights_only=True)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from handcli.artifacts import file_digest
from handcli.diffusion.weights import atomic_torch_save, default_weights_path
from handcli.errors import BadInput, NotBuilt
from handcli.variance.laplace import LastLayerLaplace
from handcli.variance.noise import NoiseModel

LAPLACE_FORMAT = "handcli-refiner-laplace/2"
FIT_COMMAND = "python scripts/variance_fit.py"


@dataclass
class VariancePosterior:
    laplace: LastLayerLaplace
    noise: NoiseModel | None = None  # None: the homoscedastic noise of the Laplace fit

    def predictive_variance(self, features: torch.Tensor, covariates: torch.Tensor, step: int) -> torch.Tensor:
        """γ² per coordinate: features (..., D), covariates (..., 21, Q), step n -> (..., 21, 3)."""
        epistemic = self.laplace.epistemic(features).unflatten(-1, (21, 3))
        if self.noise is None:
            return epistemic + self.laplace.noise.to(features.dtype).reshape(21, 3)
        return epistemic + self.noise.variance(covariates, step).to(features.dtype)


def default_laplace_path(refiner_weights: Path | None = None) -> Path:
    """Beside the refiner weights: weights/refiner.pt -> weights/refiner_laplace.pt."""
    weights = Path(refiner_weights) if refiner_weights is not None else default_weights_path()
    return weights.with_name(weights.stem + "_laplace.pt")


def save_laplace(path: Path, posterior: VariancePosterior, refiner_weights: Path, summary: dict) -> None:
    """Write the posterior with the digest of the refiner weights it was fitted for (atomically)."""
    payload = {"format": LAPLACE_FORMAT, "refiner_sha256": file_digest(refiner_weights),
               "laplace": posterior.laplace.state_dict(),
               "noise": None if posterior.noise is None else posterior.noise.state_dict(),
               "summary": json.loads(json.dumps(summary, default=str))}
    atomic_torch_save(payload, Path(path))


def load_laplace(path: Path | None = None, refiner_weights: Path | None = None) -> tuple[VariancePosterior, dict]:
    """(posterior, summary). path defaults to the file beside the refiner weights. NotBuilt when the bundled
    pair is incomplete or out of step; BadInput when the user named the files (missing, foreign, mismatched)."""
    explicit = path is not None or refiner_weights is not None
    path = Path(path) if path is not None else default_laplace_path(refiner_weights)
    refiner_weights = Path(refiner_weights) if refiner_weights is not None else default_weights_path()
    problem = BadInput if explicit else NotBuilt
    if not path.is_file():
        raise problem(f"variance posterior not found at {path}; fit it with `{FIT_COMMAND}`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise BadInput(f"cannot read variance posterior {path}: {type(error).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != LAPLACE_FORMAT:
        raise BadInput(f"{path} is not a handcli variance posterior ({LAPLACE_FORMAT})")
    if refiner_weights.is_file() and payload.get("refiner_sha256") != file_digest(refiner_weights):
        raise problem(f"{path} was fitted for other refiner weights than {refiner_weights}; refit it with "
                      f"`{FIT_COMMAND}`")
    noise = None if payload.get("noise") is None else NoiseModel.from_state_dict(payload["noise"])
    return VariancePosterior(LastLayerLaplace.from_state_dict(payload["laplace"]), noise), dict(payload.get("summary", {}))
