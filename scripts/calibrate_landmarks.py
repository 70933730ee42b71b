"""Fit MediaPipe's landmark convention on the hand model (handcli.fitting.landmarks) -> weights/landmark_offsets.npz.

Data: the video benchmark's tuning split (FPHA subjects 1-3 rendered, handcli.videobench), whose clips carry
exact ground truth: the true hand is the open hand model, so fitting it to the true keypoints recovers every
joint's rotation; MediaPipe's 2D landmarks come from `handcli detect` on the render. Per keypoint the offset
that moves the true keypoint onto MediaPipe's landmark is solved by linear least squares.

    .venv/bin/python scripts/calibrate_landmarks.py --split tune            # after `video_bench.py --split tune`
    .venv/bin/python scripts/calibrate_landmarks.py --pair gt.npz detect.npz [--pair ...] --out offsets.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from handcli.artifacts import load_artifact
from handcli.fitting import fit_keypoints
from handcli.fitting.landmarks import FORMAT, LANDMARK_PARENT, OFFSETS_PATH, solve_offsets
from handcli.handmodels import load_hand_model
from handcli.handmodels.kinematics import MANO21_TO_CANONICAL, axis_angle_to_matrix, forward_kinematics_by_level
from handcli.handmodels.size import hand_length


def clip_rows(model, gt_path: Path, detect_path: Path):
    """(keypoints (N,21,3), parent rotations (N,21,3,3), hand lengths (N,), normalised landmarks (N,21,2)) of
    the frames where detect saw the true hand (the track nearest the true wrist in 2D, within a hand length)."""
    gt = np.load(gt_path, allow_pickle=False)
    truth = gt["keypoints3d"].astype(np.float64)
    truth = truth[0] if truth.ndim == 4 else truth
    K = gt["K"].astype(np.float64)
    det = load_artifact(detect_path)
    fit = fit_keypoints(model, truth[None], np.ones((1, len(truth)), bool), np.array([True]), iterations=10)
    rotations = axis_angle_to_matrix(torch.cat([torch.as_tensor(fit.global_orient[0])[:, None],
                                                torch.as_tensor(fit.hand_pose[0])], 1))
    _, transforms = forward_kinematics_by_level(rotations, model.rest_joints16(torch.as_tensor(fit.betas)).expand(
        len(truth), -1, -1))
    world = transforms[..., :3, :3].numpy().astype(np.float64)  # (T, 16, 3, 3)
    parent = world[:, list(LANDMARK_PARENT)][:, list(MANO21_TO_CANONICAL)]  # (T, 21, 3, 3) canonical
    projected = truth @ K.T
    wrist_px = projected[:, 0, :2] / projected[:, 0, 2:]
    length = hand_length(truth)
    rows = []
    for t in range(min(len(truth), det.num_frames)):
        if det.num_tracks == 0:
            break
        uv = det.keypoints2d[:, t, :, :2].astype(np.float64)
        distance = np.where(det.valid[:, t], np.linalg.norm(uv[:, 0] - wrist_px[t], axis=-1), np.inf)
        h = int(np.argmin(distance))
        size_px = K[0, 0] * length[t] / truth[t, 0, 2]
        if np.isfinite(distance[h]) and distance[h] < 0.5 * size_px and det.is_right[h]:
            rows.append((t, (uv[h] - K[:2, 2]) / K[[0, 1], [0, 1]]))
    if not rows:
        return None
    frames = np.array([t for t, _ in rows])
    return truth[frames], parent[frames], length[frames], np.stack([n for _, n in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", help="use every clip of this video-benchmark split (its work dir)")
    parser.add_argument("--work-dir", type=Path, default=Path(".bench-video"))
    parser.add_argument("--pair", nargs=2, action="append", type=Path, metavar=("GT", "DETECT"), default=[])
    parser.add_argument("--out", type=Path, default=OFFSETS_PATH)
    # Only the wrist and the thumb base by default: there the two conventions differ by construction (the
    # wrist crease against a joint inside the wrist, the thumb's CMC landmark against MANO's thumb root deep
    # in the palm). Offsets of the other keypoints also absorb MediaPipe's pose-dependent articulation errors
    # on the tuning renders (grasps without their object), and did not transfer: fitted on all 21, the bundled
    # open/close sample's depth error went from 4.4 % to 15 % (docs/hand_models.md).
    parser.add_argument("--keypoints", default="0,1", help="canonical keypoints that get an offset ('all': 21)")
    args = parser.parse_args()
    pairs = list(args.pair)
    if args.split:  # the benchmark's layout: <split>/clipNN_gt.npz and <split>/detect/clipNN_detect.npz
        split_dir = args.work_dir / args.split
        for gt in sorted(split_dir.glob("clip*_gt.npz")):
            detect = split_dir / "detect" / gt.name.replace("_gt.npz", "_detect.npz")
            if detect.exists():
                pairs.append((gt, detect))
    if not pairs:
        print("calibrate_landmarks: no clips (run scripts/video_bench.py --split tune first, or pass --pair)",
              file=sys.stderr)
        return 2
    model = load_hand_model("open")
    data = [rows for rows in (clip_rows(model, gt, det) for gt, det in pairs) if rows is not None]
    keypoints, parents, lengths, normalised = (np.concatenate(part) for part in zip(*data))
    offsets = solve_offsets(keypoints, parents, lengths, normalised, np.ones(normalised.shape[:2]))
    chosen = np.arange(21) if args.keypoints == "all" else [int(k) for k in args.keypoints.split(",")]
    offsets[np.setdiff1d(np.arange(21), chosen)] = 0.0  # each keypoint is solved on its own: the rest stay put
    before = _pixels(keypoints, normalised, np.zeros((21, 3)), parents, lengths)
    after = _pixels(keypoints, normalised, offsets, parents, lengths)
    np.savez(args.out, format=FORMAT, offsets=offsets, frames=len(keypoints), clips=len(data),
             keypoints=np.asarray(chosen))
    print(f"{len(data)} clips, {len(keypoints)} frames: landmark error {before:.4f} -> {after:.4f} "
          f"(normalised image units x1000, mean over keypoints); wrote {args.out}")
    for k, row in enumerate(offsets):
        print(f"  keypoint {k:2d}: " + " ".join(f"{100 * v:+6.2f}" for v in row) + "  % of hand length")
    return 0


def _pixels(keypoints, normalised, offsets, parents, lengths) -> float:
    """Mean distance between the offset keypoints' projections and the landmarks (normalised units x1000)."""
    moved = keypoints + lengths[:, None, None] * (parents @ offsets[None, :, :, None])[..., 0]
    return 1000 * float(np.linalg.norm(moved[..., :2] / moved[..., 2:] - normalised, axis=-1).mean())


if __name__ == "__main__":
    sys.exit(main())
