"""Train the 2D -> 3D articulation prior (handcli.fitting.lifter) and write weights/lifter.pt with its card.

Needs ../shared (FPHA subjects 1-3, the tuning split only) and the video benchmark's tuning split detections
(`scripts/video_bench.py --split tune` makes them), from which MediaPipe's 2D error is measured.

    .venv/bin/python scripts/train_lifter.py [--steps 6000] [--seed 0] [--out weights/lifter.pt]
    .venv/bin/python scripts/train_lifter.py --combine A.pt B.pt [--out weights/lifter.pt]   # an ensemble

--combine makes one ensemble (handcli.fitting.lifter.LifterEnsemble) of lifters trained with different seeds
and measures its own depth calibration on the same tuning frames.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from handcli.artifacts import load_artifact  # noqa: E402
from handcli.datagen.motion import default_hand_model, sample_motion  # noqa: E402
from handcli.fitting.lifter import LifterEnsemble, load_lifter, save_lifter  # noqa: E402
from handcli.handmodels.size import hand_length  # noqa: E402
from handcli.training.lifter import (  # noqa: E402
    ErrorBank,
    LifterTrainConfig,
    facing_cosine,
    residual_bank,
    train_lifter,
    world_error_bank,
)
from handcli.videobench import fpha, scoring  # noqa: E402
from handcli.videobench.hand import fit_open_hand, pose_hand, realistic_shape  # noqa: E402

FPHA_ROOT = REPO.parent / "shared" / "data" / "mocap" / "fpha"
MAX_RESIDUAL = 0.5  # hand lengths: a frame whose median error is larger is a detection of something else


def load_motion(subjects, every: int) -> tuple[np.ndarray, np.ndarray]:
    """Valid frames of the subjects' sequences (every `every`-th frame) as the open hand's skin-convention
    keypoints: (train (N, 21, 3), val (M, 21, 3)); every tenth sequence is validation.

    Each sequence is the open hand fitted to the mocap joints, then posed with joint_placement 0, as the
    video benchmark renders it (videobench.hand): the lifter then learns where MANO and MediaPipe put a
    real hand's keypoints, not FPHA's anatomical joint centres (wrist 12 % of the hand length nearer the
    knuckles, thumb base at the wrist)."""
    model = default_hand_model()
    train, val = [], []
    for i, path in enumerate(fpha.list_sequences(FPHA_ROOT, subjects)):
        points, valid = fpha.read_skeleton(path)
        if valid.sum() < 2:
            continue
        hand = pose_hand(model, realistic_shape(model, fit_open_hand(model, points, valid)))
        (val if i % 10 == 0 else train).append(hand.keypoints[valid][::every])
    return np.concatenate(train), np.concatenate(val)


def tuning_frames(work: Path, tag: str, clips: int | None = None) -> dict[str, np.ndarray]:
    """The tuning split's frames where MediaPipe found the hand: observed (N, 21, 2) pixels of the track
    videoscore scores (nearest wrist), truth (N, 21, 3) camera frame, K (N, 3, 3), is_right (N,) as detected,
    clip (N,) index; frames whose median error is over MAX_RESIDUAL hand lengths (a detection of something
    else) are left out. clips: only the first this many clips of the split (None: all), so that the rest can
    judge a lifter without having lent it their errors."""
    vs = scoring.load_videoscore()
    out: dict[str, list] = {"observed": [], "world": [], "truth": [], "K": [], "is_right": [], "clip": []}
    for clip, truth_path in enumerate(sorted((work / "tune").glob("clip*_gt.npz"))[:clips]):
        detect_path = work / "tune" / tag / truth_path.name.replace("_gt.npz", "_detect.npz")
        if not detect_path.exists():
            continue
        with np.load(truth_path, allow_pickle=False) as data:
            truth, K = data["keypoints3d"].astype(np.float64), data["K"].astype(np.float64)
        detected = load_artifact(detect_path)
        if detected.num_tracks == 0:
            continue
        _, _, track_of = scoring.picked_tracks(vs, detected, truth, K)  # the track videoscore scores
        frames = np.flatnonzero((track_of >= 0) & np.isfinite(truth).all((1, 2)))
        if not len(frames):
            continue
        observed = detected.keypoints2d[track_of[frames], frames, :, :2].astype(np.float64)
        world = detected.world_landmarks[track_of[frames], frames].astype(np.float64)
        Ks = np.repeat(K[None], len(frames), 0)
        keep = np.median(np.linalg.norm(residual_bank(observed, truth[frames], Ks), axis=-1), 1) < MAX_RESIDUAL
        for name, values in (("observed", observed), ("world", world), ("truth", truth[frames]), ("K", Ks),
                             ("is_right", detected.is_right[track_of[frames]]), ("clip", np.full(len(frames), clip))):
            out[name].append(values[keep])
    return {name: np.concatenate(values) for name, values in out.items()}


def gesture_frames(count: int, seed: int) -> np.ndarray:
    """(count, 21, 3) frames of the synthetic motion generator (handcli.datagen: counting, pinching, waving,
    grasps), so the prior also knows gestures FPHA's kitchen actions do not show."""
    windows = max(1, count // 16)
    motion = sample_motion(windows, 64, np.random.default_rng(seed), joint_placement=(0.0, 0.0))
    return motion.keypoints3d[:, ::4].reshape(-1, 21, 3)[:count].astype(np.float64)


def depth_calibration(model, frames: dict[str, np.ndarray]) -> tuple[float, dict]:
    """The factor that takes out the lifter's median depth bias on the tuning split's MediaPipe keypoints
    (with each clip's true hand length), and the bias per situation before it."""
    K, observed, world = frames["K"], frames["observed"].copy(), frames["world"].copy()
    left = ~frames["is_right"]
    observed[left, :, 0] = 2 * K[left, 0, 2][:, None] - observed[left, :, 0]  # as the image fit mirrors them
    world[left, :, 0] *= -1
    normalised = (observed - K[:, None, :2, 2]) / K[:, None, [0, 1], [0, 1]]
    _, depth = model.lift(torch.as_tensor(normalised), torch.as_tensor(world))
    truth = frames["truth"]
    log_ratio = np.log(depth.numpy() * hand_length(truth) / truth[..., 2].mean(1))
    bias = float(np.median(log_ratio))
    return float(np.exp(-bias)), {"median_depth_bias_pct": round(100 * np.expm1(bias), 2), "frames": int(len(log_ratio))}


def combine(paths: list[Path], frames: dict[str, np.ndarray], out: Path) -> int:
    """Write the ensemble of the lifters at `paths` to `out`, with its own depth calibration and a card that
    keeps each member's."""
    members = [load_lifter(path) for path in paths]
    ensemble = LifterEnsemble(members)
    ensemble.depth_scale, calibration = depth_calibration(ensemble, frames)
    member_cards = [torch.load(path, map_location="cpu", weights_only=True)["card"] for path in paths]
    card = {"members": member_cards, "depth_scale": round(ensemble.depth_scale, 5), "depth_calibration": calibration,
            "command": "scripts/train_lifter.py " + " ".join(sys.argv[1:])}
    save_lifter(ensemble, out, json.loads(json.dumps(card, default=float)))
    print(json.dumps({k: v for k, v in card.items() if k != "members"}, indent=1))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for field in fields(LifterTrainConfig):
        if isinstance(field.default, bool):  # a switch: argparse's bool("False") would be True
            parser.add_argument(f"--{field.name.replace('_', '-')}", action="store_true", default=field.default)
        else:
            parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    parser.add_argument("--every", type=int, default=1, help="use every N-th mocap frame")
    parser.add_argument("--gesture-share", type=float, default=0.3,
                        help="generated gesture frames, as a share of the FPHA frames")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".bench-video")
    parser.add_argument("--tag", default="default", help="video benchmark variant whose detections to use")
    parser.add_argument("--bank-clips", type=int, default=None,
                        help="MediaPipe's errors from the tuning split's first N clips only (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "weights" / "lifter.pt")
    parser.add_argument("--combine", type=Path, nargs="+", default=None, metavar="PT",
                        help="instead of training: one ensemble of these trained lifters")
    args = parser.parse_args()
    if not FPHA_ROOT.is_dir():
        print(f"train_lifter: FPHA not found at {FPHA_ROOT}", file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    if args.combine:
        return combine(args.combine, tuning_frames(args.work_dir, args.tag), args.out)
    config = LifterTrainConfig(**{f.name: getattr(args, f.name) for f in fields(LifterTrainConfig)})
    train_frames, val_frames = load_motion(fpha.SPLIT_SUBJECTS["tune"], args.every)
    gestures = gesture_frames(int(args.gesture_share * len(train_frames)), config.seed)
    frames = tuning_frames(args.work_dir, args.tag, args.bank_clips)
    # the bank pairs each frame's 2D and world-landmark errors: frames MediaPipe called a right hand (the
    # renders are right hands; a left call's landmarks are a mirrored hand, not an error to learn)
    right = frames["is_right"]
    rotation, articulation = world_error_bank(frames["world"][right], frames["truth"][right])
    bank = ErrorBank(residual_bank(frames["observed"][right], frames["truth"][right], frames["K"][right]),
                     rotation, articulation, facing_cosine(frames["truth"][right]))
    clips = len(np.unique(frames["clip"][right]))
    print(f"motion: {len(train_frames)} FPHA + {len(gestures)} generated train / {len(val_frames)} validation "
          f"frames; 2D residual bank: {len(bank)} frames of {clips} clips, median "
          f"{np.median(np.linalg.norm(bank.image, axis=-1)):.4f} hand lengths 2D, world rotation median "
          f"{np.degrees(np.median(np.arccos(np.clip((np.trace(rotation, axis1=1, axis2=2) - 1) / 2, -1, 1)))):.1f} "
          f"degrees, articulation {np.median(np.linalg.norm(articulation, axis=-1)):.4f} hand lengths")
    model, metrics = train_lifter(np.concatenate([train_frames, gestures]), val_frames, bank, config)
    model.depth_scale, calibration = depth_calibration(model, frames)
    card = {"config": asdict(config), "metrics": metrics, "depth_scale": round(model.depth_scale, 5),
            "depth_calibration": calibration, "fpha_frames": int(len(train_frames)),
            "generated_frames": int(len(gestures)), "val_frames": int(len(val_frames)),
            "residual_frames": int(len(bank)), "residual_clips": clips,
            "command": "scripts/train_lifter.py " + " ".join(sys.argv[1:])}
    card = json.loads(json.dumps(card, default=float))  # plain JSON types: the weights load with weights_only
    save_lifter(model, args.out, card)
    print(json.dumps(card, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
