"""A video of the open hand model, rendered in skin tones over a plain wall, with its exact ground truth.

MediaPipe detects this hand on every frame, so the clip serves as handcli's bundled demo sample (ours to ship:
CC0 mesh, our own rendering) and as an end-to-end test whose true keypoints are known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from handcli.artifacts import Artifact, atomic_path, make_meta
from handcli.render.backends import make_renderer
from handcli.render.overlay import blend_layer
from handcli.render.scene import Mesh
from handcli.render.video import VideoWriter

SKIN = np.array([0.87, 0.67, 0.55])
WALL = np.array([205, 200, 190], np.uint8)
# right hand upright in front of the camera (OpenCV axes), palm towards it (checked on rendered frames)
UPRIGHT = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def open_close_motion(num_frames: int, fps: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Hand-model parameters of an open-close-wave motion: global_orient (T,3), hand_pose (T,15,3), transl (T,3)."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames) / fps
    period = 2.0 + 0.5 * rng.random()
    curl = 0.6 * (1 - np.cos(2 * np.pi * t / period))  # 0 (open) .. 1.2 rad (closed)
    base = Rotation.from_matrix(UPRIGHT)
    sway = Rotation.from_rotvec(np.stack([0.1 * np.sin(2 * np.pi * t / 3.1), 0.2 * np.sin(2 * np.pi * t / 2.3),
                                          0.05 * np.sin(2 * np.pi * t / 1.7)], -1))
    global_orient = (sway * base).as_rotvec()
    hand_pose = np.zeros((num_frames, 15, 3))
    hand_pose[:, :12, 2] = curl[:, None]  # finger flexion (MANO joints 1-12) about the local z axis
    hand_pose[:, 12:, 1] = -0.3 * curl[:, None]  # the thumb folds in
    transl = np.stack([0.03 * np.sin(2 * np.pi * t / 3.0), 0.09 + 0.01 * np.sin(2 * np.pi * t / 2.0),
                       0.42 + 0.03 * np.sin(2 * np.pi * t / 4.0)], -1)
    return {"global_orient": global_orient, "hand_pose": hand_pose, "transl": transl}


def render_synthetic_video(path: str | Path, num_frames: int = 90, width: int = 640, height: int = 480,
                           fps: float = 30.0, seed: int = 0, backend: str = "auto") -> Artifact:
    """Write an H.264 clip of the open hand to `path` (atomically) and return its ground truth: keypoints3d
    (1, T, 21, 3), the parameters, K and image size."""
    from handcli.handmodels import load_hand_model

    model = load_hand_model("open")
    motion = open_close_motion(num_frames, fps, seed)
    as_tensor = lambda array: torch.as_tensor(array, dtype=torch.float32)
    with torch.no_grad():
        output = model(as_tensor(motion["global_orient"]), as_tensor(motion["hand_pose"]),
                       torch.zeros(num_frames, model.num_betas), as_tensor(motion["transl"]), True)
    vertices, faces = output.vertices.numpy(), model.faces.numpy()
    focal = 0.87 * max(width, height)
    K = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    # a wall lit unevenly from one side, so the background is not a flat colour
    background = (WALL[None, None] * np.linspace(0.85, 1.05, width)[None, :, None]).clip(0, 255).astype(np.uint8)
    background = np.repeat(background, height, axis=0)
    renderer = make_renderer(width, height, backend)
    try:
        with atomic_path(path) as tmp, VideoWriter(tmp, width, height, fps) as writer:
            for frame_vertices in vertices:
                frame = background.copy()
                blend_layer(frame, renderer.render([Mesh(frame_vertices, faces, SKIN)], K), 1.0)
                writer.write(frame)
    finally:
        renderer.release()
    T = num_frames
    return Artifact(
        keypoints3d=output.joints.numpy()[None], valid=np.ones((1, T), bool), is_right=np.array([True]), fps=fps,
        K=K, image_size=np.array([width, height]), frame_index=np.arange(T), track_id=np.zeros(1, np.int64),
        global_orient=motion["global_orient"][None], hand_pose=motion["hand_pose"][None],
        transl=motion["transl"][None], betas=np.zeros((1, model.num_betas)),
        meta=make_meta("synthetic", hand_model="open", config={"seed": seed, "num_frames": T, "size": [width, height]}))
