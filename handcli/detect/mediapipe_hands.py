"""MediaPipe Hands (legacy `solutions.hands`, video/tracking mode): one RGB frame in, its hands out.

Conventions resolved here (docs/detect.md):
* Handedness: MediaPipe labels hands as if the image were mirrored (selfie camera). Ordinary video is not
  mirrored, so its "Left" is a right hand; `mirrored=True` is for selfie-mirrored footage.
* Score: the legacy solution exposes no hand-presence or per-keypoint confidence, only the handedness
  classification score; we report that as the detection score (MediaPipe has already dropped hands below
  its detection / tracking thresholds).
* Pixels: normalised landmarks (0..1 across the image edges) become OpenCV pixel coordinates
  (u = x W - 0.5), matching `handcli.detect.intrinsics`.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack, contextmanager

import numpy as np

from handcli.detect.tracking import HandDetection


class MediaPipeHands:
    """Context manager around `mediapipe.solutions.hands.Hands(static_image_mode=False)`.

    Frames must come in video order: MediaPipe tracks a hand from the previous frame's landmarks and only
    runs its palm detector when it has lost one."""

    def __init__(self, max_hands: int = 2, model_complexity: int = 1, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, mirrored: bool = False):
        self.options = dict(static_image_mode=False, max_num_hands=max_hands, model_complexity=model_complexity,
                            min_detection_confidence=min_detection_confidence,
                            min_tracking_confidence=min_tracking_confidence)
        self.mirrored = mirrored
        self._hands = None
        self._resources = ExitStack()

    def __enter__(self) -> "MediaPipeHands":
        from mediapipe.python.solutions.hands import Hands

        with ExitStack() as stack:
            stack.enter_context(native_stderr_silenced())
            self._hands = Hands(**self.options)
            stack.callback(self._hands.close)  # closed before stderr is restored (last in, first out)
            self._resources = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        self._hands = None
        self._resources.close()

    def process(self, frame: np.ndarray) -> list[HandDetection]:
        """frame (H, W, 3) uint8 RGB -> the hands MediaPipe finds (any order)."""
        height, width = frame.shape[:2]
        result = self._hands.process(frame)
        if not result.multi_hand_landmarks:
            return []
        detections = []
        for image_landmarks, world_landmarks, handedness in zip(
                result.multi_hand_landmarks, result.multi_hand_world_landmarks, result.multi_handedness):
            normalised = np.array([(p.x, p.y) for p in image_landmarks.landmark], np.float64)
            world = np.array([(p.x, p.y, p.z) for p in world_landmarks.landmark], np.float64)
            label = handedness.classification[0]
            said_right = label.label == "Right"
            right = said_right if self.mirrored else not said_right
            detections.append(HandDetection(
                keypoints2d=normalised * (width, height) - 0.5,
                world_landmarks=world,
                right_probability=float(label.score if right else 1.0 - label.score),
                score=float(label.score)))
        return detections


@contextmanager
def native_stderr_silenced():
    """Send what native code writes to file descriptor 2 to /dev/null, while Python's `sys.stderr` (progress
    bars, warnings, errors) keeps reaching the real stderr. MediaPipe's C++ layers (TFLite, absl) print
    notices there that no Python setting switches off."""
    sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = sys.stderr
    replacement = None
    try:
        if _fileno(python_stderr) == 2:
            replacement = os.fdopen(os.dup(saved), "w", buffering=1,
                                    encoding=getattr(python_stderr, "encoding", None) or "utf-8",
                                    errors="backslashreplace")
            sys.stderr = replacement
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        if replacement is not None:
            replacement.flush()
            if sys.stderr is replacement:
                sys.stderr = python_stderr
            replacement.close()
        os.dup2(saved, 2)
        os.close(saved)


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
