"""One clip's frames: the hand mesh (camera frame) rendered over its background with the clip's lighting,
motion blur from sub-frame renders, the camera's exposure, written as H.264 through handcli.render.video
(as render/synthetic.py does).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from handcli.artifacts import atomic_path
from handcli.render.backends import make_renderer
from handcli.render.overlay import blend_layer
from handcli.render.scene import Layer, Mesh
from handcli.render.video import VideoWriter
from handcli.videobench.appearance import Appearance, Exposure, subframe_offsets
from handcli.videobench.backgrounds import Background

MSAA_SAMPLES = 4  # GL multisampling: anti-aliased silhouettes, as a real camera's optics give


def vertices_at(vertices: np.ndarray, t: int, offset: float) -> np.ndarray:
    """Mesh (V, 3) at time t + offset (frame intervals, |offset| <= 1): linear between neighbouring frames
    (vertices (T, V, 3)); at the ends the motion is held. Over a fraction of a 30-fps frame the vertices move
    a few millimetres, so straight-line interpolation of positions stands in for interpolating the pose."""
    if offset == 0:
        return vertices[t]
    other = min(max(t + (1 if offset > 0 else -1), 0), len(vertices) - 1)
    weight = abs(offset)
    return (1 - weight) * vertices[t] + weight * vertices[other]


def render_clip(path: str | Path, meshes: list[tuple[np.ndarray, np.ndarray, np.ndarray]], K: np.ndarray,
                width: int, height: int, background: Background, appearance: Appearance,
                rng: np.random.Generator, fps: float = 30.0, backend: str = "auto") -> str:
    """Write the clip to `path` (atomically). meshes: [(vertices (T, V, 3) camera frame, faces (F, 3),
    colours (V, 3) or (3,))] drawn together every frame (the hand and its forearm).
    Returns the renderer's name ("gl" or "painter")."""
    num_frames = len(meshes[0][0])
    offsets = subframe_offsets(appearance)
    exposure = Exposure(appearance, rng)
    renderer = make_renderer(width, height, backend, samples=MSAA_SAMPLES, ambient=appearance.ambient,
                             light_direction=np.asarray(appearance.light_direction))
    try:
        with atomic_path(path) as tmp, VideoWriter(tmp, width, height, fps) as writer:
            for t in range(num_frames):
                layers = [renderer.render([Mesh(vertices_at(v, t, offset), faces, colours)
                                           for v, faces, colours in meshes], K) for offset in offsets]
                frame = background.frame(t).copy()
                composite(frame, layers)
                writer.write(exposure(frame))
    finally:
        renderer.release()
    return renderer.name


def composite(frame: np.ndarray, layers: list[Layer]) -> None:
    """Blend the sub-frame layers over `frame` (H, W, 3) uint8, in place: one layer as is; several averaged
    (each blended over the background, then the mean), only inside their common box — outside it every
    sub-frame is the background."""
    count = len(layers)
    layers = [layer for layer in layers if not layer.empty]
    if count == 1 or not layers:
        for layer in layers:
            blend_layer(frame, layer, 1.0)
        return
    x0 = min(layer.x0 for layer in layers)
    y0 = min(layer.y0 for layer in layers)
    x1 = max(layer.x0 + layer.rgba.shape[1] for layer in layers)
    y1 = max(layer.y0 + layer.rgba.shape[0] for layer in layers)
    base = frame[y0:y1, x0:x1]
    total = (count - len(layers)) * base.astype(np.float32)  # a sub-frame with nothing in view is background
    for layer in layers:
        patch = base.copy()
        blend_layer(patch, Layer(layer.rgba, layer.x0 - x0, layer.y0 - y0), 1.0)
        total += patch
    base[:] = np.clip(total / count + 0.5, 0, 255).astype(np.uint8)
