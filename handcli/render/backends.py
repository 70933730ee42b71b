"""Choose a rendering backend: OpenGL (EGL, headless) when a context can be made, else the painter."""

from __future__ import annotations

from typing import Callable

import numpy as np

from handcli.errors import BadInput
from handcli.render.painter import PainterRenderer
from handcli.render.scene import AMBIENT, LIGHT_DIRECTION

BACKENDS = ("auto", "gl", "painter")


def make_renderer(width: int, height: int, backend: str = "auto",
                  notify: Callable[[str], None] = lambda message: None, *, samples: int = 0,
                  ambient: float = AMBIENT, light_direction: np.ndarray = LIGHT_DIRECTION):
    """A renderer for width x height images.

    backend: "gl" (error if no GL context), "painter", or "auto": GL if it works, otherwise the painter with
    a one-line notice through `notify`. samples: GL multisampling (anti-aliasing; the painter has none).
    ambient / light_direction: the lighting (scene.lambert); the defaults are the overlay's.
    """
    if backend not in BACKENDS:
        raise BadInput(f"--backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
    if backend == "painter":
        return PainterRenderer(width, height, ambient, light_direction)
    try:
        from handcli.render.gl import GLRenderer

        return GLRenderer(width, height, samples, ambient, light_direction)
    except Exception as error:  # no moderngl, no libEGL, no usable driver: all mean "no GL here"
        reason = (str(error).splitlines() or [type(error).__name__])[0][:120]
        if backend == "gl":
            raise BadInput(f"--backend gl: no OpenGL context could be made ({reason}); "
                           "install libegl1, libgl1 and libgl1-mesa-dri (make system-deps) or use --backend painter") from None
        notify(f"render: no OpenGL context ({reason}); using the painter fallback (flat shading)")
        return PainterRenderer(width, height, ambient, light_direction)
