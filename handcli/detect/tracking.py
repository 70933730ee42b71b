"""Frame-to-frame association of hand detections into tracks with stable identities.

Each frame, live tracks and new detections are matched by the Hungarian algorithm on a cost that combines
(a) the mean 2D keypoint distance to the track's constant-velocity prediction, in hand sizes, (b) box overlap,
and (c) disagreement with the track's handedness. Handedness is evidence, not the key: MediaPipe flips it on
crossed or occluded hands, so it only breaks ties the geometry leaves open. A track unseen for more than
`max_gap_frames` ends; a later detection starts a new track. A new track is tentative until it has been
seen on `confirm_observations` frames, and a tentative track ends after only `tentative_max_gap_frames`
unseen frames (as multi-object trackers such as SORT treat new tracks): the gate widens with the gap, so
without this a one-frame false detection could be joined to a real hand that appears elsewhere half a second
later. Tracks observed on too few frames are dropped by `finished_tracks` (spurious detections).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

NUM_KEYPOINTS = 21
# velocity is extrapolated over at most this many frames: past that, a constant-velocity guess overshoots
MAX_EXTRAPOLATION_FRAMES = 2
_REJECT = 1e6


@dataclass
class HandDetection:
    """One hand seen in one frame."""

    keypoints2d: np.ndarray  # (21, 2) pixels [u, v]
    world_landmarks: np.ndarray  # (21, 3) metres, hand-centred, camera-aligned axes
    right_probability: float  # evidence that this is a right hand, 0..1 (0.5: no idea)
    score: float  # detector confidence, 0..1

    @property
    def box(self) -> np.ndarray:
        """(4,) [x0, y0, x1, y1]: the tight box around the keypoints."""
        return np.concatenate([self.keypoints2d.min(0), self.keypoints2d.max(0)])


@dataclass
class TrackerConfig:
    max_gap_frames: int = 15  # a track unseen on more consecutive frames than this ends (0.5 s at 30 fps)
    gate: float = 1.0  # largest keypoint distance, in hand sizes, to still match after a one-frame step
    box_weight: float = 0.5  # weight of (1 - IoU) in the matching cost
    handedness_weight: float = 0.5  # weight of |P(right) of detection - P(right) of track|
    duplicate_distance: float = 0.15  # two detections closer than this (hand sizes) are one hand seen twice
    confirm_observations: int = 3  # a track seen on fewer frames than this is tentative
    tentative_max_gap_frames: int = 2  # a tentative track unseen on more consecutive frames than this ends


@dataclass
class Track:
    """One hand's observations, in frame order."""

    track_id: int
    frames: list[int] = field(default_factory=list)
    detections: list[HandDetection] = field(default_factory=list)
    side_override: bool | None = None  # set by handcli.detect.linking.resolve_sides: the side it must be

    @property
    def last_frame(self) -> int:
        return self.frames[-1]

    @property
    def right_vote(self) -> float:
        """Sum over frames of (2 P(right) - 1): each frame votes with weight equal to its confidence."""
        return float(sum(2.0 * d.right_probability - 1.0 for d in self.detections))

    @property
    def is_right(self) -> bool:
        return self.right_vote > 0 if self.side_override is None else self.side_override

    @property
    def right_probability(self) -> float:
        """The track's mean handedness evidence as a probability, 0..1."""
        return 0.5 + 0.5 * self.right_vote / len(self.detections)

    def predict(self, frame: int) -> np.ndarray:
        """(21, 2) keypoints expected at `frame`: constant velocity from the last two observations."""
        last = self.detections[-1].keypoints2d
        if len(self.frames) < 2 or self.frames[-1] - self.frames[-2] > MAX_EXTRAPOLATION_FRAMES:
            return last
        velocity = (last - self.detections[-2].keypoints2d) / (self.frames[-1] - self.frames[-2])
        return last + velocity * min(frame - self.last_frame, MAX_EXTRAPOLATION_FRAMES)

    def add(self, frame: int, detection: HandDetection) -> None:
        self.frames.append(frame)
        self.detections.append(detection)


class HandTracker:
    """Online association: call `update` once per frame in order, then `finished_tracks`."""

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self.tracks: list[Track] = []

    def update(self, frame: int, detections: list[HandDetection]) -> list[int]:
        """Assign this frame's detections to tracks; returns the track id given to each kept detection."""
        detections = remove_duplicates(detections, self.config.duplicate_distance)
        live = [t for t in self.tracks if frame - t.last_frame - 1 <= self._max_gap(t)]
        assigned: dict[int, Track] = {}
        if live and detections:
            cost = np.array([[self._cost(track, frame, d) for d in detections] for track in live])
            for row, col in zip(*linear_sum_assignment(cost)):
                if cost[row, col] < _REJECT:
                    assigned[col] = live[row]
        ids = []
        for col, detection in enumerate(detections):
            track = assigned.get(col)
            if track is None:
                track = Track(track_id=len(self.tracks))
                self.tracks.append(track)
            track.add(frame, detection)
            ids.append(track.track_id)
        return ids

    def _max_gap(self, track: Track) -> int:
        """Unseen frames after which `track` ends: shorter while it is tentative."""
        if len(track.frames) < self.config.confirm_observations:
            return min(self.config.tentative_max_gap_frames, self.config.max_gap_frames)
        return self.config.max_gap_frames

    def _cost(self, track: Track, frame: int, detection: HandDetection) -> float:
        predicted = track.predict(frame)
        previous_box = track.detections[-1].box
        hand_size = max(float(np.hypot(*(previous_box[2:] - previous_box[:2]))), 1e-6)
        distance = float(np.linalg.norm(detection.keypoints2d - predicted, axis=-1).mean()) / hand_size
        # a hand may travel further the longer it was unseen
        if distance > self.config.gate * np.sqrt(frame - track.last_frame):
            return _REJECT
        predicted_box = np.concatenate([predicted.min(0), predicted.max(0)])
        overlap = box_iou(predicted_box, detection.box)
        handedness = abs(detection.right_probability - track.right_probability)
        return distance + self.config.box_weight * (1.0 - overlap) + self.config.handedness_weight * handedness

    def finished_tracks(self, min_observations: int) -> list[Track]:
        """Tracks observed on at least `min_observations` frames, in order of first appearance."""
        return [t for t in self.tracks if len(t.frames) >= min_observations]


def remove_duplicates(detections: list[HandDetection], max_distance: float) -> list[HandDetection]:
    """Keep the higher-scoring one of any two detections whose keypoints nearly coincide (in hand sizes)."""
    kept: list[HandDetection] = []
    for detection in sorted(detections, key=lambda d: -d.score):
        size = max(float(np.hypot(*(detection.box[2:] - detection.box[:2]))), 1e-6)
        if all(np.linalg.norm(detection.keypoints2d - other.keypoints2d, axis=-1).mean() / size > max_distance
               for other in kept):
            kept.append(detection)
    return kept


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two [x0, y0, x1, y1] boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def stack_tracks(tracks: list[Track], num_frames: int) -> dict[str, np.ndarray]:
    """Per-frame arrays for `tracks` over `num_frames` frames, NaN where a track was not seen:
    keypoints2d (H, T, 21, 3) [u, v, score], world_landmarks (H, T, 21, 3), boxes (H, T, 4), scores (H, T),
    valid (H, T), is_right (H,)."""
    H, T = len(tracks), num_frames
    keypoints2d = np.full((H, T, NUM_KEYPOINTS, 3), np.nan, np.float32)
    world_landmarks = np.full((H, T, NUM_KEYPOINTS, 3), np.nan, np.float32)
    boxes = np.full((H, T, 4), np.nan, np.float32)
    scores = np.zeros((H, T), np.float32)
    valid = np.zeros((H, T), bool)
    for h, track in enumerate(tracks):
        for t, detection in zip(track.frames, track.detections):
            keypoints2d[h, t, :, :2] = detection.keypoints2d
            keypoints2d[h, t, :, 2] = detection.score
            world_landmarks[h, t] = detection.world_landmarks
            boxes[h, t] = detection.box
            scores[h, t] = detection.score
            valid[h, t] = True
    is_right = np.array([t.is_right for t in tracks], bool)
    return dict(keypoints2d=keypoints2d, world_landmarks=world_landmarks, boxes=boxes, scores=scores,
                valid=valid, is_right=is_right)


def fill_unseen(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(H, T, ...) -> same shape: frames where `valid` (H, T) is False take values linearly interpolated
    between the nearest seen frames (held constant before the first and after the last); tracks never seen
    become zeros. The artifact contract wants finite outputs; `valid` keeps saying what was observed."""
    filled = np.array(values, dtype=np.float32, copy=True)
    frames = np.arange(valid.shape[1])
    for h in range(valid.shape[0]):
        seen = np.flatnonzero(valid[h])
        if seen.size == 0:
            filled[h] = 0.0
            continue
        if seen.size == valid.shape[1]:
            continue
        flat = filled[h].reshape(valid.shape[1], -1)
        for channel in range(flat.shape[1]):
            flat[:, channel] = np.interp(frames, seen, flat[seen, channel])
    return filled
