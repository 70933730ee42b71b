"""Fit floor: how closely the hand model can follow clean ground-truth hands (FPHA subjects 1-4).

    .venv/bin/python scripts/fit_floor_fpha.py [--model open] [--subjects 1 2 3 4] [--limit N]

Every FPHA sequence is one track (its own shape, a pose per frame) fitted with `handcli.fitting.fit_keypoints`
to the ground-truth joints; the script reports the mean joint error over all frames, per subject and per
keypoint. FPHA is research-licensed: it is read from ../shared and nothing derived from it is written.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FPHA_ROOT = REPO.parent / "shared" / "data" / "mocap" / "fpha"
FPHA_TO_CANONICAL = [0, 1, 6, 7, 8, 2, 9, 10, 11, 3, 12, 13, 14, 4, 15, 16, 17, 5, 18, 19, 20]
KEYPOINT_NAMES = ["wrist"] + [f"{finger}_{joint}" for finger, joints in
                              (("thumb", ("cmc", "mcp", "ip", "tip")),) + tuple((f, ("mcp", "pip", "dip", "tip")) for f in ("index", "middle", "ring", "pinky"))
                              for joint in joints]


def load_fpha_subject(subject: int, root: Path = FPHA_ROOT) -> list[tuple[str, np.ndarray]]:
    """[(action/sequence, keypoints (T, 21, 3) metres, canonical order)] of one subject; empty files skipped."""
    sequences = []
    for path in sorted((root / f"Subject_{subject}").glob("*/*/skeleton.txt")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # empty files
            table = np.loadtxt(path, ndmin=2)
        if table.size == 0:
            continue
        keypoints = table[:, 1:].reshape(-1, 21, 3)[:, FPHA_TO_CANONICAL] / 1000.0
        sequences.append((f"{path.parent.parent.name}/{path.parent.name}", keypoints.astype(np.float32)))
    return sequences


def pad_tracks(sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack (T_i, 21, 3) sequences into (H, T_max, 21, 3) with NaN padding and the (H, T_max) valid mask."""
    longest = max(len(s) for s in sequences)
    keypoints = np.full((len(sequences), longest, 21, 3), np.nan, np.float32)
    valid = np.zeros((len(sequences), longest), bool)
    for h, sequence in enumerate(sequences):
        keypoints[h, : len(sequence)] = sequence
        valid[h, : len(sequence)] = True
    return keypoints, valid


def fit_floor(model, sequences: list[np.ndarray], iterations: int = 10) -> dict[str, np.ndarray]:
    """Fit all sequences at once; returns per-frame errors (N,) and per-keypoint errors (N, 21), metres."""
    from handcli.fitting import fit_keypoints

    keypoints, valid = pad_tracks(sequences)
    result = fit_keypoints(model, keypoints, valid, np.ones(len(sequences), bool), iterations=iterations)
    per_joint = np.linalg.norm(result.keypoints3d_fit - keypoints, axis=-1)[valid]  # (N, 21)
    return {"per_frame": per_joint.mean(-1), "per_joint": per_joint, "betas": result.betas}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="open", help="hand model: open or mano")
    parser.add_argument("--mano-dir", default=None)
    parser.add_argument("--subjects", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--limit", type=int, default=0, help="only the first N sequences per subject (0: all)")
    parser.add_argument("--iterations", type=int, default=10, help="Levenberg-Marquardt iterations")
    args = parser.parse_args(argv)
    if not FPHA_ROOT.is_dir():
        print(f"FPHA not found at {FPHA_ROOT}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    from handcli.handmodels import load_hand_model

    model = load_hand_model(args.model, args.mano_dir)
    all_joint_errors = []
    for subject in args.subjects:
        sequences = [keypoints for _, keypoints in load_fpha_subject(subject)]
        if args.limit:
            sequences = sequences[: args.limit]
        started = time.perf_counter()
        errors = fit_floor(model, sequences, args.iterations)
        seconds = time.perf_counter() - started
        all_joint_errors.append(errors["per_joint"])
        print(f"subject {subject}: {len(sequences)} sequences, {len(errors['per_frame'])} frames, "
              f"mean joint error {errors['per_frame'].mean() * 1000:.2f} mm "
              f"(median frame {np.median(errors['per_frame']) * 1000:.2f} mm, {seconds:.1f} s)")
    joint_errors = np.concatenate(all_joint_errors)
    print(f"all subjects: {len(joint_errors)} frames, mean joint error {joint_errors.mean() * 1000:.2f} mm")
    order = np.argsort(-joint_errors.mean(0))
    print("largest per-keypoint errors: " + ", ".join(f"{KEYPOINT_NAMES[k]} {joint_errors[:, k].mean() * 1000:.2f}"
                                                     for k in order[:8]) + " (mm)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
