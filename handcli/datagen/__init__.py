"""Synthetic training data for the refiner: clean hand motion and a corruption model of per-frame estimators.

`sample_motion` (motion.py) generates clean right-hand motion with motion-state labels; `corrupt_keypoints`
(corruption.py) turns it into what a per-frame detector/estimator returns. See docs/data.md.
"""

from handcli.datagen.corruption import CorruptedKeypoints, CorruptionConfig, corrupt_keypoints
from handcli.datagen.motion import SyntheticMotion, sample_motion

__all__ = ["CorruptedKeypoints", "CorruptionConfig", "SyntheticMotion", "corrupt_keypoints", "sample_motion"]
