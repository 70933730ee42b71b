"""The clips of a split and their render cache.

Clip `index` of a split is fixed by (split, index) alone: its situation is SITUATIONS[index % 3], its
sequence the index-th of the split's seeded sequence order (fpha.order_sequences), and every random choice
comes from a generator seeded with (split seed, index, stream). So `--clips 2` renders exactly the first two
clips per situation of `--clips 6`, and a subset of situations reuses the same files.

Work directory layout (default .bench-video/<split>/): clipNN.mp4 and clipNN_gt.npz. The ground-truth file
records its render key (RENDER_VERSION + everything the clip is made from); a clip is rendered again only
when the key differs or a file is missing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handcli.artifacts import atomic_path, file_digest
from handcli.errors import BadInput
from handcli.handmodels.open_hand import OPEN_HAND_PATH
from handcli.handmodels.size import hand_length, sample_hand_length
from handcli.render.camera import project
from handcli.videobench import RENDER_VERSION, SITUATIONS
from handcli.videobench import appearance as looks
from handcli.videobench import fpha
from handcli.videobench.backgrounds import FootagePool, sample_background
from handcli.videobench.cameras import in_frame, margin_px, sample_camera
from handcli.videobench.hand import fit_open_hand, forearm_mesh, pose_hand, realistic_shape, scale_to_length
from handcli.videobench.render import render_clip

SPLIT_SEEDS = {"tune": 1203, "test": 1204}
# independent random streams per clip, so changing how one thing is drawn does not reshuffle the others
STREAMS = {"window": 0, "size": 1, "camera": 2, "appearance": 3, "background": 4, "noise": 5, "forearm": 6}
PAN = {"egocentric": 0.08, "frontal": 0.0, "topdown": 0.0}  # head-worn cameras sway; the others stand still
# where the forearm goes (hand.forearm_mesh; camera frame): to the right shoulder below and beside a
# head-worn camera; down from a raised hand and back towards the body; down the image along the table
ARM_TOWARDS = {"egocentric": {"towards_point": np.array([0.15, 0.35, 0.0])},
               "frontal": {"towards_direction": np.array([0.0, 1.0, 0.3])},
               "topdown": {"towards_direction": np.array([0.0, 1.0, 0.0])}}


@dataclass(frozen=True)
class ClipSpec:
    split: str
    index: int
    situation: str
    sequence: Path  # skeleton.txt
    fpha_root: Path

    @property
    def name(self) -> str:
        return f"clip{self.index:02d}"

    @property
    def sequence_name(self) -> str:
        """Subject_N/action/seq."""
        return str(self.sequence.parent.relative_to(self.fpha_root))

    def rng(self, stream: str) -> np.random.Generator:
        return np.random.default_rng([SPLIT_SEEDS[self.split], self.index, STREAMS[stream]])


def clip_specs(split: str, fpha_root: str | Path, clips_per_situation: int,
               situations: tuple[str, ...] = SITUATIONS) -> list[ClipSpec]:
    """The split's first `clips_per_situation` clips of each of `situations`, in index order."""
    fpha_root = Path(fpha_root)
    order = fpha.order_sequences(fpha.list_sequences(fpha_root, fpha.SPLIT_SUBJECTS[split]), SPLIT_SEEDS[split])
    specs = []
    for slot in range(clips_per_situation):
        for k, situation in enumerate(SITUATIONS):
            index = slot * len(SITUATIONS) + k
            if situation in situations:
                if index >= len(order):
                    raise BadInput(f"--clips {clips_per_situation}: split {split} has only {len(order)} usable "
                                   f"sequences, enough for {len(order) // len(SITUATIONS)} clips per situation")
                specs.append(ClipSpec(split, index, situation, order[index], fpha_root))
    return specs


def render_key(spec: ClipSpec, pool: FootagePool) -> str:
    payload = {"version": RENDER_VERSION, "split": spec.split, "index": spec.index, "situation": spec.situation,
               "sequence": spec.sequence_name, "sequence_sha256": hashlib.sha256(spec.sequence.read_bytes()).hexdigest(),
               "backgrounds": pool.names, "hand_model": file_digest(OPEN_HAND_PATH)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def clip_paths(spec: ClipSpec, work: Path) -> tuple[Path, Path]:
    return work / f"{spec.name}.mp4", work / f"{spec.name}_gt.npz"


def load_truth(path: Path) -> dict:
    """A clip's ground truth: keypoints3d (T, 21, 3) metres camera frame canonical order, valid (T,), K (3, 3),
    params (dict: the clip's parameters), key (str)."""
    with np.load(path, allow_pickle=False) as z:
        return {"keypoints3d": z["keypoints3d"].astype(np.float64), "valid": z["valid"].astype(bool),
                "K": z["K"].astype(np.float64), "params": json.loads(str(z["params"])), "key": str(z["key"])}


def ensure_clip(spec: ClipSpec, work: Path, model, pool: FootagePool, backend: str = "auto",
                notify=lambda message: None) -> tuple[Path, dict, bool]:
    """(video path, ground truth as load_truth gives it, reused?) — rendered unless a matching copy exists."""
    video, gt = clip_paths(spec, work)
    key = render_key(spec, pool)
    if video.is_file() and gt.is_file():
        try:
            truth = load_truth(gt)
            if truth["key"] == key:
                return video, truth, True
        except (OSError, ValueError, KeyError):
            pass  # unreadable or from an older layout: render again
    notify(f"rendering {spec.name} ({spec.situation}, {spec.sequence_name})")
    make_clip(spec, work, model, pool, key, backend)
    return video, load_truth(gt), False


def make_clip(spec: ClipSpec, work: Path, model, pool: FootagePool, key: str, backend: str = "auto") -> None:
    """Render one clip and write its ground truth (video first, so a ground-truth file means a whole clip)."""
    video, gt = clip_paths(spec, work)
    work.mkdir(parents=True, exist_ok=True)
    num_frames = fpha.count_frames(spec.sequence)
    start, length = fpha.pick_window(num_frames, spec.rng("window"))
    points, valid = fpha.load_window(spec.sequence, start, length)
    hand = pose_hand(model, realistic_shape(model, fit_open_hand(model, points, valid)))
    target_length = sample_hand_length(spec.rng("size"))
    hand, factor = scale_to_length(hand, target_length)
    camera = sample_camera(hand.keypoints, spec.situation, spec.rng("camera"))
    keypoints, vertices = camera.place(hand.keypoints), camera.place(hand.vertices)
    K = camera.K
    pixels, _ = project(keypoints, K)
    if not in_frame(pixels, camera.width, camera.height, margin_px(camera.width, camera.height) - 0.5):
        raise RuntimeError(f"{spec.name}: placed hand leaves the frame")  # sample_camera guarantees it
    # skin tones cycle with the clip index (consecutive clips are different situations, so each situation
    # gets a spread of tones and a split of 7 or more clips holds every tone)
    look = looks.sample_appearance(spec.rng("appearance"), tone=spec.index)
    skin = looks.vertex_colours(look.skin_rgb, vertices[0], spec.rng("appearance"))
    meshes = [(vertices, hand.faces, skin), forearm_mesh(keypoints, target_length, spec.rng("forearm"), look.skin_rgb,
                                                           **ARM_TOWARDS[spec.situation])]
    background = sample_background(pool, camera.width, camera.height, length, PAN[spec.situation],
                                   spec.rng("background"))
    backend_used = render_clip(video, meshes, K, camera.width, camera.height, background, look,
                               spec.rng("noise"), fps=fpha.FPS, backend=backend)
    chain_px = hand_length(np.concatenate([pixels, np.zeros_like(pixels[..., :1])], -1))  # (T,) on screen
    params = {
        "clip": spec.name, "index": spec.index, "split": spec.split, "situation": spec.situation,
        "sequence": spec.sequence_name, "window_start": start, "frames": length,
        "width": camera.width, "height": camera.height, "fov_deg": camera.fov_deg, "focal": camera.focal,
        "distance": camera.distance, "facing": camera.facing, "perturb_deg": camera.perturb_deg,
        "hand_length": float(hand_length(keypoints).mean()), "hand_scale": factor,
        "mocap_valid": float(valid.mean()), "hand_px": camera.hand_px, "hand_px_2d": float(np.median(chain_px)),
        "hand_frac": camera.hand_px / min(camera.width, camera.height),
        "depth_min": float(keypoints[..., 2].min()), "depth_max": float(keypoints[..., 2].max()),
        "skin_tone": look.skin_tone, "skin_name": look.skin_name, "blur": look.shutter > 0,
        "shutter": look.shutter, "ambient": look.ambient, "gain": look.gain, "noise_sigma": look.noise_sigma,
        "background": background.source, "background_attempts": background.attempts, "pan": PAN[spec.situation],
        "backend": backend_used, "camera": camera.summary(), "appearance": look.summary(),
    }
    with atomic_path(gt) as tmp:
        with open(tmp, "wb") as handle:
            # the fitted model is rendered on every frame (the fit fills mocap gaps), so all frames are truth
            np.savez(handle, keypoints3d=keypoints.astype(np.float32), valid=np.ones(length, bool), K=K,
                     consecutive=np.array(True), image_size=np.array([camera.width, camera.height]),
                     fps=np.float32(fpha.FPS), params=np.array(json.dumps(params, default=_json)),
                     key=np.array(key))


def _json(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value).__name__)
