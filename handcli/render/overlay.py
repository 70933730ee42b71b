"""Composing a video frame: a rendered layer blended over it, the 2D skeleton, labels, the 'uncertain frame'
highlight and side-by-side panels. All images are (H, W, 3) uint8 RGB and are changed in place."""

from __future__ import annotations

import cv2
import numpy as np

from handcli.handmodels.kinematics import CANONICAL_FINGERS
from handcli.render.colours import FINGER_COLOURS, HIGHLIGHT
from handcli.render.scene import Layer

FONT = cv2.FONT_HERSHEY_SIMPLEX


def blend_layer(image: np.ndarray, layer: Layer, opacity: float) -> None:
    """Alpha-blend `layer` over `image` at `opacity` (0 invisible, 1 opaque), only inside the layer's box.

    The coverage is blurred by a 3x3 Gaussian first: a cheap stand-in for multisampling (which costs llvmpipe
    three times the rasterisation) that softens the silhouette's stair steps; the inside stays opaque.
    """
    if layer.empty:
        return
    height, width = layer.rgba.shape[:2]
    region = image[layer.y0: layer.y0 + height, layer.x0: layer.x0 + width]
    alpha = cv2.GaussianBlur(layer.rgba[..., 3], (3, 3), 0).astype(np.float32) * (opacity / 255.0)
    colour = cv2.cvtColor(layer.rgba, cv2.COLOR_RGBA2RGB)
    region[:] = cv2.blendLinear(colour, np.ascontiguousarray(region), alpha, 1.0 - alpha)


def draw_skeleton(image: np.ndarray, pixels: np.ndarray, joint_colour: tuple[int, int, int],
                  joint_colours: np.ndarray | None = None) -> None:
    """The 21 keypoints (pixels (21, 2), canonical order) and their bones; bones coloured per finger.
    joint_colours (21, 3) uint8-range RGB overrides the joint colour (used for variance)."""
    height, width = image.shape[:2]
    if not np.isfinite(pixels).all() or np.abs(pixels).max() > 4 * (width + height):
        return  # a hand behind the camera or far outside the frame is not drawn as streaks
    scale = min(height, width) / 720  # sizes below suit a 720p frame
    radius, thickness = max(1, round(5 * scale)), max(1, round(3 * scale))
    points = np.round(pixels).astype(np.int32)
    for finger, colour in zip(CANONICAL_FINGERS, FINGER_COLOURS):
        chain = (0, *finger)
        for start, end in zip(chain[:-1], chain[1:]):
            cv2.line(image, tuple(points[start]), tuple(points[end]), colour, thickness, cv2.LINE_AA)
    for joint, point in enumerate(points):
        colour = joint_colour if joint_colours is None else tuple(int(c) for c in joint_colours[joint])
        cv2.circle(image, tuple(point), radius, colour, -1, cv2.LINE_AA)
        if radius > 2:
            cv2.circle(image, tuple(point), radius, (20, 20, 20), 1, cv2.LINE_AA)


def draw_text(image: np.ndarray, text: str, origin: tuple[int, int], colour=(255, 255, 255),
              scale: float | None = None) -> None:
    """Text with a dark outline so it reads on any background; origin is the baseline's left end."""
    scale = scale or max(0.45, image.shape[0] / 1200)
    thickness = max(1, round(scale * 2))
    cv2.putText(image, text, origin, FONT, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(image, text, origin, FONT, scale, colour, thickness, cv2.LINE_AA)


def highlight(image: np.ndarray, text: str) -> None:
    """Mark a frame as unreliable: a red border and a caption at the bottom left."""
    height, width = image.shape[:2]
    border = max(4, min(height, width) // 90)
    cv2.rectangle(image, (border // 2, border // 2), (width - 1 - border // 2, height - 1 - border // 2),
                  HIGHLIGHT, border)
    draw_text(image, text, (3 * border, height - 3 * border), HIGHLIGHT)


def side_by_side(left: np.ndarray, right: np.ndarray, left_title: str, right_title: str) -> np.ndarray:
    """Two equal-sized panels next to each other, titled; (H, W, 3) x 2 -> (H, 2W, 3)."""
    height = left.shape[0]
    scale = max(0.5, height / 900)
    for panel, title in ((left, left_title), (right, right_title)):
        draw_text(panel, title, (12, int(12 + 30 * scale)), scale=scale)
    combined = np.concatenate([left, right], 1)
    cv2.line(combined, (left.shape[1], 0), (left.shape[1], height - 1), (255, 255, 255), 2)
    return combined
