"""Camera intrinsics for a video whose camera is unknown.

Pixel convention (OpenCV): pixel centres at integer coordinates, (0, 0) is the centre of the top-left pixel,
so the principal point of a W x H image is ((W - 1) / 2, (H - 1) / 2).
"""

from __future__ import annotations

import math

import numpy as np

from handcli.errors import BadInput

# Default field of view across the longer image side. Phone main cameras are ~65-75 degrees, webcams
# ~60-80; 60 degrees errs toward a longer focal length (hands placed a little further away) and does not
# depend on whether the video is portrait or landscape.
DEFAULT_FOV_DEGREES = 60.0


def focal_from_fov(fov_degrees: float, width: int, height: int) -> float:
    """Focal length in pixels for a field of view measured across the longer image side."""
    return max(width, height) / (2.0 * math.tan(math.radians(fov_degrees) / 2.0))


def camera_matrix(width: int, height: int, focal: float | None = None, fov: float | None = None) -> np.ndarray:
    """(3, 3) float64 K: square pixels, principal point at the image centre, focal length `focal` pixels, or
    from `fov` degrees across the longer side, or DEFAULT_FOV_DEGREES. Raises BadInput for bad values."""
    if focal is not None and fov is not None:
        raise BadInput("give --focal or --fov, not both")
    if focal is not None and not (math.isfinite(focal) and focal > 0):
        raise BadInput(f"--focal must be a positive number of pixels, got {focal}")
    if fov is not None and not (math.isfinite(fov) and 1.0 <= fov <= 170.0):
        raise BadInput(f"--fov must be between 1 and 170 degrees, got {fov}")
    if focal is None:
        focal = focal_from_fov(DEFAULT_FOV_DEGREES if fov is None else fov, width, height)
    return np.array([[focal, 0.0, (width - 1) / 2.0],
                     [0.0, focal, (height - 1) / 2.0],
                     [0.0, 0.0, 1.0]])
