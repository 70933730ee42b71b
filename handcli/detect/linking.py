"""One identity per physical hand: link track fragments that do not overlap in time (or only at a handover).

The online tracker (handcli.detect.tracking) ends a track when its hand is unseen for longer than
`max_gap_frames`, so a hand that leaves the view, or that MediaPipe misses for a second, comes back as a new
track. Afterwards, fragments are linked end to start when the link is plausible:
  * they do not overlap in time (two hands seen together are two hands; the handover below excepted);
  * the same side: the handedness votes agree, or one of them is too weak to tell (|mean vote| < 0.2);
  * the same hand: the metric hand size from MediaPipe's world landmarks (median over each fragment) differs
    by less than `max_size_ratio`;
  * the way there is possible: the 2D wrist moved at most `base_hand_sizes + speed_hand_sizes x gap seconds`
    hand sizes (a hand that left at the left edge and comes back at the left edge links at once; across the
    image it needs time);
  * the gap is at most `max_gap_seconds`.
A handover is linked too: fragments that share at most `handover_frames` frames, the earlier one's last and
the later one's first, on which their keypoints nearly coincide. That is one hand that MediaPipe saw twice for
a frame (a duplicate just beyond the tracker's `duplicate_distance`), the copy then taking over the track;
two real hands would have to swap places within a frame. The sides must not disagree, but the sizes need not
agree (the two fits coincide on the image, and MediaPipe's metric size of a poor fit can be far off: 0.11 m
against 0.16 m on the video benchmark's case). The merged track keeps the higher-scoring detection on the
shared frames.
Candidate links are taken cheapest first (cost: the wrist's move in hand sizes plus the size mismatch), each
fragment end and start used once, so a re-entering hand takes the fragment nearest where it left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from handcli.detect.tracking import Track
from handcli.handmodels.size import hand_length

WRIST = 0


@dataclass
class LinkConfig:
    max_gap_seconds: float = 10.0  # longest absence still linked
    base_hand_sizes: float = 1.5  # wrist move allowed across any gap, in hand sizes (box diagonals)
    speed_hand_sizes: float = 4.0  # plus this many hand sizes per second of gap
    max_size_ratio: float = 1.25  # metric hand sizes (world landmarks) further apart than this: other hands
    weak_vote: float = 0.2  # |mean handedness vote| below this says nothing about the side
    edge_frames: int = 5  # observations at each fragment end that describe where and how big it was
    handover_frames: int = 2  # a handover's fragments share at most this many frames (module docstring)
    # and on them their keypoints lie within this mean distance, in hand sizes (box diagonals): twice the
    # tracker's same-frame duplicate distance, as the handover's timing is evidence of its own
    handover_hand_sizes: float = 0.3


def resolve_sides(tracks: list[Track], min_overlap: float = 0.5) -> list[int]:
    """Two hands seen together claiming the same side: the track with the clearly weaker mean handedness vote
    (below 0.8 of the other's) takes the other side (MediaPipe mislabels one of two hands far more often than
    two people show the same hand; with three or more hands at once, or equal votes, nothing is changed). Returns the ids of the tracks whose side was turned;
    their `side_override` is set."""
    flipped: list[int] = []
    for a, first in enumerate(tracks):
        for second in tracks[a + 1:]:
            if first.side_override is not None or second.side_override is not None:
                continue  # each side is settled once: a second turn could bring back the conflict it removed
            shared = len(set(first.frames) & set(second.frames))
            if shared < min_overlap * min(len(first.frames), len(second.frames)) or first.is_right != second.is_right:
                continue
            crowd = [t for t in tracks if t is not first and t is not second
                     and len(set(t.frames) & set(first.frames) & set(second.frames)) > 0]
            if crowd:
                continue
            weaker, stronger = sorted((first, second), key=lambda t: abs(t.right_vote) / len(t.detections))
            if abs(weaker.right_vote) / len(weaker.detections) >= 0.8 * abs(stronger.right_vote) / len(
                    stronger.detections):
                continue  # about equally sure: the vote cannot say which one is wrong
            weaker.side_override = not weaker.is_right
            flipped.append(weaker.track_id)
    return flipped


@dataclass
class Link:
    """Fragment `later` continues fragment `earlier` (track ids before linking) after `gap` unseen frames
    (negative: a handover, the two shared -gap frames)."""

    earlier: int
    later: int
    gap: int
    move_hand_sizes: float
    size_ratio: float

    def as_dict(self) -> dict:
        return {"earlier": self.earlier, "later": self.later, "gap_frames": self.gap,
                "move_hand_sizes": round(self.move_hand_sizes, 3), "size_ratio": round(self.size_ratio, 3)}


@dataclass
class _End:
    """What one end (first or last few observations) of a fragment looks like."""

    frame: int
    wrist: np.ndarray  # (2,) pixels
    hand_size: float  # pixels, box diagonal


def _end(track: Track, last: bool, count: int) -> _End:
    detections = track.detections[-count:] if last else track.detections[:count]
    boxes = np.array([d.box for d in detections])
    size = float(np.median(np.hypot(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])))
    return _End(frame=track.frames[-1] if last else track.frames[0],
                wrist=detections[-1 if last else 0].keypoints2d[WRIST], hand_size=max(size, 1e-6))


def metric_size(track: Track) -> float:
    """Median hand length (m) of the track's world landmarks (handcli.handmodels.size.hand_length)."""
    return float(np.median(hand_length(np.array([d.world_landmarks for d in track.detections]))))


def _side(track: Track, weak: float) -> int:
    """+1 right, -1 left, 0 cannot tell."""
    mean = track.right_vote / len(track.detections)
    return 0 if abs(mean) < weak else (1 if mean > 0 else -1)


def _handover(earlier: Track, later: Track, config: LinkConfig) -> bool:
    """Whether `later` takes over from `earlier` at a duplicate: they share 1 to `handover_frames` frames,
    `earlier`'s last and `later`'s first, and on each their keypoints nearly coincide."""
    shared = sorted(set(earlier.frames) & set(later.frames))
    if not 0 < len(shared) <= config.handover_frames or later.frames[-1] <= earlier.frames[-1]:
        return False
    if shared[-1] - shared[0] != len(shared) - 1:  # consecutive frames: a gap is minus the frames shared
        return False
    if earlier.frames[-len(shared):] != shared or later.frames[:len(shared)] != shared:
        return False
    for offset in range(len(shared)):
        first, second = earlier.detections[offset - len(shared)], later.detections[offset]
        size = max(float(np.hypot(*(first.box[2:] - first.box[:2]))), 1e-6)
        if np.linalg.norm(first.keypoints2d - second.keypoints2d, axis=-1).mean() / size > config.handover_hand_sizes:
            return False
    return True


def link_fragments(tracks: list[Track], fps: float, config: LinkConfig | None = None
                   ) -> tuple[list[Track], list[Link]]:
    """Merge linked fragments (in frame order, ids renumbered by first appearance); returns (tracks, links)."""
    config = config or LinkConfig()
    if len(tracks) < 2:
        return tracks, []
    starts = [_end(t, False, config.edge_frames) for t in tracks]
    ends = [_end(t, True, config.edge_frames) for t in tracks]
    sizes = [metric_size(t) for t in tracks]
    sides = [_side(t, config.weak_vote) for t in tracks]
    candidates = []
    for a, track_a in enumerate(tracks):
        for b, track_b in enumerate(tracks):
            gap = starts[b].frame - ends[a].frame - 1
            if a == b or gap > config.max_gap_seconds * fps or sides[a] * sides[b] < 0:
                continue
            # a handover is seen, not inferred across a gap: the coinciding keypoints are the evidence, and the
            # world landmarks' size, which MediaPipe gets wrong on a poor fit, is not asked for
            handover = gap < 0
            if handover and not _handover(track_a, track_b, config):
                continue
            # no metric size (landmarks all zero, e.g. imported 2D-only input): no evidence either way
            ratio = 1.0 if min(sizes[a], sizes[b]) < 1e-3 else max(sizes[a], sizes[b]) / min(sizes[a], sizes[b])
            if ratio > config.max_size_ratio and not handover:
                continue
            hand_size = 0.5 * (ends[a].hand_size + starts[b].hand_size)
            move = float(np.linalg.norm(starts[b].wrist - ends[a].wrist)) / hand_size
            if move > config.base_hand_sizes + config.speed_hand_sizes * (gap + 1) / fps and not handover:
                continue
            cost = move if handover else move + (ratio - 1.0) * 4.0
            candidates.append((cost, Link(track_a.track_id, track_b.track_id, gap, move, ratio), a, b))
    successor: dict[int, int] = {}
    predecessor: dict[int, int] = {}
    links = []
    for _, link, a, b in sorted(candidates, key=lambda c: c[0]):
        if a in successor or b in predecessor:
            continue
        successor[a], predecessor[b] = b, a
        links.append(link)
    merged = []
    for index in range(len(tracks)):
        if index in predecessor:
            continue
        chain = Track(track_id=len(merged))
        node = index
        while True:
            for frame, detection in zip(tracks[node].frames, tracks[node].detections):
                if chain.frames and frame <= chain.frames[-1]:  # a handover's shared frame: one hand seen twice
                    at = chain.frames.index(frame)
                    if detection.score > chain.detections[at].score:
                        chain.detections[at] = detection
                    continue
                chain.add(frame, detection)
            if node not in successor:
                break
            node = successor[node]
        merged.append(chain)
    merged.sort(key=lambda t: t.frames[0])
    for new_id, track in enumerate(merged):
        track.track_id = new_id
    return merged, links
