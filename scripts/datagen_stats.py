"""Statistics of the synthetic training data (handcli.datagen) against real data; numbers go to docs/data.md.

    python scripts/datagen_stats.py fpha [--fpha DIR] [--windows 512] [--frames 64]
        clean synthetic motion vs FPHA mocap ground truth: joint speeds and accelerations, wrist speed,
        finger bend angles; a table and docs/images/datagen_motion.png, datagen_angles.png
    python scripts/datagen_stats.py calibrate [--landmarks PKL] [--video MP4]
        a real detector's errors (MediaPipe world landmarks of a real clip), the same measurements on our
        corrupted synthetic data, our ranges and the handeval `dev` protocol's values;
        docs/images/datagen_calibration.png. --video also runs MediaPipe on the clip for 2D/depth/orientation.
    python scripts/datagen_stats.py timing
        wall and CPU time of sample_motion + corrupt_keypoints for 256 x 64
    python scripts/datagen_stats.py samples
        docs/images/datagen_samples.png: a few synthetic windows, clean and corrupted, with state labels
    python scripts/datagen_stats.py poses
        docs/images/datagen_poses.png: the anchor articulations and grasp synergies on the open hand

Data under ../shared is read, never copied: FPHA is for evaluation/tuning only.
"""

from __future__ import annotations

import argparse
import glob
import json
import pickle
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from handcli.datagen import CorruptionConfig, corrupt_keypoints, sample_motion  # noqa: E402
from handcli.datagen import measure  # noqa: E402
from handcli.handmodels.kinematics import CANONICAL_FINGERS  # noqa: E402

SHARED = REPO.parent / "shared"
IMAGES = REPO / "docs" / "images"
FPHA_DIR = SHARED / "data" / "mocap" / "fpha"
LANDMARKS = SHARED / "data" / "video" / "dexretarget_open_close.mediapipe_world_landmarks.pkl"
VIDEO = SHARED / "data" / "video" / "dexretarget_open_close.mp4"
# FPHA joint order (wrist, 5 MCPs, then PIP/DIP/TIP per finger) -> canonical (documented in shared/README.md)
FPHA_TO_CANONICAL = [0, 1, 6, 7, 8, 2, 9, 10, 11, 3, 12, 13, 14, 4, 15, 16, 17, 5, 18, 19, 20]
# the evaluation's `dev` noise protocol (shared/bench/handeval_dev.py), for the range check only
DEV_PROTOCOL = dict(jitter=0.004, depth=0.015, depth_rho=0.7, bias=0.004, scale=0.03, outlier_rate=0.03,
                    outlier_mag=0.025, drop_per_frame=1 / 60, drop_len=(3, 15))
TIPS = [4, 8, 12, 16, 20]


# -------------------------------------------------------------------------------------------- loading
def load_fpha(root: Path, min_frames: int = 32) -> list[np.ndarray]:
    """All FPHA sequences (T, 21, 3) metres, canonical order; empty or short files skipped."""
    sequences = []
    for path in sorted(glob.glob(str(root / "Subject_*" / "*" / "*" / "skeleton.txt"))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                rows = np.loadtxt(path, ndmin=2)
            except ValueError:
                continue
        if rows.shape[0] < min_frames or rows.shape[1] != 64:
            continue
        sequences.append(rows[:, 1:].reshape(-1, 21, 3)[:, FPHA_TO_CANONICAL] / 1000.0)
    return sequences


class _ArraysOnly(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and nothing else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}")


def load_landmarks(path: Path) -> np.ndarray:
    """The pickled list of (21, 3) MediaPipe world landmarks -> (T, 21, 3) float64."""
    with open(path, "rb") as handle:
        frames = _ArraysOnly(handle).load()
    return np.stack([np.asarray(frame, np.float64).reshape(21, 3) for frame in frames])


# ------------------------------------------------------------------------------------------ helpers
def percentiles(values: np.ndarray, qs=(10, 50, 90)) -> list[float]:
    return [float(v) for v in np.percentile(np.asarray(values).ravel(), qs)]


def hand_centred(keypoints3d: np.ndarray) -> np.ndarray:
    """The landmark file's frame: wrist at the origin, z towards the middle MCP, index MCP in the y-z plane.
    (..., 21, 3) -> (..., 21, 3)."""
    centred = keypoints3d - keypoints3d[..., :1, :]
    z = centred[..., 9, :] / np.linalg.norm(centred[..., 9, :], axis=-1, keepdims=True)
    x = np.cross(centred[..., 5, :], z)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    y = np.cross(z, x)
    frame = np.stack([x, y, z], -2)  # rows
    return np.einsum("...ij,...kj->...ki", frame, centred)


def synthetic_clean(windows: int, frames: int, seed: int):
    return sample_motion(windows, frames, np.random.default_rng(seed))


# ------------------------------------------------------------------------------------------------ fpha
# FPHA's own high-frequency noise: median over sequences of the quiet-frame high-pass residual (metres);
# `run_fpha` measures it again and prints it
FPHA_NOISE = 0.00053


def motion_statistics(sequences: list[np.ndarray], sensor_noise: float = 0.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Pooled per-frame quantities of a list of (T, 21, 3) tracks (units: mm, mm/frame, mm/frame^2, degrees).

    sensor_noise > 0 adds that much white noise (m) first, to compare with noisy ground truth on equal terms."""
    rng = np.random.default_rng(seed)
    stats: dict[str, list] = {k: [] for k in ("speed", "wrist_speed", "tip_speed_in_hand", "accel", "wrist_accel",
                                              "tip_accel_in_hand", "bend_speed", "seq_accel", "smooth_accel",
                                              "curl", "thumb_curl", "tip_reach", "pinch_gap")}
    bends: dict[str, list] = {}
    for seq in sequences:
        if sensor_noise > 0:
            seq = seq + rng.normal(0, sensor_noise, seq.shape)
        stats["smooth_accel"].append((measure.accelerations(gaussian_filter1d(seq, 2.0, axis=0)) * 1000).ravel())
        speed = measure.speeds(seq) * 1000
        accel = measure.accelerations(seq) * 1000
        local = seq - seq[:, :1]
        stats["speed"].append(speed.ravel())
        stats["wrist_speed"].append(speed[:, 0])
        stats["tip_speed_in_hand"].append((measure.speeds(local)[:, TIPS] * 1000).ravel())
        stats["accel"].append(accel.ravel())
        stats["wrist_accel"].append(accel[:, 0])
        stats["tip_accel_in_hand"].append((measure.accelerations(local)[:, TIPS] * 1000).ravel())
        stats["seq_accel"].append([accel.mean()])
        angles = measure.bend_angles(seq)
        for name, value in angles.items():
            bends.setdefault(name, []).append(value)
        stats["bend_speed"].append(np.abs(np.diff(np.stack(list(angles.values()), -1), axis=0)).ravel())
        for finger in ("index", "middle", "ring", "pinky"):
            stats["curl"].append(angles[f"{finger}_mcp"] + angles[f"{finger}_pip"] + angles[f"{finger}_dip"])
        stats["thumb_curl"].append(angles["thumb_mcp"] + angles["thumb_ip"])
        # fingertip-wrist distance over the finger's length (1 = straight), skeleton-independent curl
        bones = measure.bone_lengths(seq)
        for chain in range(1, 5):
            length = bones[:, 4 * chain: 4 * chain + 4].sum(-1)
            stats["tip_reach"].append(np.linalg.norm(seq[:, TIPS[chain]] - seq[:, 0], axis=-1) / length)
        stats["pinch_gap"].append(np.linalg.norm(seq[:, 4] - seq[:, 8], axis=-1) * 1000)
    out = {k: np.concatenate(v) for k, v in stats.items()}
    for group, names in (("MCP", ("index_mcp", "middle_mcp", "ring_mcp", "pinky_mcp")),
                         ("PIP", ("index_pip", "middle_pip", "ring_pip", "pinky_pip")),
                         ("DIP", ("index_dip", "middle_dip", "ring_dip", "pinky_dip")),
                         ("thumb MCP", ("thumb_mcp",)), ("thumb IP", ("thumb_ip",))):
        out[f"bend {group}"] = np.concatenate([np.concatenate(bends[n]) for n in names])
    pip = np.concatenate([np.concatenate(bends[f"{f}_pip"]) for f in ("index", "middle", "ring", "pinky")])
    dip = np.concatenate([np.concatenate(bends[f"{f}_dip"]) for f in ("index", "middle", "ring", "pinky")])
    bent = pip > 20
    out["DIP/PIP (PIP>20deg)"] = dip[bent] / pip[bent]
    return out


ROWS = [("speed", "joint speed (mm/frame)"), ("wrist_speed", "wrist speed (mm/frame)"),
        ("tip_speed_in_hand", "fingertip speed rel. wrist (mm/frame)"), ("accel", "joint accel (mm/frame^2)"),
        ("wrist_accel", "wrist accel (mm/frame^2)"), ("tip_accel_in_hand", "fingertip accel rel. wrist (mm/frame^2)"),
        ("seq_accel", "mean accel per sequence (mm/frame^2)"),
        ("smooth_accel", "joint accel after Gaussian smoothing, sigma 2 frames (mm/frame^2)"),
        ("bend_speed", "bend-angle speed (deg/frame)"),
        ("curl", "finger curl MCP+PIP+DIP (deg)"), ("thumb_curl", "thumb curl MCP+IP (deg)"),
        ("tip_reach", "fingertip-wrist distance / finger length"), ("pinch_gap", "thumb-index tip distance (mm)"),
        ("bend MCP", "MCP bend (deg)"), ("bend PIP", "PIP bend (deg)"), ("bend DIP", "DIP bend (deg)"),
        ("bend thumb MCP", "thumb MCP bend (deg)"), ("bend thumb IP", "thumb IP bend (deg)"),
        ("DIP/PIP (PIP>20deg)", "DIP/PIP bend ratio")]


def run_fpha(args) -> dict:
    real = load_fpha(Path(args.fpha))
    motion = synthetic_clean(args.windows, args.frames, args.seed)
    synthetic = list(motion.keypoints3d.astype(np.float64))
    noise = [measure.highpass_residual(s)[measure.quiet_frames(s)].std() for s in real if len(s) >= 40]
    real_stats, syn_stats = motion_statistics(real), motion_statistics(synthetic)
    noisy_stats = motion_statistics(synthetic, sensor_noise=FPHA_NOISE, seed=args.seed)
    print(f"FPHA: {len(real)} sequences, {sum(len(s) for s in real)} frames; its quiet-frame high-pass residual "
          f"(sensor noise) median {np.median(noise) * 1000:.2f} mm; synthetic: {args.windows} windows x {args.frames} "
          f"frames (seed {args.seed}); 'synthetic + noise' adds {FPHA_NOISE * 1000:.2f} mm white noise\n")
    print("| quantity | FPHA mean (p10 / p50 / p90) | synthetic mean (p10 / p50 / p90) | "
          "synthetic + noise mean (p10 / p50 / p90) |")
    print("| --- | --- | --- | --- |")
    table = {"fpha_noise_mm": float(np.median(noise) * 1000)}

    def cell(values):
        return f"{values.mean():.2f} ({' / '.join(f'{v:.2f}' for v in percentiles(values))})"

    for key, label in ROWS:
        r, s, n = real_stats[key], syn_stats[key], noisy_stats[key]
        table[key] = dict(fpha_mean=float(r.mean()), fpha=percentiles(r), synthetic_mean=float(s.mean()),
                          synthetic=percentiles(s), noisy_mean=float(n.mean()), noisy=percentiles(n))
        print(f"| {label} | {cell(r)} | {cell(s)} | {cell(n)} |")
    states, counts = np.unique(motion.motion_state, return_counts=True)
    shares = {int(k): round(float(c) / motion.motion_state.size, 3) for k, c in zip(states, counts)}
    print("\nstate label shares:", shares)
    if args.plots:
        plot_fpha(real_stats, syn_stats, noisy_stats, Path(args.plots))
    return table


def plot_fpha(real: dict, synthetic: dict, noisy: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    panels = [("speed", "joint speed (mm/frame)", 40), ("wrist_speed", "wrist speed (mm/frame)", 30),
              ("tip_speed_in_hand", "fingertip speed rel. wrist (mm/frame)", 20),
              ("accel", "joint acceleration (mm/frame²)", 15),
              ("smooth_accel", "joint accel., smoothed σ=2 (mm/frame²)", 6),
              ("seq_accel", "mean acceleration per sequence (mm/frame²)", 10)]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (key, title, top) in zip(axes.ravel(), panels):
        bins = np.linspace(0, top, 60)
        ax.hist(np.clip(real[key], 0, top), bins, density=True, histtype="stepfilled", alpha=0.45, label="FPHA (mocap)")
        ax.hist(np.clip(synthetic[key], 0, top), bins, density=True, histtype="step", lw=1.5, label="synthetic")
        ax.hist(np.clip(noisy[key], 0, top), bins, density=True, histtype="step", lw=1.2, ls="--",
                label="synthetic + FPHA-level noise")
        ax.set_title(title, fontsize=10)
        ax.set_yscale("log")
    axes[0, 0].legend()
    fig.suptitle("Clean synthetic motion vs FPHA ground truth (log density; last bin holds the tail)")
    fig.tight_layout()
    fig.savefig(out_dir / "datagen_motion.png", dpi=80)
    plt.close(fig)

    panels = [("bend MCP", 100), ("bend PIP", 120), ("bend DIP", 100), ("bend thumb MCP", 90), ("bend thumb IP", 100),
              ("DIP/PIP (PIP>20deg)", 2.0), ("curl", 300), ("thumb_curl", 150), ("tip_reach", 1.05), ("pinch_gap", 200),
              ("bend_speed", 10), ("tip_speed_in_hand", 20)]
    fig, axes = plt.subplots(3, 4, figsize=(16, 10))
    for ax, (key, top) in zip(axes.ravel(), panels):
        bins = np.linspace(0, top, 50)
        ax.hist(np.clip(real[key], 0, top), bins, density=True, alpha=0.55, label="FPHA (mocap)")
        ax.hist(np.clip(synthetic[key], 0, top), bins, density=True, alpha=0.55, label="synthetic")
        ax.set_title(key + (" (degrees)" if key.startswith("bend") else ""), fontsize=10)
    axes[0, 0].legend()
    fig.suptitle("Finger articulation from keypoints (bend 0 = straight; curl = summed bends; reach 1 = straight finger)")
    fig.tight_layout()
    fig.savefig(out_dir / "datagen_angles.png", dpi=80)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ calibrate
def detector_errors(track: np.ndarray) -> dict[str, float]:
    """Error statistics of a hand-centred keypoint track (T, 21, 3) without ground truth (docs/data.md)."""
    quiet = measure.quiet_frames(track)
    residual = measure.highpass_residual(track)[:, 1:]  # the wrist is the origin
    bones = measure.bone_lengths(track)
    reference = np.median(bones, 0)
    relative = bones / reference
    scale = np.median(relative, 1)  # common (whole-hand) scale
    scale_slow = gaussian_filter1d(scale, 2.0)
    own = (relative / scale[:, None] - 1) * reference  # per-bone length error beyond the common scale, metres
    own_slow = gaussian_filter1d(own, 2.0, axis=0)
    lags = (1, 2, 5, 10, 20)
    bone_acf = measure.autocorrelation(bones - reference, lags)
    scale_acf = measure.autocorrelation(scale - scale.mean(), lags)
    # Gaussian-smoothed white noise has ACF exp(-k^2 / (4 sigma^2)): sigma from the lag where it falls below 1/2
    half_lag = np.interp(0.5, bone_acf[::-1], np.array(lags[::-1], float))
    finger_residual = np.stack([np.linalg.norm(residual[:, np.array(chain) - 1], axis=-1).max(-1)
                                for chain in CANONICAL_FINGERS], -1)  # residual has no wrist column
    speed = np.linalg.norm(np.gradient(gaussian_filter1d(track, 2.0, axis=0), axis=0), axis=-1)[:, 1:] * 1000
    residual_norm = np.linalg.norm(residual, axis=-1) * 1000

    def residual_at(low, high):
        pick = (speed >= low) & (speed < high)
        return float(np.sqrt((residual_norm[pick] ** 2).mean())) if pick.any() else float("nan")

    return {
        "residual_rms_speed_0_1_mm": residual_at(0, 1),
        "residual_rms_speed_2_4_mm": residual_at(2, 4),
        "residual_rms_speed_8_16_mm": residual_at(8, 16),
        "jitter_quiet_mm": float(residual[quiet].std() * 1000),
        "jitter_all_mm": float(residual.std() * 1000),
        "bone_length_dev_mm": float((bones - reference).std(0).mean() * 1000),
        "scale_std": float(scale.std()),
        "scale_fast_std": float(measure.highpass_residual(scale).std()),
        "scale_slow_std": float(scale_slow.std()),
        "scale_rho": float(max(scale_acf[2], 1e-6) ** (1 / 5)),  # AR(1) coefficient from the lag-5 autocorrelation
        "bias_mm": float(own_slow.std(0).mean() / np.sqrt(2) * 1000),  # bone error = difference of two joint biases
        "bias_timescale_frames": float(half_lag / (2 * np.sqrt(np.log(2)))),
        "outlier_frames_15mm": float((finger_residual.max(-1) > 0.015).mean()),
        "bone_acf": [float(v) for v in bone_acf],
        "scale_acf": [float(v) for v in scale_acf],
    }


def video_errors(video: Path) -> dict[str, float]:
    """Run MediaPipe Hands (the pip package's bundled model) on the clip: 2D noise, per-axis jitter,
    orientation flicker, PnP depth variation, hand scores."""
    import imageio
    import mediapipe as mp
    from scipy.spatial.transform import Rotation

    reader = imageio.get_reader(str(video))
    width, height = reader.get_meta_data()["size"]
    image_2d, world, scores = [], [], []
    with mp.solutions.hands.Hands(static_image_mode=False, max_num_hands=1, model_complexity=1) as hands:
        for frame in reader:
            result = hands.process(frame)
            if not result.multi_hand_landmarks:
                image_2d.append(None)
                continue
            image_2d.append(np.array([[p.x * width, p.y * height] for p in result.multi_hand_landmarks[0].landmark]))
            world.append(np.array([[p.x, p.y, p.z] for p in result.multi_hand_world_landmarks[0].landmark]))
            scores.append(result.multi_handedness[0].classification[0].score)
    detected = [u for u in image_2d if u is not None]
    rate = len(detected) / len(image_2d)
    uv, world = np.stack(detected), np.stack(world)
    quiet = measure.quiet_frames(world)
    diagonal = np.linalg.norm(uv.max(1) - uv.min(1), axis=-1).mean()
    residual_2d = measure.highpass_residual(uv)
    residual_3d = measure.highpass_residual(world)
    # orientation of the palm per frame (Kabsch against the first frame)
    palm = world[:, [0, 1, 5, 9, 13, 17]] - world[:, [0, 1, 5, 9, 13, 17]].mean(1, keepdims=True)
    u, _, vt = np.linalg.svd(np.einsum("pi,tpj->tij", palm[0], palm))
    fix = np.sign(np.linalg.det(np.einsum("tij,tjk->tik", u, vt)))
    u[:, :, -1] *= fix[:, None]
    rotvec = Rotation.from_matrix(np.einsum("tij,tjk->tki", u, vt)).as_rotvec()
    residual_rot = np.degrees(measure.highpass_residual(rotvec))
    # translation from 2D + world landmarks with an assumed focal length (relative depth does not depend on it)
    focal = 1000.0
    depth = []
    for points, image in zip(world, uv):
        du, dv = image[:, 0] - width / 2, image[:, 1] - height / 2
        A = np.zeros((42, 3))
        A[:21, 0], A[:21, 2] = focal, -du
        A[21:, 1], A[21:, 2] = focal, -dv
        rhs = np.concatenate([du * points[:, 2] - focal * points[:, 0], dv * points[:, 2] - focal * points[:, 1]])
        depth.append(np.linalg.lstsq(A, rhs, rcond=None)[0][2])
    depth = np.array(depth)
    return {
        "detection_rate": rate,
        "pixel_noise_quiet_frac": float(residual_2d[quiet].std() / diagonal),
        "pixel_noise_all_frac": float(residual_2d.std() / diagonal),
        "hand_diagonal_px": float(diagonal),
        "jitter_quiet_axes_mm": [float(v) for v in residual_3d[quiet].reshape(-1, 3).std(0) * 1000],
        "rotation_jitter_quiet_deg": float(residual_rot[quiet].std()),
        "rotation_jitter_all_deg": float(residual_rot.std()),
        "depth_rel_std": float(depth.std() / depth.mean()),
        "depth_rel_fast_std": float(measure.highpass_residual(depth).std() / depth.mean()),
        "depth_acf": [float(v) for v in measure.autocorrelation(depth, (1, 2, 5, 10, 20))],
        "hand_score_p5_p50": percentiles(scores, (5, 50)),
    }


def synthetic_detector_errors(windows: int, frames: int, seed: int, config: CorruptionConfig | None) -> list[dict]:
    """`detector_errors` of our synthetic tracks (corrupted with config, or clean for None), measured in the
    same hand-centred frame on the frames that are neither dropped nor mirrored."""
    motion = synthetic_clean(windows, frames, seed)
    tracks = motion.keypoints3d
    keep = np.ones(tracks.shape[:2], bool)
    if config is not None:
        corrupted = corrupt_keypoints(tracks, np.random.default_rng(seed + 1), config)
        tracks, keep = corrupted.keypoints3d, corrupted.valid & ~corrupted.swapped
    return [detector_errors(hand_centred(track[ok].astype(np.float64)))
            for track, ok in zip(tracks, keep) if ok.sum() >= 30]


def range_position(value: float, low: float, high: float) -> str:
    """Where value sits in a log-uniform [low, high]: its quantile, or 'below'/'above'."""
    if value < low:
        return "below"
    if value > high:
        return "above"
    return f"q{np.log(value / low) / np.log(high / low):.2f}"


MEASURES = ("residual_rms_speed_0_1_mm", "residual_rms_speed_2_4_mm", "residual_rms_speed_8_16_mm", "jitter_quiet_mm",
            "jitter_all_mm", "bone_length_dev_mm", "scale_std", "scale_fast_std", "scale_slow_std",
            "scale_rho", "bias_mm", "bias_timescale_frames", "outlier_frames_15mm")


def run_calibrate(args) -> dict:
    track = load_landmarks(Path(args.landmarks))
    detector = detector_errors(track)
    config = CorruptionConfig()
    no_events = dict(outlier_rate=(0.0, 0.0), swap_rate=(0.0, 0.0), drop_rate=(0.0, 0.0))
    columns = {
        "clean synthetic (motion only)": synthetic_detector_errors(args.windows, args.frames, args.seed, None),
        "synthetic at range centres, no outliers": synthetic_detector_errors(
            args.windows, args.frames, args.seed, CorruptionConfig(spread=0.0, **no_events)),
        "synthetic, full default ranges": synthetic_detector_errors(args.windows, args.frames, args.seed, config),
    }
    result = {"detector": detector, "synthetic": {}, "ranges": config.ranges()}
    print(f"detector: {args.landmarks} ({len(track)} frames, hand-centred MediaPipe world landmarks)")
    print(f"synthetic: {args.windows} windows x {args.frames} frames (seed {args.seed}), measured the same way in the "
          "same hand-centred frame, on frames neither dropped nor mirrored\n")
    header = " | ".join(f"{c} p10 / p50 / p90" for c in columns)
    print(f"| measurement (no ground truth needed) | real detector | {header} |")
    print("| --- | --- |" + " --- |" * len(columns))
    for key in MEASURES:
        cells = []
        for name, rows in columns.items():
            values = [float(v) for v in np.nanpercentile([r[key] for r in rows], (10, 50, 90))]
            result["synthetic"].setdefault(name, {})[key] = values
            cells.append(" / ".join(f"{v:.3g}" for v in values))
        print(f"| {key} | {detector[key]:.3g} | " + " | ".join(cells) + " |")
    print("\nreal detector, autocorrelation at lags 1,2,5,10,20: bone-length error",
          np.round(detector["bone_acf"], 2).tolist(), "common scale", np.round(detector["scale_acf"], 2).tolist())
    if args.video:
        result["video"] = video_errors(Path(args.video))
        print("\nMediaPipe run on the video:", json.dumps(result["video"], indent=1))
    fpha_depth = 0.37  # FPHA's median wrist depth (m): the dev protocol's absolute depth noise as a fraction
    dev = {"jitter": DEV_PROTOCOL["jitter"], "bias": DEV_PROTOCOL["bias"], "bone_scale_fast": DEV_PROTOCOL["scale"],
           "depth_drift": DEV_PROTOCOL["depth"] / fpha_depth, "outlier_rate": DEV_PROTOCOL["outlier_rate"],
           "outlier_magnitude": DEV_PROTOCOL["outlier_mag"], "drop_rate": DEV_PROTOCOL["drop_per_frame"]}
    print("\n| magnitude | our range (log-uniform) | geometric centre | handeval dev | dev's quantile in our range |")
    print("| --- | --- | --- | --- | --- |")
    for name, (low, high) in config.ranges().items():
        dev_value = dev.get(name)
        where = range_position(dev_value, low, high) if dev_value is not None else "-"
        print(f"| {name} | {low:.4g} - {high:.4g} | {np.sqrt(low * high):.3g} | "
              f"{'-' if dev_value is None else f'{dev_value:.4g}'} | {where} |")
    for name, value in (("bone_scale_rho", None), ("depth_drift_rho", DEV_PROTOCOL["depth_rho"]),
                        ("bias_timescale", 10.0), ("jitter_depth_ratio", 1.0)):
        low, high = getattr(config, name)
        inside = "-" if value is None else ("inside" if low <= value <= high else "outside")
        print(f"| {name} (uniform) | {low} - {high} | - | {'-' if value is None else value} | {inside} |")
    print(f"| drop_length (frames) | {config.drop_length[0]} - {config.drop_length[1]} | - | "
          f"{DEV_PROTOCOL['drop_len'][0]} - {DEV_PROTOCOL['drop_len'][1] - 1} | inside |")
    result["dev"] = dev
    result["raw_error"] = raw_error_comparison(args.windows, args.frames, args.seed)
    if args.plots:
        plot_calibration(track, Path(args.plots), args.seed)
    return result


def raw_errors(clean: np.ndarray, observed: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sequence error of corrupted tracks on valid frames: MPJPE (mm), PA-MPJPE (mm, per-frame similarity
    Procrustes), acceleration error (mm/frame^2, on runs of 3 valid frames). clean/observed (B, T, 21, 3)."""
    out = {"mpjpe": [], "pa_mpjpe": [], "accel_error": []}
    for gt, obs, ok in zip(clean, observed, valid):
        if ok.sum() < 3:
            continue
        out["mpjpe"].append(np.linalg.norm(obs[ok] - gt[ok], axis=-1).mean() * 1000)
        x, y = obs[ok] - obs[ok].mean(1, keepdims=True), gt[ok] - gt[ok].mean(1, keepdims=True)
        u, sv, vt = np.linalg.svd(np.einsum("tji,tjk->tik", x, y))
        sign = np.sign(np.linalg.det(np.einsum("tij,tjk->tik", u, vt)))
        sv[:, -1] *= sign
        u[:, :, -1] *= sign[:, None]
        rotation = np.einsum("tij,tjk->tik", u, vt)
        factor = sv.sum(1) / (x**2).sum((1, 2))
        aligned = factor[:, None, None] * np.einsum("tji,tik->tjk", x, rotation)
        out["pa_mpjpe"].append(np.linalg.norm(aligned - y, axis=-1).mean() * 1000)
        run = ok[2:] & ok[1:-1] & ok[:-2]
        if run.any():
            diff = lambda a: a[2:] - 2 * a[1:-1] + a[:-2]  # noqa: E731
            out["accel_error"].append(np.linalg.norm(diff(obs)[run] - diff(gt)[run], axis=-1).mean() * 1000)
    return {k: np.array(v) for k, v in out.items()}


def raw_error_comparison(windows: int, frames: int, seed: int) -> dict:
    """Our corruption (default ranges) vs the evaluation's `dev` protocol applied to the same clean synthetic
    tracks: where does dev's strength fall among our sequences? The bench is imported from ../shared at run
    time (never copied); skipped when it is absent."""
    import importlib.util

    bench = SHARED / "bench" / "handeval_dev.py"
    if not bench.is_file():
        print("\n(no ../shared/bench/handeval_dev.py: dev comparison skipped)")
        return {}
    spec = importlib.util.spec_from_file_location("handeval_dev", bench)
    handeval = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handeval)
    clean = synthetic_clean(windows, frames, seed).keypoints3d.astype(np.float64)
    ours = corrupt_keypoints(clean, np.random.default_rng(seed + 2))
    dev_rng = np.random.default_rng(seed + 3)
    dev_runs = [handeval.corrupt(track, handeval.PROTOCOLS["dev"], dev_rng) for track in clean]
    dev_observed = np.stack([r[0] for r in dev_runs])
    dev_valid = np.stack([r[1] for r in dev_runs])
    mine = raw_errors(clean, ours.keypoints3d.astype(np.float64), ours.valid)
    theirs = raw_errors(clean, dev_observed, dev_valid)
    print(f"\nraw error of corrupted tracks, per sequence ({windows} synthetic windows x {frames} frames, "
          "same clean motion)")
    print("| error | ours (default ranges) p10 / p50 / p90 | handeval dev p10 / p50 / p90 | "
          "dev median's quantile among ours |")
    print("| --- | --- | --- | --- |")
    out = {}
    for key, label in (("mpjpe", "MPJPE (mm)"), ("pa_mpjpe", "PA-MPJPE (mm)"),
                       ("accel_error", "accel error (mm/frame^2)")):
        quantile = float((mine[key] < np.median(theirs[key])).mean())
        out[key] = {"ours": percentiles(mine[key]), "dev": percentiles(theirs[key]), "dev_median_quantile": quantile}
        print(f"| {label} | {' / '.join(f'{v:.2f}' for v in percentiles(mine[key]))} | "
              f"{' / '.join(f'{v:.2f}' for v in percentiles(theirs[key]))} | {quantile:.2f} |")
    return out


def plot_calibration(track: np.ndarray, out_dir: Path, seed: int) -> None:
    """Bone lengths over time and high-pass residuals: the real detector beside one corrupted synthetic track."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    motion = synthetic_clean(8, len(track), seed)
    corrupted = corrupt_keypoints(motion.keypoints3d, np.random.default_rng(seed + 1), CorruptionConfig(
        outlier_rate=(0.0, 0.0), swap_rate=(0.0, 0.0), drop_rate=(0.0, 0.0), spread=0.0))
    fake = hand_centred(corrupted.keypoints3d[0].astype(np.float64))
    clean = hand_centred(motion.keypoints3d[0].astype(np.float64))
    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    for row, (name, data) in enumerate((("MediaPipe, real clip", track), ("synthetic at range centres", fake))):
        bones = measure.bone_lengths(data) * 1000
        for b, label in ((4, "wrist-index MCP"), (5, "index proximal"), (11, "middle distal")):
            axes[row, 0].plot(bones[:, b] - np.median(bones[:, b]), lw=0.8, label=label)
        axes[row, 0].set_title(f"{name}: bone length - median (mm)", fontsize=9)
        axes[row, 0].legend(fontsize=7)
        residual = measure.highpass_residual(data)[:, 8] * 1000
        axes[row, 1].plot(residual, lw=0.7)
        axes[row, 1].set_title(f"{name}: index tip high-pass residual (mm)", fontsize=9)
        axes[row, 2].plot(data[:, 8] * 1000, lw=0.8)
        axes[row, 2].set_title(f"{name}: index tip, hand frame (mm)", fontsize=9)
    axes[1, 2].plot(clean[:, 8] * 1000, "k:", lw=0.8)
    fig.tight_layout()
    fig.savefig(out_dir / "datagen_calibration.png", dpi=80)
    plt.close(fig)


# ---------------------------------------------------------------------------------- timing & samples
def run_timing(args) -> dict:
    rng = np.random.default_rng(args.seed)
    sample_motion(8, 16, rng)  # load the hand model once
    rows = []
    for _ in range(args.repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        motion = sample_motion(256, 64, rng)
        mid_wall, mid_cpu = time.perf_counter(), time.process_time()
        corrupt_keypoints(motion.keypoints3d, rng)
        rows.append((mid_wall - wall, mid_cpu - cpu, time.perf_counter() - mid_wall, time.process_time() - mid_cpu))
    rows = np.array(rows)
    best = rows.min(0)
    print(f"256 x 64, best of {args.repeats}: sample_motion wall {best[0]:.3f} s (cpu {best[1]:.3f} s), "
          f"corrupt_keypoints wall {best[2]:.3f} s (cpu {best[3]:.3f} s)")
    return {"sample_motion_wall": best[0], "sample_motion_cpu": best[1], "corrupt_wall": best[2], "corrupt_cpu": best[3]}


def run_samples(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from handcli.datagen.corruption import default_intrinsics, project
    from handcli.handmodels.kinematics import CANONICAL_PARENTS

    motion = synthetic_clean(4, 64, args.seed)
    corrupted = corrupt_keypoints(motion.keypoints3d, np.random.default_rng(args.seed + 1))
    K = default_intrinsics()
    names = {-1: "gesture", 0: "reach", 1: "grasp", 2: "manipulate", 3: "release"}
    colours = ["k"] + ["tab:red"] * 4 + ["tab:green"] * 4 + ["tab:blue"] * 4 + ["tab:purple"] * 4 + ["tab:cyan"] * 4
    shown = range(0, 64, 9)
    fig, axes = plt.subplots(4, len(shown), figsize=(2.1 * len(shown), 9))
    for b in range(4):
        uv_clean = project(motion.keypoints3d[b].astype(np.float64), K)
        uv_noisy = project(corrupted.keypoints3d[b].astype(np.float64), K)
        for ax, t in zip(axes[b], shown):
            for c, p in enumerate(CANONICAL_PARENTS):
                if p >= 0:
                    ax.plot(uv_clean[t, [p, c], 0], uv_clean[t, [p, c], 1], color=colours[c], lw=1.5)
                    if corrupted.valid[b, t]:
                        ax.plot(uv_noisy[t, [p, c], 0], uv_noisy[t, [p, c], 1], color="0.5", lw=0.7, ls="--")
            centre = uv_clean[t].mean(0)
            ax.set_xlim(centre[0] - 160, centre[0] + 160)
            ax.set_ylim(centre[1] + 160, centre[1] - 160)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            flags = ("" if corrupted.valid[b, t] else " dropped") + (" outlier" if corrupted.outlier[b, t] else "") + \
                (" swapped" if corrupted.swapped[b, t] else "")
            ax.set_title(f"t={t} {names[int(motion.motion_state[b, t])]}{flags}", fontsize=7)
    fig.suptitle("Synthetic windows in the default camera (clean: colour; corrupted 3D projected: grey dashed)")
    fig.tight_layout()
    out = Path(args.plots) / "datagen_samples.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70)
    print("wrote", out)


def run_poses(args) -> None:
    """docs/images/datagen_poses.png: the anchor articulations and grasp synergies on the open hand's mesh."""
    import matplotlib
    import torch

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    from handcli.datagen import poses
    from handcli.datagen.motion import default_hand_model

    model = default_hand_model()
    frames = poses.model_frames(model)
    rng = np.random.default_rng(args.seed)
    shown = {"open": poses.OPEN, "relaxed": poses.RELAXED, "fist": poses.FIST,
             **{f"{name} grasp": poses.GRASPS[name] for name in poses.GRASP_NAMES},
             "pinch (closed)": poses.PINCH_CLOSED,
             "count 2": poses.counting_poses(np.array([[0, 1, 1, 0, 0]], bool), rng)[0],
             "preshape (power)": poses.preshape_poses(np.array([0]), rng)[0]}
    hand_pose = torch.as_tensor(poses.to_hand_pose(np.stack(list(shown.values())), frames), dtype=torch.float32)
    count = len(shown)
    with torch.no_grad():
        out = model(torch.zeros(count, 3), hand_pose, torch.zeros(count, model.num_betas), torch.zeros(count, 3))
    faces = model.faces.numpy()
    fig = plt.figure(figsize=(3.2 * 5, 3.2 * 4))
    for k, name in enumerate(shown):
        for view, (elev, azim) in enumerate(((-60, -90), (0, 180))):
            axis = fig.add_subplot(4, 5, 2 * k + view + 1, projection="3d")
            vertices = out.vertices[k].numpy()
            triangles = vertices[faces]
            normal = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
            normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
            a, e = np.radians(azim), np.radians(elev)
            towards_viewer = np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
            shade = 0.35 + 0.65 * np.clip(normal @ towards_viewer, 0, 1)
            axis.add_collection3d(Poly3DCollection(triangles, facecolors=np.array([0.93, 0.74, 0.6]) * shade[:, None],
                                                   edgecolor="none"))
            centre = (vertices.max(0) + vertices.min(0)) / 2
            radius = (vertices.max(0) - vertices.min(0)).max() / 2
            for setter, c in zip((axis.set_xlim, axis.set_ylim, axis.set_zlim), centre):
                setter(c - radius, c + radius)
            axis.set_box_aspect((1, 1, 1), zoom=1.3)
            axis.view_init(elev, azim)
            axis.set_axis_off()
            axis.set_title(f"{name} ({'palm' if view == 0 else 'side'})", fontsize=9)
    fig.tight_layout()
    out_path = Path(args.plots) / "datagen_poses.png"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=60)
    print("wrote", out_path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("fpha", "calibrate", "timing", "samples", "poses"):
        p = sub.add_parser(name)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--plots", default=str(IMAGES), help="folder for the plots ('' for none)")
        p.add_argument("--json", default=None, help="also write the numbers here")
        if name == "fpha":
            p.add_argument("--fpha", default=str(FPHA_DIR))
            p.add_argument("--windows", type=int, default=512)
            p.add_argument("--frames", type=int, default=64)
        if name == "calibrate":
            p.add_argument("--landmarks", default=str(LANDMARKS))
            p.add_argument("--video", default=None, help=f"e.g. {VIDEO}")
            p.add_argument("--windows", type=int, default=64)
            p.add_argument("--frames", type=int, default=256)
        if name == "timing":
            p.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    result = {"fpha": run_fpha, "calibrate": run_calibrate, "timing": run_timing, "samples": run_samples,
              "poses": run_poses}[args.command](args)
    if args.json and result is not None:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
