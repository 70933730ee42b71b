"""Motion programs: hand-object interaction cycles (labelled with motion states) and free gestures.

Every sample of a batch runs its own program of events. An interaction cycle follows DIP's four states:
reaching (minimum-jerk transport to the object while the hand preshapes, then closes into a grasp) ->
stable grasp (digits and wrist still) -> manipulation (wrist turns and shifts about the held object, fingers
fixed) -> optionally grasp again -> releasing (fingers open, hand withdraws) -> next reach. Free gestures
(counting, pinching, waving, finger tapping, open/close, free moves) carry no state label (-1).

Events write keyframes (articulation, wrist position, wrist orientation, state label) into `KeyframeTrack`s;
each event ends with a keyframe on every track, so the next event starts from where this one stopped.
Durations are divided by a per-sample speed factor. Positions are camera-frame metres (OpenCV axes).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from handcli.datagen import poses
from handcli.datagen.timeline import KeyframeTrack

# hand-model rest frame (MANO's: fingers -x, palm -y, thumb +z) -> camera: fingers up, palm towards the camera
MODEL_TO_CAMERA = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
FINGER_AXIS = np.array([-1.0, 0.0, 0.0])  # model frame
PALM_NORMAL = np.array([0.0, -1.0, 0.0])  # model frame, out of the palm
GRASP_CENTRE = np.array([-0.075, -0.035, 0.0])  # model frame: a held object's centre relative to the wrist
DEPTH_RANGE = (0.28, 0.77)  # wrist depth of keyframes, metres (the sway on top stays within ~0.25-0.8)
FIELD_HALF = (0.32, 0.22)  # |x| / z and |y| / z of wrist positions (a ~65 x 48 degree view, hand inside)

STATE_REACH, STATE_GRASP, STATE_MANIPULATE, STATE_RELEASE, NO_STATE = 0, 1, 2, 3, -1
INTERACTION_SHARE = 0.6  # share of samples running interaction cycles; the rest run free gestures
REACH, HOLD, MANIPULATE, RELEASE = 0, 1, 2, 3
GESTURES = ("count", "pinch", "wave", "tap", "open_close", "move")
# common counting patterns, thumb..pinky extended
COUNT_PATTERNS = np.array([[0, 1, 0, 0, 0], [0, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 1, 1, 1, 1], [1, 1, 1, 1, 1],
                           [1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0, 1, 0, 0, 1], [0, 0, 1, 1, 1]], bool)


def random_rotation(num: int, rng: np.random.Generator, max_deg: float, min_deg: float = 0.0,
                    axes: np.ndarray | None = None) -> np.ndarray:
    """(N, 3, 3) rotations by U(min, max) degrees about random (or the given (N, 3)) axes, either sign."""
    if axes is None:
        axes = rng.normal(size=(num, 3))
    axes = axes / np.linalg.norm(axes, axis=-1, keepdims=True)
    angle = np.deg2rad(rng.uniform(min_deg, max_deg, num)) * rng.choice([-1.0, 1.0], num)
    return Rotation.from_rotvec(axes * angle[:, None]).as_matrix()


def random_orientation(num: int, rng: np.random.Generator) -> np.ndarray:
    """(N, 3, 3) model->camera rotations: mostly upright, palm or back towards the camera, tilted up to 70 deg."""
    flip = np.where(rng.random(num) < 0.5, np.pi, 0.0)  # palm away: half a turn about the finger axis
    flip_rot = Rotation.from_rotvec(np.stack([flip, 0 * flip, 0 * flip], -1)).as_matrix()  # model x = finger axis
    roll = Rotation.from_rotvec(np.outer(rng.normal(0, np.deg2rad(50), num), [0, 0, 1.0])).as_matrix()
    return roll @ random_rotation(num, rng, 70.0) @ MODEL_TO_CAMERA @ flip_rot


def random_position(num: int, rng: np.random.Generator) -> np.ndarray:
    """(N, 3) wrist positions inside the view at 0.25-0.8 m depth."""
    depth = rng.uniform(*DEPTH_RANGE, num)
    return np.stack([depth * rng.uniform(-1, 1, num) * FIELD_HALF[0], depth * rng.uniform(-1, 1, num) * FIELD_HALF[1],
                     depth], -1)


def keep_in_view(position: np.ndarray) -> np.ndarray:
    """Clamp (N, 3) wrist positions into the depth range and the view."""
    depth = np.clip(position[:, 2], *DEPTH_RANGE)
    x = np.clip(position[:, 0], -FIELD_HALF[0] * depth, FIELD_HALF[0] * depth)
    y = np.clip(position[:, 1], -FIELD_HALF[1] * depth, FIELD_HALF[1] * depth)
    return np.stack([x, y, depth], -1)


def move_target(position: np.ndarray, rng: np.random.Generator, min_dist: float, max_dist: float) -> np.ndarray:
    """A new wrist position min..max metres away from each of (N, 3), kept in view."""
    goal = random_position(len(position), rng)
    offset = goal - position
    dist = np.linalg.norm(offset, axis=-1, keepdims=True)
    wanted = np.clip(dist, min_dist, max_dist)
    return keep_in_view(position + offset / np.maximum(dist, 1e-9) * wanted)


class MotionProgram:
    """Runs the event programs of a batch and collects their keyframes."""

    def __init__(self, batch: int, rng: np.random.Generator):
        self.rng = rng
        self.batch = batch
        self.time = np.zeros(batch)
        self.speed = np.exp(rng.uniform(np.log(0.7), np.log(2.0), batch))
        self.interaction = rng.random(batch) < INTERACTION_SHARE
        self.pose = poses.free_poses(batch, rng)
        self.position = random_position(batch, rng)
        self.orientation = random_orientation(batch, rng)
        self.grasp = self.pose.copy()
        self.next_event = np.full(batch, REACH)
        self.manipulated = np.zeros(batch, bool)
        self.pose_track = KeyframeTrack(batch, (15, 3))
        self.position_track = KeyframeTrack(batch, (3,))
        self.orientation_track = KeyframeTrack(batch, (3, 3))
        self.state_track = KeyframeTrack(batch, ())
        everyone = np.arange(batch)
        self.key(everyone, self.time, pose=self.pose, position=self.position, orientation=self.orientation)
        self.state_track.add(everyone, self.time, np.where(self.interaction, STATE_REACH, NO_STATE))

    # ------------------------------------------------------------------------------------------ plumbing
    def key(self, idx, times, pose=None, position=None, orientation=None) -> None:
        """Keyframes for samples idx at times (N,); a track left out stays where it is (re-keyed at that time)."""
        pose = self.pose[idx] if pose is None else pose
        position = self.position[idx] if position is None else position
        orientation = self.orientation[idx] if orientation is None else orientation
        self.pose_track.add(idx, times, pose)
        self.position_track.add(idx, times, position)
        self.orientation_track.add(idx, times, orientation)
        self.pose[idx], self.position[idx], self.orientation[idx] = pose, position, orientation

    def duration(self, idx, low: float, high: float) -> np.ndarray:
        return self.rng.uniform(low, high, len(idx)) / self.speed[idx]

    def label(self, idx, value: int) -> None:
        self.state_track.add(idx, self.time[idx], np.full(len(idx), float(value)))

    def run_until(self, end_time: np.ndarray, max_events: int = 200) -> None:
        """Append events until every sample's program passes its end_time (B,) seconds."""
        for _ in range(max_events):
            busy = np.flatnonzero(self.time < end_time)
            if len(busy) == 0:
                return
            interaction = busy[self.interaction[busy]]
            for event, run in ((REACH, self.reach), (HOLD, self.hold), (MANIPULATE, self.manipulate),
                               (RELEASE, self.release)):
                run(interaction[self.next_event[interaction] == event])
            gesture = busy[~self.interaction[busy]]
            choice = self.rng.integers(len(GESTURES), size=len(gesture))
            for k, name in enumerate(GESTURES):
                getattr(self, name)(gesture[choice == k])
        raise RuntimeError("motion program did not reach the requested length")

    # ------------------------------------------------------------------------------ interaction states
    def reach(self, idx) -> None:
        """Transport to the object along a straight minimum-jerk path while preshaping, closing at the end."""
        if len(idx) == 0:
            return
        rng, n = self.rng, len(idx)
        self.label(idx, STATE_REACH)
        target = move_target(self.position[idx], rng, 0.06, 0.35)
        dist = np.linalg.norm(target - self.position[idx], axis=-1)
        dur = (0.35 + 1.6 * dist) * rng.uniform(0.8, 1.25, n) / self.speed[idx]
        kind = rng.integers(len(poses.GRASP_NAMES), size=n)
        grasp = poses.grasp_poses(kind, rng.uniform(0.7, 1.1, n), rng)
        preshape_at = self.time[idx] + rng.uniform(0.4, 0.7, n) * dur
        self.pose_track.add(idx, preshape_at, poses.preshape_poses(kind, rng))
        self.time[idx] += dur
        orientation = random_rotation(n, rng, 45.0, 5.0) @ self.orientation[idx]
        self.key(idx, self.time[idx], pose=grasp, position=target, orientation=orientation)
        self.grasp[idx] = grasp
        self.manipulated[idx] = False
        self.next_event[idx] = np.where(rng.random(n) < 0.8, HOLD, MANIPULATE)

    def hold(self, idx) -> None:
        """Stable grasp: digits static, the wrist nearly so."""
        if len(idx) == 0:
            return
        rng, n = self.rng, len(idx)
        self.label(idx, STATE_GRASP)
        self.time[idx] += self.duration(idx, 0.15, 0.7)
        self.key(idx, self.time[idx], pose=self.grasp[idx] + rng.normal(0, 0.5, (n, 15, 3)),
                 position=self.position[idx] + rng.normal(0, 0.0015, (n, 3)),
                 orientation=random_rotation(n, rng, 2.0) @ self.orientation[idx])
        go_on = np.where(self.manipulated[idx], 0.3, 0.7)
        self.next_event[idx] = np.where(rng.random(n) < go_on, MANIPULATE, RELEASE)

    def manipulate(self, idx) -> None:
        """Turn and shift the held object: wrist rotations about the object's centre, fingers fixed."""
        if len(idx) == 0:
            return
        rng, n = self.rng, len(idx)
        self.label(idx, STATE_MANIPULATE)
        base_orientation, base_position = self.orientation[idx].copy(), self.position[idx].copy()
        centre = base_position + base_orientation @ GRASP_CENTRE
        finger_axis = base_orientation @ FINGER_AXIS  # pronation/supination, as when turning a lid
        axis = np.where(rng.random((n, 1)) < 0.5, finger_axis, rng.normal(size=(n, 3)))
        shift_dir = rng.normal(size=(n, 3))
        shift_dir /= np.linalg.norm(shift_dir, axis=-1, keepdims=True)
        moves = rng.integers(2, 7, n)
        sign = rng.choice([-1.0, 1.0], n)
        for step in range(int(moves.max())):
            active = step < moves
            sub = idx[active]
            m = len(sub)
            turn = random_rotation(m, rng, 50.0, 8.0, axes=axis[active])
            turn_sign = sign[active] * (-1.0) ** step  # back and forth about the starting orientation
            turn = np.where(turn_sign[:, None, None] > 0, turn, np.transpose(turn, (0, 2, 1)))
            shift = shift_dir[active] * rng.uniform(0.0, 0.05, (m, 1)) * turn_sign[:, None]
            position = centre[active] + np.einsum("nij,nj->ni", turn, base_position[active] - centre[active]) + shift
            self.time[sub] += self.duration(sub, 0.25, 0.8)
            self.key(sub, self.time[sub], pose=self.grasp[sub] + rng.normal(0, 1.5, (m, 15, 3)),
                     position=keep_in_view(position), orientation=turn @ base_orientation[active])
        self.manipulated[idx] = True
        self.next_event[idx] = np.where(rng.random(n) < 0.4, HOLD, RELEASE)

    def release(self, idx) -> None:
        """Open the fingers early, then withdraw from the object."""
        if len(idx) == 0:
            return
        rng, n = self.rng, len(idx)
        self.label(idx, STATE_RELEASE)
        dur = self.duration(idx, 0.45, 1.1)
        opened = poses.free_poses(n, rng)
        self.pose_track.add(idx, self.time[idx] + rng.uniform(0.3, 0.6, n) * dur, opened)
        away = -(self.orientation[idx] @ PALM_NORMAL) + rng.normal(0, 0.5, (n, 3))
        away /= np.linalg.norm(away, axis=-1, keepdims=True)
        target = keep_in_view(self.position[idx] + away * rng.uniform(0.04, 0.2, (n, 1)))
        self.time[idx] += dur
        self.key(idx, self.time[idx], pose=opened, position=target,
                 orientation=random_rotation(n, rng, 30.0) @ self.orientation[idx])
        self.next_event[idx] = REACH

    # ---------------------------------------------------------------------------------- free gestures
    def _drift(self, idx, max_dist: float = 0.04, max_deg: float = 15.0):
        """Small wrist drift over a gesture: (position, orientation) for idx."""
        n = len(idx)
        position = keep_in_view(self.position[idx] + self.rng.normal(0, max_dist / 2, (n, 3)))
        return position, random_rotation(n, self.rng, max_deg) @ self.orientation[idx]

    def _alternate(self, idx, first, second, half_period: tuple[float, float], cycles: tuple[int, int],
                   position=None, orientation=None) -> None:
        """Go back and forth: first, second, first, ... (N, 15, 3) for a random number of half-cycles, each of a
        random duration; the wrist reaches position (N, 3) / orientation (N, 3, 3) on the last one."""
        rng, n = self.rng, len(idx)
        half = rng.uniform(*half_period, n) / self.speed[idx]
        steps = rng.integers(cycles[0], cycles[1] + 1, n)
        start_position, start_orientation = self.position[idx].copy(), self.orientation[idx].copy()
        end_position = start_position if position is None else position
        end_orientation = start_orientation if orientation is None else orientation
        for step in range(int(steps.max())):
            active = step < steps
            sub = idx[active]
            self.time[sub] += half[active]
            last = step == steps[active] - 1
            self.key(sub, self.time[sub], pose=np.where(step % 2 == 0, 1, 0) * first[active] +
                     np.where(step % 2 == 0, 0, 1) * second[active],
                     position=np.where(last[:, None], end_position[active], self.position[sub]),
                     orientation=np.where(last[:, None, None], end_orientation[active], self.orientation[sub]))

    def count(self, idx) -> None:
        """Show a count of extended digits, hold it."""
        if len(idx) == 0:
            return
        rng, n = self.rng, len(idx)
        self.label(idx, NO_STATE)
        shown = poses.counting_poses(COUNT_PATTERNS[rng.integers(len(COUNT_PATTERNS), size=n)], rng)
        self.time[idx] += self.duration(idx, 0.2, 0.5)
        self.key(idx, self.time[idx], pose=shown)
        position, orientation = self._drift(idx, 0.02, 8.0)
        self.time[idx] += self.duration(idx, 0.2, 0.7)
        self.key(idx, self.time[idx], pose=shown + rng.normal(0, 1.0, shown.shape), position=position,
                 orientation=orientation)

    def pinch(self, idx) -> None:
        """Thumb-index pinch opening and closing (sometimes with the other fingers straight: an OK sign)."""
        if len(idx) == 0:
            return
        rng, n = self.rng, len(idx)
        self.label(idx, NO_STATE)
        closed = np.repeat(poses.PINCH_CLOSED[None], n, 0)
        opened = np.repeat(poses.PINCH_OPEN[None], n, 0)
        ok_sign = rng.random(n) < 0.3
        for name in ("middle", "ring", "pinky"):
            rows = list(poses.DIGIT_ROWS[name])
            closed[np.ix_(ok_sign, rows)] = poses.OPEN[rows]
            opened[np.ix_(ok_sign, rows)] = poses.OPEN[rows]
        closed = poses.finish(closed, rng, 2.0)
        opened = poses.finish(opened + rng.uniform(0.0, 1.0, (n, 1, 1)) * (poses.RELAXED - poses.PINCH_OPEN), rng)
        self._alternate(idx, closed, opened, (0.2, 0.6), (2, 7), *self._drift(idx, 0.02, 10.0))

    def wave(self, idx) -> None:
        """Wave: open hand swinging side to side about the palm normal (or the fingers flapping together)."""
        if len(idx) == 0:
            return
        rng, n = self.rng, len(idx)
        self.label(idx, NO_STATE)
        opened = poses.finish(np.repeat(poses.OPEN[None], n, 0), rng)
        self.time[idx] += self.duration(idx, 0.2, 0.4)
        self.key(idx, self.time[idx], pose=opened)
        flap = rng.random(n) < 0.3
        bent = opened.copy()
        for name in poses.LONG_FINGERS:
            bent[:, poses.DIGIT_ROWS[name][0], 0] += rng.uniform(35, 70, n) * flap
        axis = self.orientation[idx] @ PALM_NORMAL
        swing = random_rotation(n, rng, 35.0, 12.0, axes=axis)
        base = self.orientation[idx].copy()
        half = rng.uniform(0.15, 0.4, n) / self.speed[idx]
        steps = rng.integers(3, 9, n)
        for step in range(int(steps.max())):
            active = step < steps
            sub = idx[active]
            self.time[sub] += half[active]
            to_side = np.where(step % 2 == 0, swing[active], np.transpose(swing[active], (0, 2, 1)))
            orientation = np.where(flap[active, None, None], base[active], to_side @ base[active])
            pose = np.where(flap[active, None, None] & (step % 2 == 0), bent[active], opened[active])
            self.key(sub, self.time[sub], pose=pose, orientation=orientation)
        self.time[idx] += self.duration(idx, 0.15, 0.3)
        self.key(idx, self.time[idx], pose=opened, orientation=base)

    def tap(self, idx) -> None:
        """Finger tapping: one finger (or a run over several, as on a keyboard) flexing at the MCP."""
        if len(idx) == 0:
            return
        rng, n = self.rng, len(idx)
        self.label(idx, NO_STATE)
        base = poses.free_poses(n, rng)
        self.time[idx] += self.duration(idx, 0.15, 0.35)
        self.key(idx, self.time[idx], pose=base)
        finger = rng.choice(4, n, p=[0.55, 0.2, 0.15, 0.1])
        piano = rng.random(n) < 0.3
        half = rng.uniform(0.1, 0.3, n) / self.speed[idx]
        steps = 2 * rng.integers(2, 7, n)
        for step in range(int(steps.max())):
            active = step < steps
            sub = idx[active]
            m = len(sub)
            pose = base[active].copy()
            if step % 2 == 0:
                which = np.where(piano[active], (finger[active] + step // 2) % 4, finger[active])
                mcp = np.array([poses.DIGIT_ROWS[poses.LONG_FINGERS[f]][0] for f in which])
                pip = mcp + 1
                pose[np.arange(m), mcp, 0] += rng.uniform(20, 45, m)
                pose[np.arange(m), pip, 0] += rng.uniform(0, 20, m)
                pose = poses.clip_to_limits(pose)
            self.time[sub] += half[active]
            self.key(sub, self.time[sub], pose=pose)

    def open_close(self, idx) -> None:
        """Open the hand fully and close it into a (partial) fist, a few times."""
        if len(idx) == 0:
            return
        rng, n = self.rng, len(idx)
        self.label(idx, NO_STATE)
        closure = rng.uniform(0.55, 1.0, (n, 1, 1))
        closed = poses.finish(poses.RELAXED + closure * (poses.FIST - poses.RELAXED), rng)
        opened = poses.finish(np.repeat(poses.OPEN[None], n, 0), rng)
        self._alternate(idx, closed, opened, (0.3, 1.0), (2, 5), *self._drift(idx, 0.03, 15.0))

    def move(self, idx) -> None:
        """Free transport of the hand to a new place and orientation, changing its pose on the way."""
        if len(idx) == 0:
            return
        rng, n = self.rng, len(idx)
        self.label(idx, NO_STATE)
        target = move_target(self.position[idx], rng, 0.04, 0.3)
        dist = np.linalg.norm(target - self.position[idx], axis=-1)
        self.time[idx] += (0.35 + 1.6 * dist) * rng.uniform(0.8, 1.25, n) / self.speed[idx]
        self.key(idx, self.time[idx], pose=poses.free_poses(n, rng), position=target,
                 orientation=random_rotation(n, rng, 60.0) @ self.orientation[idx])
