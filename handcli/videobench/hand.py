"""The rendered hand: the open hand model fitted to a mocap window, posed as a mesh, and scaled to a sampled
adult hand length.

The ground truth is the rendered model's own keypoints (the fitted model's joints, scaled with the mesh), not
the mocap points: the video shows exactly the geometry it is scored against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from handcli.handmodels.size import hand_length

FIT_ITERATIONS = 10


@dataclass
class PosedHand:
    """A hand over T frames, float64: vertices (T, V, 3), keypoints (T, 21, 3) canonical order, faces (F, 3)."""

    vertices: np.ndarray
    keypoints: np.ndarray
    faces: np.ndarray


def fit_open_hand(model, keypoints: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """Fit `model` (a HandModel) to one right hand's keypoints (T, 21, 3) metres with valid (T,).

    Returns global_orient (T, 3), hand_pose (T, 15, 3), betas (nb,), transl (T, 3) (float32; frames without
    a valid observation are interpolated by the fit)."""
    from handcli.fitting import fit_keypoints

    fit = fit_keypoints(model, keypoints[None].astype(np.float32), valid[None], np.array([True]),
                        iterations=FIT_ITERATIONS)
    return {"global_orient": fit.global_orient[0], "hand_pose": fit.hand_pose[0], "betas": fit.betas[0],
            "transl": fit.transl[0]}


SHAPE_LIMIT = 3.0  # standard deviations: a fit to noisy mocap can reach 6 (a pinky 30 % long), no real hand


def realistic_shape(model, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`params` (as fit_open_hand returns them) with a real hand's shape: the open hand's `joint_placement`
    set to 0 and the other shape directions clipped to +-SHAPE_LIMIT.

    A fit to motion-capture joints lands at joint_placement ~1: keypoints at the anatomical joint centres of
    FPHA's skeleton, and a palm 25 % shorter and 20 % narrower to match. Real hands filmed for users, MANO's
    joints and MediaPipe's landmarks follow the skin convention (0). The rendered hand keeps the fitted joint
    angles, the subject's other proportions and size, and takes the skin convention, so the video shows a
    realistic hand and its truth is where a MANO-style annotation would put the keypoints. Models without
    that direction keep their joint placement."""
    betas = np.clip(np.array(params["betas"], dtype=np.float32), -SHAPE_LIMIT, SHAPE_LIMIT)
    names = list(getattr(model, "shape_names", []))
    if "joint_placement" in names:
        betas[names.index("joint_placement")] = 0.0
    return {**params, "betas": betas}


def pose_hand(model, params: dict[str, np.ndarray]) -> PosedHand:
    """The model's mesh and keypoints for `params` (as fit_open_hand returns them), right hand."""
    as_tensor = lambda array: torch.as_tensor(np.asarray(array), dtype=torch.float32)
    frames = len(params["global_orient"])
    with torch.no_grad():
        out = model(as_tensor(params["global_orient"]), as_tensor(params["hand_pose"]),
                    as_tensor(params["betas"])[None].expand(frames, -1), as_tensor(params["transl"]), True)
    return PosedHand(out.vertices.numpy().astype(np.float64), out.joints.numpy().astype(np.float64),
                     model.faces_for(True).numpy())


def scale_to_length(hand: PosedHand, length: float) -> tuple[PosedHand, float]:
    """Scale mesh and keypoints together about each frame's wrist so the hand length (wrist -> middle
    fingertip chain, handmodels.size) is `length` metres. Returns the scaled hand and the factor.

    The model's bone lengths do not change with the pose (the fingertip is a skinned vertex, so its bone
    varies by well under a millimetre), so one factor from the mean length over frames fits every frame."""
    factor = float(length / hand_length(hand.keypoints).mean())
    wrist = hand.keypoints[:, :1]  # (T, 1, 3): scaling about the wrist keeps the arm's end where it was
    return PosedHand(wrist + factor * (hand.vertices - wrist), wrist + factor * (hand.keypoints - wrist),
                     hand.faces), factor


FOREARM_LENGTH = 0.26  # metres for a 0.18 m hand: wrist to elbow, scaled with the hand
# elliptical cross-section semi-axes (across the palm, along the palm normal) at the wrist and at the elbow
FOREARM_WRIST = (0.029, 0.019)
FOREARM_ELBOW = (0.042, 0.034)
REFERENCE_HAND_LENGTH = 0.18
RING_VERTICES = 20
ARM_OWN_WEIGHT = 0.35  # the arm's direction: this much the hand's own, the rest towards the body
ARM_MIN_DEPTH = 0.08  # metres: the arm ends before it comes nearer the camera than this


def forearm_mesh(keypoints: np.ndarray, length: float, rng: np.random.Generator, skin_rgb,
                 towards_point: np.ndarray | None = None, towards_direction: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A forearm for the hand with keypoints (T, 21, 3) (camera frame) and hand length `length`: a tapered
    elliptical tube from inside the wrist back towards the elbow, closed at the far end, bare or in a sleeve
    of random colour from a random point on.

    Its direction mixes the hand's own (opposite the fingers, turned by a fixed random wrist bend) with where
    the body is: towards `towards_point` (the shoulder, camera frame) or along `towards_direction`. Opposite
    the fingers alone, an egocentric arm points into the lens and hides the hand; real forearms leave the
    frame towards the body. The arm is shortened where it would come nearer the camera than ARM_MIN_DEPTH.

    A hand floating without an arm is not what a detector sees in real video (MediaPipe's palm detector
    looks at context), and the arm is what occludes the hand in egocentric views.
    Returns (vertices (T, Va, 3), faces (Fa, 3), colours (Va, 3))."""
    from handcli.videobench.cameras import hand_axes

    scale = length / REFERENCE_HAND_LENGTH
    bend = np.radians(rng.uniform(-20, 20))  # wrist flexion / extension, constant over the clip
    sleeve_at = rng.uniform(0.1, 0.8) if rng.random() < 0.6 else None  # share of the forearm that is bare
    sleeve_rgb = rng.uniform(0.05, 0.9, 3)
    # ring positions along the arm (share of its length; slightly negative = inside the hand's wrist)
    stations = [-0.04, 0.0, 0.25, 0.5, 0.75, 1.0]
    colours_per_ring = []
    rings = []
    for i, position in enumerate(stations):
        if sleeve_at is not None and i and stations[i - 1] < sleeve_at <= position:
            rings.append(sleeve_at)  # a doubled ring: the sleeve's edge is sharp, not a gradient
            colours_per_ring.append(skin_rgb)
            rings.append(sleeve_at)
            colours_per_ring.append(sleeve_rgb)
        rings.append(position)
        colours_per_ring.append(sleeve_rgb if sleeve_at is not None and position >= sleeve_at else skin_rgb)
    rings = np.array(rings)
    share = np.clip(rings, 0, 1)[:, None]
    radii = scale * ((1 - share) * np.array(FOREARM_WRIST) + share * np.array(FOREARM_ELBOW))  # (R, 2)
    theta = np.linspace(0, 2 * np.pi, RING_VERTICES, endpoint=False)
    axes = hand_axes(keypoints)  # (T, 3, 3): across, fingers, palm normal
    across, fingers, normal = axes[..., 0], axes[..., 1], axes[..., 2]
    wrist = keypoints[:, 0]
    own = -(np.cos(bend) * fingers + np.sin(bend) * normal)
    if towards_point is not None:
        body = np.asarray(towards_point) - wrist
    elif towards_direction is not None:
        body = np.broadcast_to(np.asarray(towards_direction, np.float64), own.shape)
    else:
        body = own
    body = body / np.linalg.norm(body, axis=-1, keepdims=True)
    direction = ARM_OWN_WEIGHT * own + (1 - ARM_OWN_WEIGHT) * body
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    side = np.cross(direction, across)  # the cross-section's axes, re-orthogonalised to the arm
    side /= np.linalg.norm(side, axis=-1, keepdims=True)
    across = np.cross(side, direction)
    arm_length = np.full(len(wrist), scale * FOREARM_LENGTH)
    approaching = direction[:, 2] < 0
    arm_length[approaching] = np.minimum(arm_length[approaching], np.maximum(
        (wrist[approaching, 2] - ARM_MIN_DEPTH) / -direction[approaching, 2], 0.02))
    along = wrist[:, None] + (arm_length[:, None] * rings[None])[..., None] * direction[:, None]  # (T, R, 3)
    ring_points = (along[:, :, None]
                   + (radii[None, :, None, :1] * np.cos(theta)[None, None, :, None]) * across[:, None, None]
                   + (radii[None, :, None, 1:] * np.sin(theta)[None, None, :, None]) * side[:, None, None])
    num_frames, num_rings = len(keypoints), len(rings)
    vertices = np.concatenate([ring_points.reshape(num_frames, -1, 3), along[:, -1:]], 1)  # + the cap centre
    faces = []
    for r in range(num_rings - 1):
        for k in range(RING_VERTICES):
            a, b = r * RING_VERTICES + k, r * RING_VERTICES + (k + 1) % RING_VERTICES
            faces += [(a, b, a + RING_VERTICES), (b, b + RING_VERTICES, a + RING_VERTICES)]
    cap = num_rings * RING_VERTICES
    last = (num_rings - 1) * RING_VERTICES
    faces += [(last + k, last + (k + 1) % RING_VERTICES, cap) for k in range(RING_VERTICES)]
    colours = np.concatenate([np.repeat(np.array(colours_per_ring, np.float32), RING_VERTICES, 0),
                              np.array([colours_per_ring[-1]], np.float32)])
    return vertices, np.array(faces, np.int64), colours
