"""Fit the variance posterior (last-layer Laplace of the refiner's head) on synthetic training data.

    .venv/bin/python scripts/variance_fit.py                       # weights/refiner.pt -> weights/refiner_laplace.pt
    .venv/bin/python scripts/variance_fit.py --weights W.pt --batches 40    # -> W_laplace.pt beside it

Rerun whenever weights/refiner.pt changes: `handcli variance` refuses a posterior fitted for other weights.
Writes a model card beside the output (<out>.md). Synthetic data only (handcli.datagen); deterministic per seed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from handcli.diffusion.weights import default_weights_path, load_weights
from handcli.variance.fit import FitSettings, fit_posterior
from handcli.variance.posterior import default_laplace_path, save_laplace

CARD = """# {name} — variance posterior card

The last-layer Laplace posterior of the refiner's linear head (PAD-Hand §3.4, eq. 12) that `handcli variance`
and `handcli refine --variance` use; see docs/variance.md. Bound to the refiner weights by sha256: refit with
`python scripts/variance_fit.py` whenever `{weights}` changes.

* Fitted for: `{weights}` (sha256 `{digest}`)
* Data: synthetic only — {batches} batches of {batch_size} windows from `handcli.training.data.SyntheticBatches`
  (handcli.datagen motion, the training run's corruption settings), every frame at every diffusion step with
  states from the {states} chain: {rows} rows for the Gram matrix (counted as {windows} independent
  observations, one per window), {noise_rows} for the noise model.
* Prior precision λ = {prior:.4g} (maximum of the Laplace evidence).
* RMS residual of the head on the fitting rows: {rms:.2f} mm per coordinate (all steps).
* Noise model (`handcli.variance.noise`): per diffusion step, log σ² of the whole-hand shift and of each joint's
  articulation, linear in the condition's reliability covariates (`handcli.variance.reliability`); Newton on
  the Gaussian NLL, ridge {ridge}.
* Fitting time: {seconds:.0f} s on {threads} CPU thread(s).
* Measured calibration on real motion (FPHA, Spearman and outlier AUROC against the targets) and the commands
  that measure it: docs/results.md, section "Variance".
"""


def _shown(path: Path) -> str:
    """Repository-relative when inside the repository (the card is committed)."""
    root = Path(__file__).resolve().parents[1]
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None, help="refiner weights (default weights/refiner.pt)")
    parser.add_argument("--out", type=Path, default=None, help="default: weights/refiner_laplace.pt")
    parser.add_argument("--batches", type=int, default=FitSettings.batches)
    parser.add_argument("--states", choices=("reverse", "forward"), default=FitSettings.states)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    weights = args.weights or default_weights_path()
    out = args.out or default_laplace_path(weights)
    backbone, schedule, _ = load_weights(weights)
    settings = FitSettings(batches=args.batches, states=args.states, seed=args.seed)
    started = time.perf_counter()
    posterior, summary = fit_posterior(backbone, schedule, settings,
                                   progress=lambda done, total: print(f"\rbatch {done}/{total}", end="", file=sys.stderr))
    seconds = time.perf_counter() - started
    print(file=sys.stderr)
    summary["seconds"] = round(seconds, 1)
    save_laplace(out, posterior, weights, summary)
    from handcli.artifacts import file_digest

    out.with_suffix(".md").write_text(CARD.format(
        name=out.name, weights=_shown(weights), digest=file_digest(weights), batches=settings.batches,
        batch_size=settings.batch_size, states=settings.states, rows=summary["rows"], windows=summary["effective_rows"],
        noise_rows=summary["noise_rows"],
        prior=summary["prior_precision"], rms=summary["rms_residual_mm"], ridge=settings.ridge, seconds=seconds,
        threads=torch.get_num_threads()))
    print(f"wrote {out} and {out.with_suffix('.md')} (λ = {summary['prior_precision']:.4g}, "
          f"RMS residual {summary['rms_residual_mm']:.2f} mm, {seconds:.0f} s)")


if __name__ == "__main__":
    main()
