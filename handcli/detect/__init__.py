"""Hands in video: MediaPipe detection, frame-to-frame tracking, camera intrinsics, and lifting the metric
landmarks into the camera frame. `handcli.stages.detect` puts them together."""

from handcli.detect.intrinsics import DEFAULT_FOV_DEGREES, camera_matrix
from handcli.detect.lifting import project, solve_translation
from handcli.detect.mediapipe_hands import MediaPipeHands
from handcli.detect.tracking import HandDetection, HandTracker, Track, TrackerConfig

__all__ = ["DEFAULT_FOV_DEGREES", "HandDetection", "HandTracker", "MediaPipeHands", "Track", "TrackerConfig",
           "camera_matrix", "project", "solve_translation"]
