"""Rendering speed: frames drawn per second at 1280x720 with one hand, for each backend.

Measures exactly what `handcli render --video` does per frame minus decoding and encoding: copy the video
frame, pose the hand model (batched per 128 frames, amortised), render the mesh, blend it over the frame.
The scene mimics the shared open/close clip: K with a 60 degree horizontal field of view, a right hand
0.62 m away with the palm to the camera (about 330 x 400 px on screen) opening and closing.
End to end (decode + draw + encode) is measured with `handcli render` itself (docs/benchmarks.md).

    .venv/bin/python scripts/bench_render.py [--frames 300] [--backend gl painter] [--skeleton]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from handcli.artifacts import Artifact
from handcli.handmodels import load_hand_model
from handcli.render.backends import make_renderer
from handcli.render.colours import track_colours
from handcli.render.hands import HandMeshes
from handcli.stages.render import VIDEO_OPACITY, PanelSource

WIDTH, HEIGHT = 1280, 720


def scene(num_frames: int) -> tuple[Artifact, np.ndarray]:
    """One right hand opening and closing in front of the camera; (artifact with parameters, K (3, 3))."""
    focal = (WIDTH / 2) / np.tan(np.radians(30))
    K = np.array([[focal, 0, (WIDTH - 1) / 2], [0, focal, (HEIGHT - 1) / 2], [0, 0, 1]])
    # model rest frame: fingers along -x, palm towards -y -> camera: fingers up (-y), palm to the camera (-z)
    palm_to_camera = Rotation.from_matrix(np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float)).as_rotvec()
    t = np.arange(num_frames)
    curl = 0.6 * (1 - np.cos(2 * np.pi * t / 60)) / 2  # radians per joint, 2 s period at 30 fps
    hand_pose = np.zeros((1, num_frames, 15, 3), np.float32)
    hand_pose[0, :, :12, 2] = curl[:, None]  # index, middle, pinky, ring flex about their z axis
    global_orient = np.tile(palm_to_camera, (1, num_frames, 1)).astype(np.float32)
    transl = np.tile([0.1, 0.03, 0.62], (1, num_frames, 1)).astype(np.float32)
    betas = np.zeros((1, 10), np.float32)
    model = load_hand_model("open")
    with torch.no_grad():
        keypoints3d = model(torch.tensor(global_orient[0]), torch.tensor(hand_pose[0]),
                            torch.tensor(betas).expand(num_frames, -1), torch.tensor(transl[0]), True).joints
    artifact = Artifact(keypoints3d=keypoints3d.numpy()[None], valid=np.ones((1, num_frames), bool),
                        is_right=np.array([True]), K=K.astype(np.float32), global_orient=global_orient,
                        hand_pose=hand_pose, transl=transl, betas=betas)
    return artifact, K


def bench_backend(backend: str, artifact: Artifact, K: np.ndarray, skeleton: bool) -> dict[str, float]:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)  # stands in for a decoded frame
    renderer = make_renderer(WIDTH, HEIGHT, backend)
    source = PanelSource(artifact, HandMeshes(load_hand_model("open"), artifact), skeleton,
                         track_colours(artifact.is_right))
    offset = np.zeros(3)
    source.draw(frame.copy(), 0, renderer, K, offset, VIDEO_OPACITY)  # warm-up: shaders, buffers
    wall, cpu = [], []
    for index in range(artifact.num_frames):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        image = frame.copy()
        source.draw(image, index, renderer, K, offset, VIDEO_OPACITY)
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    renderer.release()
    wall_ms, cpu_ms = 1000 * np.array(wall), 1000 * np.array(cpu)
    return {"mean_ms": wall_ms.mean(), "median_ms": float(np.median(wall_ms)), "p95_ms": float(np.percentile(wall_ms, 95)),
            "fps": 1000 / wall_ms.mean(), "cpu_ms": cpu_ms.mean()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--backend", nargs="+", default=["gl", "painter"])
    parser.add_argument("--skeleton", action="store_true", help="also draw the 21-keypoint skeleton")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    artifact, K = scene(args.frames)
    print(f"{WIDTH}x{HEIGHT}, one hand, {args.frames} frames, {os.cpu_count()} CPU(s), "
          f"load average {os.getloadavg()[0]:.1f}")
    for backend in args.backend:
        result = bench_backend(backend, artifact, K, args.skeleton)
        print(f"{backend:8s} {result['fps']:6.1f} frames/s  mean {result['mean_ms']:5.1f} ms  median "
              f"{result['median_ms']:5.1f} ms  p95 {result['p95_ms']:5.1f} ms  (process CPU {result['cpu_ms']:5.1f} ms/frame)")


if __name__ == "__main__":
    main()
