"""A clip's look: skin tone, lighting, camera exposure and noise, motion blur. Drawn per clip from its own
seeded generator, applied by `render`.

Nothing here changes the geometry, so none of it touches the ground truth.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

# Skin albedo (linear-ish RGB in [0, 1], what the Lambert shader multiplies), light to dark: seven steps
# spanning roughly the Fitzpatrick I-VI range, chosen by eye on rendered frames. Clips cycle through them, so
# dark hands are as common as light ones (detectors are known to do worse on them).
SKIN_TONES = (
    ("very light", (0.96, 0.83, 0.75)),
    ("light", (0.90, 0.73, 0.61)),
    ("light-medium", (0.82, 0.62, 0.49)),
    ("medium", (0.70, 0.50, 0.36)),
    ("medium-dark", (0.55, 0.37, 0.25)),
    ("dark", (0.42, 0.28, 0.19)),
    ("very dark", (0.30, 0.20, 0.14)),
)
# (The shader multiplies these by the shading without a camera's gamma curve, so lit-side pixels come out at
# roughly 60-90 % of the albedo; the darkest two are lifted a little for that, or they render near-black.)
AMBIENT_RANGE = (0.25, 0.6)  # share of light that reaches surfaces facing away from the lamp
LIGHT_CONE_DEGREES = 60.0  # the lamp within this angle of "above and behind the camera"
LIGHT_CENTRE = np.array([0.0, -0.5, -1.0]) / math.hypot(0.5, 1.0)  # surface -> light, camera frame (y down)
GAIN_RANGE = (0.75, 1.2)  # exposure: the whole frame, hand and background, as a camera would
WHITE_BALANCE = 0.06  # per-channel gain within 1 +- this (a warm or cool cast)
NOISE_SIGMA = (0.0, 3.0)  # sensor noise, grey levels (0-255)
BLUR_PROBABILITY = 0.4  # share of clips with motion blur
SHUTTER_RANGE = (0.3, 0.9)  # exposure time of a blurred clip, in frame intervals
BLUR_SUBFRAMES = 5  # odd: the middle sub-frame is the ground-truth instant


@dataclass
class Appearance:
    skin_tone: int  # index into SKIN_TONES
    skin_rgb: tuple[float, float, float]  # albedo after the light's tint
    ambient: float
    light_direction: tuple[float, float, float]  # unit, surface towards the light, camera frame
    gain: float
    white_balance: tuple[float, float, float]
    noise_sigma: float
    shutter: float  # 0 = no motion blur, else exposure in frame intervals, centred on the frame's instant
    subframes: int

    @property
    def skin_name(self) -> str:
        return SKIN_TONES[self.skin_tone][0]

    def summary(self) -> dict:
        return {**asdict(self), "skin_name": self.skin_name}


def sample_appearance(rng: np.random.Generator, tone: int | None = None) -> Appearance:
    """A clip's look; `tone` fixes the skin tone (clips.py cycles through them so every split holds all)."""
    tone = int(rng.integers(len(SKIN_TONES))) if tone is None else int(tone) % len(SKIN_TONES)
    tint = 1 + rng.uniform(-0.05, 0.05, 3)  # the lamp's colour
    skin = np.clip(np.array(SKIN_TONES[tone][1]) * tint, 0, 1)
    blurred = rng.random() < BLUR_PROBABILITY
    return Appearance(
        skin_tone=tone, skin_rgb=tuple(float(c) for c in skin), ambient=float(rng.uniform(*AMBIENT_RANGE)),
        light_direction=tuple(float(c) for c in random_in_cone(LIGHT_CENTRE, LIGHT_CONE_DEGREES, rng)),
        gain=float(rng.uniform(*GAIN_RANGE)),
        white_balance=tuple(float(c) for c in 1 + rng.uniform(-WHITE_BALANCE, WHITE_BALANCE, 3)),
        noise_sigma=float(rng.uniform(*NOISE_SIGMA)),
        shutter=float(rng.uniform(*SHUTTER_RANGE)) if blurred else 0.0,
        subframes=BLUR_SUBFRAMES if blurred else 1)


def random_in_cone(centre: np.ndarray, degrees: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector uniform over the spherical cap of half-angle `degrees` around unit `centre`."""
    cos_angle = rng.uniform(math.cos(math.radians(degrees)), 1.0)
    azimuth = rng.uniform(0, 2 * math.pi)
    helper = np.array([1.0, 0.0, 0.0]) if abs(centre[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(centre, helper)
    u /= np.linalg.norm(u)
    v = np.cross(centre, u)
    sin_angle = math.sqrt(1 - cos_angle ** 2)
    return cos_angle * centre + sin_angle * (math.cos(azimuth) * u + math.sin(azimuth) * v)


def vertex_colours(skin_rgb, rest_vertices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(V, 3) float32 skin colours with a gentle blotchy variation (+-6 %, a few random waves over the
    hand): real skin is not one flat colour, and a flat albedo makes the shading look plastic.
    rest_vertices (V, 3) metres, any fixed pose (the pattern follows the vertices)."""
    phase = np.zeros(len(rest_vertices))
    for _ in range(3):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        phase += np.sin(rest_vertices @ direction * rng.uniform(40, 120) + rng.uniform(0, 2 * math.pi))
    return (np.asarray(skin_rgb)[None] * (1 + 0.06 * phase[:, None] / 3)).clip(0, 1).astype(np.float32)


def subframe_offsets(appearance: Appearance) -> np.ndarray:
    """Times (in frame intervals) of the sub-frame renders, centred on 0: (subframes,)."""
    if appearance.subframes <= 1:
        return np.zeros(1)
    return appearance.shutter * (np.linspace(0, 1, appearance.subframes) - 0.5)


NOISE_BANK = 6  # noise frames drawn per clip and picked from at random per frame


class Exposure:
    """The camera's response, applied to composited uint8 frames (H, W, 3): gain and white balance as one
    per-channel lookup table, then Gaussian sensor noise (integer grey levels). The noise comes from a bank of
    NOISE_BANK frames drawn once per clip, one picked at random per frame: drawing fresh noise cost ~20 ms per
    1080p frame, and nothing downstream can exploit a few repeating noise patterns. OpenCV's generator makes
    the bank, seeded per clip so a re-render is identical."""

    def __init__(self, appearance: Appearance, rng: np.random.Generator):
        gains = appearance.gain * np.asarray(appearance.white_balance)
        self.table = np.clip(np.arange(256)[:, None] * gains[None] + 0.5, 0, 255).astype(np.uint8)[None]
        self.sigma = appearance.noise_sigma
        self.rng = rng
        self.bank: list[np.ndarray] = []
        cv2.setRNGSeed(int(rng.integers(2 ** 31)))

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        out = cv2.LUT(frame, self.table)
        if self.sigma > 0:
            if not self.bank or self.bank[0].shape != out.shape:
                self.bank = [cv2.randn(np.empty(out.shape, np.int16), 0.0, self.sigma) for _ in range(NOISE_BANK)]
            noise = self.bank[int(self.rng.integers(len(self.bank)))]
            out = cv2.add(out, noise, dtype=cv2.CV_8U)  # saturating: stays in 0-255
        return out
