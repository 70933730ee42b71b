"""Colours: per-track hand colours, per-finger bone colours, the variance colour map and its colour bar.
Everything is RGB (images are RGB throughout the render package)."""

from __future__ import annotations

import cv2
import numpy as np

# right hands in blues, left hands in oranges; further tracks of the same side get the next shade
RIGHT_COLOURS = ((0.30, 0.55, 0.95), (0.25, 0.80, 0.85), (0.55, 0.45, 0.95))
LEFT_COLOURS = ((0.98, 0.60, 0.25), (0.95, 0.40, 0.45), (0.90, 0.80, 0.25))
# skeleton bones per finger (thumb, index, middle, ring, pinky), RGB 0-255
FINGER_COLOURS = ((230, 70, 70), (240, 170, 40), (90, 200, 80), (60, 150, 240), (180, 90, 220))
HIGHLIGHT = (235, 40, 40)


def track_colours(is_right: np.ndarray) -> np.ndarray:
    """(H,) bool -> (H, 3) RGB in [0, 1]: left and right hands distinguishable, repeated sides shaded."""
    seen = {True: 0, False: 0}
    colours = []
    for right in np.asarray(is_right, bool).tolist():
        palette = RIGHT_COLOURS if right else LEFT_COLOURS
        colours.append(palette[seen[right] % len(palette)])
        seen[right] += 1
    return np.array(colours, np.float32).reshape(-1, 3)


def colour_lut(name: str = "viridis") -> np.ndarray:
    """(256, 3) float32 RGB in [0, 1] from OpenCV's built-in colour maps (viridis: perceptually uniform)."""
    code = {"viridis": cv2.COLORMAP_VIRIDIS, "turbo": cv2.COLORMAP_TURBO, "inferno": cv2.COLORMAP_INFERNO}[name]
    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], code)[:, 0]
    return bgr[:, ::-1].astype(np.float32) / 255.0


def map_values(values: np.ndarray, vmin: float, vmax: float, lut: np.ndarray) -> np.ndarray:
    """values (...,) -> RGB (..., 3) in [0, 1]; clipped to [vmin, vmax]; NaN maps to grey."""
    scaled = (np.asarray(values, np.float64) - vmin) / max(vmax - vmin, 1e-12)
    index = np.clip(np.nan_to_num(scaled, nan=0.0) * 255, 0, 255).astype(np.int64)
    colours = lut[index]
    colours[~np.isfinite(values)] = 0.5
    return colours


def draw_colour_bar(image: np.ndarray, vmin: float, vmax: float, lut: np.ndarray, label: str,
                    threshold: float | None = None) -> None:
    """Draw a vertical colour bar with three tick labels at the right edge of `image` (H, W, 3) uint8, in
    place; a red tick marks `threshold` when it lies in range."""
    height, width = image.shape[:2]
    bar_h = int(height * 0.5)
    bar_w = max(10, width // 70)
    scale = max(0.35, height / 1400)
    x1 = width - int(4.5 * bar_w) - int(60 * scale * 2)
    y1 = (height - bar_h) // 2
    ramp = (lut[np.linspace(255, 0, bar_h).astype(np.int64)] * 255).astype(np.uint8)  # top = vmax
    panel = image[y1 - 30: y1 + bar_h + 14, x1 - 8: width - 4]
    panel[:] = (panel * 0.45).astype(np.uint8)  # darken behind the bar so labels read on any frame
    image[y1: y1 + bar_h, x1: x1 + bar_w] = ramp[:, None, :]
    font = cv2.FONT_HERSHEY_SIMPLEX
    thickness = max(1, int(round(scale * 2)))
    cv2.putText(image, label, (x1, y1 - 12), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    for fraction in (0.0, 0.5, 1.0):
        y = int(y1 + bar_h - 1 - fraction * (bar_h - 1))
        value = vmin + fraction * (vmax - vmin)
        cv2.line(image, (x1 + bar_w, y), (x1 + bar_w + 4, y), (255, 255, 255), 1)
        cv2.putText(image, f"{value:.3g}", (x1 + bar_w + 7, y + int(5 * scale * 2)), font, scale,
                    (255, 255, 255), thickness, cv2.LINE_AA)
    if threshold is not None and vmin <= threshold <= vmax:
        y = int(y1 + bar_h - 1 - (threshold - vmin) / max(vmax - vmin, 1e-12) * (bar_h - 1))
        cv2.line(image, (x1 - 5, y), (x1 + bar_w + 2, y), HIGHLIGHT, 2)
