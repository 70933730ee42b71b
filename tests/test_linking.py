"""One identity per physical hand (handcli.detect.linking): fragments of one hand are linked across a gap,
distinct hands are kept apart."""

from __future__ import annotations

import numpy as np

from handcli.detect.linking import link_fragments, metric_size
from handcli.detect.tracking import HandDetection, HandTracker
from tests.test_detect import hand_template

FPS = 30.0


def world(length: float = 0.18) -> np.ndarray:
    """(21, 3) world landmarks whose middle finger chain is `length` metres long (the size linking compares)."""
    points = np.zeros((21, 3))
    points[[9, 10, 11, 12], 1] = -np.array([0.5, 0.7, 0.85, 1.0]) * length
    return points


def seen(keypoints2d, right_probability, length=0.18) -> HandDetection:
    return HandDetection(keypoints2d=keypoints2d, world_landmarks=world(length), right_probability=right_probability,
                         score=0.9)


def track(schedule) -> list:
    """schedule: frame -> list of detections. Returns the tracker's tracks, then linked."""
    tracker = HandTracker()
    for frame in range(max(schedule) + 1):
        tracker.update(frame, schedule.get(frame, []))
    return link_fragments(tracker.finished_tracks(min_observations=6), FPS)


def test_a_hand_that_leaves_for_a_second_and_returns_stays_one_track():
    schedule = {}
    for frame in range(90):
        if 30 <= frame < 60:  # out of view for 1 s: the tracker ends the track after 0.5 s
            continue
        x = 60 + 2 * frame if frame < 30 else 60 + 2 * 30 + 40  # comes back near where it left
        schedule[frame] = [seen(hand_template() + (x, 300), 0.9)]
    tracks, links = track(schedule)
    assert len(tracks) == 1 and len(links) == 1 and links[0].gap == 30
    assert tracks[0].frames == [f for f in range(90) if not 30 <= f < 60]


def test_crossing_hands_keep_their_identities_and_are_not_merged():
    schedule = {}
    for frame in range(40):
        right = seen(hand_template() + (100 + 10 * frame, 300), 0.9)
        left = seen(hand_template(right=False) + (500 - 10 * frame, 330), 0.1)
        schedule[frame] = [right] if 19 <= frame <= 21 else [right, left]
    tracks, links = track(schedule)
    assert len(tracks) == 2 and links == []
    assert sorted(t.is_right for t in tracks) == [False, True]


def test_distinct_hands_are_kept_apart():
    # two right hands of two people, far apart and seen at the same time: never one identity
    schedule = {f: [seen(hand_template() + (100, 300), 0.9), seen(hand_template() + (550, 300), 0.9)]
                for f in range(30)}
    tracks, links = track(schedule)
    assert len(tracks) == 2 and links == []
    # one right hand leaves, a left hand enters where it was: other side, other hand
    schedule = {f: [seen(hand_template() + (300, 300), 0.9)] for f in range(30)}
    schedule.update({f: [seen(hand_template(right=False) + (300, 300), 0.1)] for f in range(50, 80)})
    assert len(track(schedule)[0]) == 2
    # a hand of another size (another person) takes over where the first left
    schedule = {f: [seen(hand_template() + (300, 300), 0.9, 0.19)] for f in range(30)}
    schedule.update({f: [seen(hand_template() + (300, 300), 0.9, 0.14)] for f in range(50, 80)})
    assert len(track(schedule)[0]) == 2
    # a right hand appearing across the image 0.3 s after another vanished: 3.3 hand sizes that fast is
    # over 1.5 m/s for an adult hand
    schedule = {f: [seen(hand_template() + (60, 300), 0.9)] for f in range(30)}
    schedule.update({f: [seen(hand_template() + (600, 300), 0.9)] for f in range(39, 80)})
    assert len(track(schedule)[0]) == 2


def test_metric_size_reads_the_world_landmarks():
    assert abs(metric_size(track({f: [seen(hand_template() + (300, 300), 0.9, 0.2)] for f in range(10)})[0][0])
               - 0.2) < 1e-9


def test_refine_infills_short_gaps_and_leaves_long_ones_unobserved():
    from handcli.artifacts import Artifact
    from handcli.stages.refine import RefineConfig, refine
    from tests.conftest import random_keypoints

    valid = np.ones((1, 120), bool)
    valid[0, 20:25] = False  # 0.17 s: infilled
    valid[0, 40:50] = False  # 0.33 s: past max_infill_seconds (0.2 s), not trusted
    valid[0, 60:100] = False  # 1.3 s: a linked hand's absence, not trusted
    artifact = Artifact(keypoints3d=random_keypoints(1, 120), valid=valid, is_right=np.ones(1, bool), fps=30.0)
    refined = refine(artifact, RefineConfig(device="cpu"))
    assert refined.valid[0, 20:25].all() and not refined.observed[0, 20:25].any()
    assert not refined.valid[0, 40:50].any() and refined.valid[0, 50:60].all()
    assert not refined.valid[0, 60:100].any() and refined.valid[0, 100:].all()
    assert np.isfinite(refined.keypoints3d).all()


def test_two_hands_claiming_one_side_are_resolved_by_the_vote():
    from handcli.detect.linking import resolve_sides

    schedule = {f: [seen(hand_template() + (100, 300), 0.95), seen(hand_template() + (450, 300), 0.6)]
                for f in range(30)}
    tracks, _ = track(schedule)
    assert [t.is_right for t in tracks] == [True, True]
    flipped = resolve_sides(tracks)
    assert len(flipped) == 1 and sorted(t.is_right for t in tracks) == [False, True]
    assert not next(t for t in tracks if t.track_id == flipped[0]).is_right  # the weaker vote gave way
    # three hands at once (two people): nothing to resolve by elimination
    schedule = {f: [seen(hand_template() + (x, 300), 0.9) for x in (60, 300, 540)] for f in range(30)}
    tracks, _ = track(schedule)
    assert resolve_sides(tracks) == [] and all(t.is_right for t in tracks)


def test_side_resolution_settles_each_track_once_and_ignores_ties():
    from handcli.detect.linking import resolve_sides

    # A and B both say right while seen together; B and C overlap afterwards: B is turned once, for good
    schedule = {f: [seen(hand_template() + (100, 300), 0.95)] for f in range(30)}
    for f in range(60):
        schedule.setdefault(f, []).append(seen(hand_template() + (450, 300), 0.8))
    for f in range(35, 60):
        schedule[f].append(seen(hand_template(right=False) + (250, 100), 0.49))
    tracks, _ = track(schedule)
    flipped = resolve_sides(tracks)
    assert len(flipped) == len(set(flipped)) <= 1
    # two hands with no handedness evidence at all: nothing to go on, nothing changed
    schedule = {f: [seen(hand_template() + (100, 300), 0.5), seen(hand_template() + (450, 300), 0.5)]
                for f in range(30)}
    tracks, _ = track(schedule)
    assert resolve_sides(tracks) == []


def test_fragments_without_metric_size_link_on_geometry_alone():
    schedule = {f: [seen(hand_template() + (300, 300), 0.9, 0.0)] for f in range(30)}
    schedule.update({f: [seen(hand_template() + (310, 300), 0.9, 0.0)] for f in range(50, 80)})
    tracks, links = track(schedule)
    assert len(tracks) == 1 and links[0].size_ratio == 1.0


def fragment(track_id: int, frames, x0: float, scores=None) -> "Track":
    """A track of a right hand moving right 4 px a frame from x0 at frame 0."""
    from handcli.detect.tracking import Track

    out = Track(track_id=track_id)
    for frame in frames:
        detection = seen(hand_template() + (x0 + 4 * frame, 300), 0.9)
        if scores is not None:
            detection.score = scores.get(frame, detection.score)
        out.add(frame, detection)
    return out


def test_a_hand_seen_twice_as_its_track_hands_over_stays_one_track():
    """Test clip51 of the video benchmark: MediaPipe saw the hand twice on one frame, 0.151 hand sizes apart
    (just beyond the tracker's duplicate distance), the copy went on as a new track and the first ended there.
    The two share that one frame, so a link end to start was impossible; the handover links them."""
    size = float(np.hypot(*np.ptp(hand_template(), axis=0)))
    first = fragment(0, range(0, 21), 100.0, scores={20: 0.8})
    for detection in first.detections:  # MediaPipe's metric size of the poor first fit was 0.11 m against 0.16 m
        detection.world_landmarks = world(0.11)
    second = fragment(1, range(20, 60), 100.0 + 0.2 * size, scores={20: 0.98})
    tracks, links = link_fragments([first, second], FPS)
    assert len(tracks) == 1 and len(links) == 1 and links[0].gap == -1
    assert tracks[0].frames == list(range(60))
    assert tracks[0].detections[20].score == 0.98  # the shared frame keeps the better detection
    # not a handover: the shared frame's keypoints too far apart (two hands), or shared too long (seen together)
    far = fragment(1, range(20, 60), 100.0 + 0.5 * size)
    assert len(link_fragments([fragment(0, range(0, 21), 100.0), far], FPS)[0]) == 2
    together = fragment(1, range(15, 60), 100.0 + 0.2 * size)
    assert len(link_fragments([fragment(0, range(0, 21), 100.0), together], FPS)[0]) == 2
    # nor when the later fragment is inside the earlier one's span
    inside = fragment(1, range(20, 21), 100.0)
    assert len(link_fragments([fragment(0, range(0, 21), 100.0), inside], FPS)[0]) == 2
    # two shared frames; the earlier fragment's detections win where they score higher
    tracks, links = link_fragments([fragment(0, range(0, 22), 100.0, scores={20: 0.95, 21: 0.5}),
                                    fragment(1, range(20, 60), 100.0 + 0.2 * size, scores={20: 0.7, 21: 0.9})], FPS)
    assert len(tracks) == 1 and links[0].gap == -2 and tracks[0].frames == list(range(60))
    assert [tracks[0].detections[t].score for t in (20, 21)] == [0.95, 0.9]
    # shared frames that are not consecutive are no handover
    gappy = fragment(0, [*range(0, 19), 20], 100.0)
    assert len(link_fragments([gappy, fragment(1, [18, *range(20, 60)], 100.0 + 0.2 * size)], FPS)[0]) == 2
    # a confident left hand does not continue a confident right one, however close
    left = fragment(1, range(20, 60), 100.0 + 0.2 * size)
    for detection in left.detections:
        detection.right_probability = 0.05
    assert len(link_fragments([fragment(0, range(0, 21), 100.0), left], FPS)[0]) == 2


def test_info_words_a_handover_link(tmp_path):
    from handcli.artifacts import Artifact, make_meta, save_artifact
    from handcli.stages.info import describe_file
    from tests.conftest import random_keypoints

    meta = make_meta("detect")
    meta["tracking"] = {"tracks_found": 2, "tracks_dropped": 0, "links": [
        {"earlier": 0, "later": 1, "gap_frames": -1, "move_hand_sizes": 0.12, "size_ratio": 1.44},
        {"earlier": 2, "later": 3, "gap_frames": 30, "move_hand_sizes": 0.5, "size_ratio": 1.0}]}
    path = save_artifact(Artifact(random_keypoints(1, 4), np.ones((1, 4), bool), np.array([True]), meta=meta),
                         tmp_path / "a.npz")
    lines = describe_file(path)
    assert any("linked fragment 1 after 0 where the detector saw the hand twice on 1 frame(s)" in line for line in lines)
    assert any("linked fragment 3 after 2 across 30 unseen frame(s)" in line for line in lines)
