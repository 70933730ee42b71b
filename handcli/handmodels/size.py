"""How big adult hands are, and how big a set of keypoints says a hand is.

Hand length is the anthropometric one: wrist crease to the tip of the middle finger with the hand flat. On
keypoints it is the length of the chain wrist -> middle MCP -> PIP -> DIP -> tip (canonical 0, 9, 10, 11,
12), which equals the flat-hand straight line and does not change with the pose.

Statistics: British adults aged 19-65, S. Pheasant and C. M. Haslegrave, *Bodyspace: Anthropometry,
Ergonomics and the Design of Work*, 3rd ed. (CRC Press, 2006), hand length: men 189 mm (SD 10), women
174 mm (SD 9). A hand of unknown sex is the 50/50 mixture of the two: mean 181.5 mm, SD 12.1 mm (6.7 %),
which is the size prior the image fit uses (handcli.fitting.image) and the spread the video benchmark
renders hands from (handcli.videobench).
"""

from __future__ import annotations

import math

import numpy as np

HAND_LENGTH_MEN_M = (0.189, 0.010)  # (mean, SD)
HAND_LENGTH_WOMEN_M = (0.174, 0.009)
HAND_LENGTH_MEAN_M = 0.5 * (HAND_LENGTH_MEN_M[0] + HAND_LENGTH_WOMEN_M[0])
# variance of the 50/50 mixture: mean of the variances plus the variance of the means
HAND_LENGTH_SD_M = math.sqrt(0.5 * (HAND_LENGTH_MEN_M[1] ** 2 + HAND_LENGTH_WOMEN_M[1] ** 2)
                             + 0.25 * (HAND_LENGTH_MEN_M[0] - HAND_LENGTH_WOMEN_M[0]) ** 2)
MIDDLE_CHAIN = (0, 9, 10, 11, 12)  # canonical keypoints from the wrist to the middle fingertip


def hand_length(keypoints):
    """Hand length (...,) in the keypoints' unit from canonical keypoints (..., 21, 3), numpy or torch."""
    chain = keypoints[..., list(MIDDLE_CHAIN), :]
    bones = chain[..., 1:, :] - chain[..., :-1, :]
    if isinstance(bones, np.ndarray):
        return np.linalg.norm(bones, axis=-1).sum(-1)
    return bones.norm(dim=-1).sum(-1)


def sample_hand_length(rng: np.random.Generator) -> float:
    """One adult hand length in metres: a man's or a woman's with equal odds, from the Bodyspace statistics."""
    mean, sd = HAND_LENGTH_MEN_M if rng.random() < 0.5 else HAND_LENGTH_WOMEN_M
    return float(rng.normal(mean, sd))
