"""Refiner ablations in one command: train the full model and each ablation with the same budget, then score
all of them on FPHA with scripts/refiner_bench.py (needs the shared benchmark; training does not).

    .venv/bin/python scripts/refiner_ablations.py --steps 2000 --out-dir runs/ablations [--split tune]

Variants (TrainConfig switches): full; no_physics (no Euler-Lagrange term); deterministic_physics (L1 residual
penalty on x_hat instead of the virtual observable on x^0); no_dip (no motion-state / kinetic / stability
terms); no_masks (missing frames look observed to the model). Writes <out-dir>/<variant>.pt and results.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VARIANTS = {
    "full": {},
    "no_physics": {"no_physics": True},
    "deterministic_physics": {"deterministic_physics": True},
    "no_dip": {"no_dip": True},
    "no_masks": {"no_masks": True},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--out-dir", type=Path, default=REPO / "runs" / "ablations")
    parser.add_argument("--split", choices=("tune", "test"), default="tune")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--physics", action="store_true", help="also score R(q) (PAD-Hand eq. 28)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from handcli.training import TrainConfig, train_refiner

    args.out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.variants:
        weights = args.out_dir / f"{name}.pt"
        if not weights.is_file():
            train_refiner(TrainConfig(steps=args.steps, seed=args.seed, out=weights, progress=False,
                                      **VARIANTS[name]))
        report = args.out_dir / f"{name}.{args.split}.json"
        done = subprocess.run([sys.executable, str(REPO / "scripts" / "refiner_bench.py"), "--weights",
                               str(weights), "--split", args.split, "--json", str(report)]
                              + (["--physics"] if args.physics else []))
        if done.returncode != 0:
            print(f"{name}: benchmark unavailable or failed (exit {done.returncode})")
            continue
        results[name] = json.loads(report.read_text())["rows"]["refiner"]
    rq = f"{'R(q)':>10}" if args.physics else ""
    print(f"\n{'variant':<24}{'MPJPE':>8}{'PA-MPJPE':>10}{'ACCEL':>8}{rq}   ({args.split} split, {args.steps} steps)")
    for name, row in results.items():
        rq = f"{row['R_q']:>10.3f}" if args.physics else ""
        print(f"{name:<24}{row['mpjpe']:>8.2f}{row['pa_mpjpe']:>10.2f}{row['accel']:>8.2f}{rq}")
    (args.out_dir / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
