"""glTF 2.0 (.glb binary, or .gltf with the buffer embedded as a data URI): per track a skinned hand mesh, its
21-node skeleton and one animation. docs/export.md describes the layout; in short:

* Scene roots: one frame node (`world_up`: a 180° turn about x, or `camera_frame`: identity) holding every
  track's skeleton, and one mesh node per track (skinned meshes sit at the root: glTF ignores a skinned mesh
  node's own transform, and the validator warns about parents that would not apply).
* Skeleton per track: `hand{h}_wrist` → the 15 finger joints (MANO's tree) → 5 tip nodes (`*_tip`, unweighted
  joints, so all 21 keypoints exist as nodes). Default node transforms are the rest pose; the inverse bind
  matrices are the inverses of those rest globals, so bind pose = node defaults (what importers expect).
* Mesh vertices are stored in the output frame (frame rotation · rest vertices), so skinning reproduces
  frame rotation · HandModel.forward exactly for the open hand (MANO: without its pose blend shapes).
* Animation per track (`hand{h}_{side}`): a key per frame at t = frame / fps: wrist translation
  (rest wrist + transl), wrist rotation (global_orient) and the 15 joint rotations (hand_pose), as unit
  quaternions, LINEAR (slerp). Frames where the track is not `valid` hide the hand: the wrist's scale
  goes to 0 on them (STEP), and their pose is the artifact's (held from the nearest usable frame if not
  finite). Per-frame `valid`/`observed` are kept in the animation's `extras`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from handcli import __version__
from handcli.export.common import MANO21_NAMES, MANO21_PARENTS, TrackMotion, TrackRig

# glTF constants (the spec's numbers)
FLOAT, UNSIGNED_BYTE, UNSIGNED_SHORT, UNSIGNED_INT = 5126, 5121, 5123, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
TRIANGLES = 4
SKIN_COLOUR = (0.80, 0.62, 0.52, 1.0)  # baseColorFactor without variance colours (linear RGB)


@dataclass
class GltfTrack:
    """What one track contributes: its rig, motion, the artifact's per-frame flags and optional vertex colours
    (V, 3) sRGB in [0, 1]."""

    rig: TrackRig
    motion: TrackMotion
    name: str  # e.g. "hand0_right": the animation, skin and mesh
    prefix: str  # e.g. "hand0": the skeleton's node names (hand0_wrist, hand0_index1, ...)
    colours: np.ndarray | None = None
    extras: dict | None = None


class _Blob:
    """The binary buffer and its bufferViews/accessors, built as arrays are added."""

    def __init__(self, gltf):
        self.gltf = gltf
        self.chunks: list[bytes] = []
        self.length = 0

    def add(self, array: np.ndarray, accessor_type: str, *, target: int | None = None, minmax: bool = False,
            normalized: bool = False) -> int:
        """Append array (count, components...) and return its accessor index."""
        from pygltflib import Accessor, BufferView

        array = np.ascontiguousarray(array)
        component = {np.dtype(np.float32): FLOAT, np.dtype(np.uint8): UNSIGNED_BYTE,
                     np.dtype(np.uint16): UNSIGNED_SHORT, np.dtype(np.uint32): UNSIGNED_INT}[array.dtype]
        data = array.tobytes()
        pad = (-self.length) % 4  # every view starts 4-byte aligned (the largest component size we use)
        self.chunks.append(b"\0" * pad)
        self.length += pad
        self.gltf.bufferViews.append(BufferView(buffer=0, byteOffset=self.length, byteLength=len(data),
                                                target=target))
        self.chunks.append(data)
        self.length += len(data)
        flat = array.reshape(len(array), -1)
        accessor = Accessor(bufferView=len(self.gltf.bufferViews) - 1, componentType=component,
                            count=len(array), type=accessor_type, normalized=normalized or None)
        if minmax:
            accessor.min = flat.min(0).astype(float).tolist()
            accessor.max = flat.max(0).astype(float).tolist()
        self.gltf.accessors.append(accessor)
        return len(self.gltf.accessors) - 1

    def data(self) -> bytes:
        blob = b"".join(self.chunks)
        return blob + b"\0" * ((-len(blob)) % 4)


def matrix_to_quaternion_xyzw(rotations: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations -> (..., 4) unit quaternions (x, y, z, w), glTF's order."""
    from scipy.spatial.transform import Rotation

    flat = rotations.reshape(-1, 3, 3)
    quat = Rotation.from_matrix(flat).as_quat()  # scipy's order is (x, y, z, w) too
    return quat.reshape(*rotations.shape[:-2], 4)


def continuous_quaternions(quat: np.ndarray) -> np.ndarray:
    """(T, J, 4) -> same rotations with signs chosen so consecutive keys have a non-negative dot product:
    LINEAR interpolation (slerp) then takes the short way between keys."""
    out = quat.copy()
    for t in range(1, len(out)):
        flip = np.einsum("jk,jk->j", out[t], out[t - 1]) < 0
        out[t, flip] *= -1
    return out


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """glTF vertex colours are linear; our colour maps are sRGB."""
    rgb = np.asarray(rgb, np.float64)
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def build_gltf(tracks: list[GltfTrack], fps: float, frame_rotation: np.ndarray, frame_name: str,
               scene_extras: dict | None = None):
    """A pygltflib.GLTF2 holding every track (buffer not yet attached: see `write_gltf`) and its blob."""
    from pygltflib import GLTF2, Asset, Buffer, Node, Scene

    gltf = GLTF2(asset=Asset(version="2.0", generator=f"handcli {__version__}"))
    blob = _Blob(gltf)
    frame_node = Node(name=frame_name, children=[])
    if not np.allclose(frame_rotation, np.eye(3)):
        frame_node.rotation = matrix_to_quaternion_xyzw(frame_rotation).tolist()
    gltf.nodes.append(frame_node)
    mesh_nodes = []
    for track in tracks:
        wrist, mesh_node = _add_track(gltf, blob, track, fps, frame_rotation)
        frame_node.children.append(wrist)
        mesh_nodes.append(mesh_node)
    gltf.scenes.append(Scene(name="handcli", nodes=[0, *mesh_nodes], extras=scene_extras or None))
    gltf.scene = 0
    data = blob.data()
    gltf.buffers.append(Buffer(byteLength=len(data)))
    return gltf, data


def _add_track(gltf, blob: _Blob, track: GltfTrack, fps: float, frame_rotation: np.ndarray) -> tuple[int, int]:
    """Add one track's skeleton, skinned mesh and animation; returns (wrist node, mesh node)."""
    from pygltflib import (
        Animation,
        AnimationChannel,
        AnimationChannelTarget,
        AnimationSampler,
        Attributes,
        Material,
        Mesh,
        Node,
        PbrMetallicRoughness,
        Primitive,
        Skin,
    )

    rig, motion = track.rig, track.motion
    # --- skeleton: MANO21 nodes, default transforms = rest pose (translations only)
    first = len(gltf.nodes)
    offsets = rig.offsets
    for m, name in enumerate(MANO21_NAMES):
        gltf.nodes.append(Node(name=f"{track.prefix}_{name}", translation=offsets[m].tolist()))
    for m, parent in enumerate(MANO21_PARENTS):
        if parent >= 0:
            parent_node = gltf.nodes[first + parent]
            parent_node.children = (parent_node.children or []) + [first + m]
    joint_nodes = list(range(first, first + 21))

    # --- inverse bind matrices: inverse of each node's rest global transform, frame rotation C included:
    # (C · T(J_m))^-1 = T(-J_m) · C^T (column-major, as glTF stores 4x4 matrices)
    inverse_bind = np.zeros((21, 4, 4))
    inverse_bind[:, :3, :3] = frame_rotation.T
    inverse_bind[:, :3, 3] = -rig.joints
    inverse_bind[:, 3, 3] = 1.0
    inverse_bind_accessor = blob.add(inverse_bind.transpose(0, 2, 1).astype(np.float32), "MAT4")
    gltf.skins.append(Skin(name=track.name, joints=joint_nodes, skeleton=first,
                           inverseBindMatrices=inverse_bind_accessor))
    skin = len(gltf.skins) - 1

    # --- mesh in the output frame (bind pose = rest pose under the frame rotation)
    from handcli.render.scene import VertexNormals

    positions = rig.vertices @ frame_rotation.T
    normals = VertexNormals(rig.faces, len(positions))(positions).astype(np.float64)
    lonely = np.linalg.norm(normals, axis=1) < 0.5  # vertices in no triangle: any unit normal will do
    normals[lonely] = (0.0, 1.0, 0.0)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    attributes = Attributes(POSITION=blob.add(positions.astype(np.float32), "VEC3", target=ARRAY_BUFFER, minmax=True),
                            NORMAL=blob.add(normals.astype(np.float32), "VEC3", target=ARRAY_BUFFER))
    joint_sets, weight_sets = _influences(rig.skinning_weights)
    for k, (joints, weights) in enumerate(zip(joint_sets, weight_sets)):
        setattr(attributes, f"JOINTS_{k}", blob.add(joints, "VEC4", target=ARRAY_BUFFER))
        setattr(attributes, f"WEIGHTS_{k}", blob.add(weights, "VEC4", target=ARRAY_BUFFER))
    if track.colours is not None:
        attributes.COLOR_0 = blob.add(srgb_to_linear(track.colours).astype(np.float32), "VEC3", target=ARRAY_BUFFER)
    index_type = np.uint16 if len(positions) < 65535 else np.uint32
    indices = blob.add(rig.faces.reshape(-1).astype(index_type), "SCALAR", target=ELEMENT_ARRAY_BUFFER)
    colour = (1.0, 1.0, 1.0, 1.0) if track.colours is not None else SKIN_COLOUR
    gltf.materials.append(Material(name=f"{track.name}_skin", pbrMetallicRoughness=PbrMetallicRoughness(
        baseColorFactor=list(colour), metallicFactor=0.0, roughnessFactor=0.7)))
    primitive = Primitive(attributes=attributes, indices=indices, mode=TRIANGLES, material=len(gltf.materials) - 1)
    gltf.meshes.append(Mesh(name=track.name, primitives=[primitive]))
    gltf.nodes.append(Node(name=f"{track.name}_mesh", mesh=len(gltf.meshes) - 1, skin=skin))
    mesh_node = len(gltf.nodes) - 1

    # --- animation: a key per frame
    count = motion.num_frames
    times = (np.arange(count) / fps).astype(np.float32)
    time_accessor = blob.add(times, "SCALAR", minmax=True)
    samplers: list = []
    channels: list = []

    def channel(node: int, path: str, values: np.ndarray, accessor_type: str, interpolation: str = "LINEAR"):
        samplers.append(AnimationSampler(input=time_accessor, output=blob.add(values.astype(np.float32), accessor_type),
                                         interpolation=interpolation))
        channels.append(AnimationChannel(sampler=len(samplers) - 1,
                                         target=AnimationChannelTarget(node=node, path=path)))

    channel(first, "translation", motion.wrist_positions(rig), "VEC3")
    quaternions = continuous_quaternions(matrix_to_quaternion_xyzw(motion.local_rotations()))  # (T, 16, 4)
    for m in range(16):
        channel(first + m, "rotation", quaternions[:, m], "VEC4")
    if not motion.valid.all():  # hide the hand where the artifact has none: scale 0 holds until the next key
        channel(first, "scale", np.repeat(motion.valid.astype(np.float64)[:, None], 3, 1), "VEC3", "STEP")
    gltf.animations.append(Animation(name=track.name, samplers=samplers, channels=channels,
                                     extras=track.extras or None))
    return first, mesh_node


def _influences(weights: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Skinning weights (V, J) -> JOINTS_n (V, 4) uint8 and WEIGHTS_n (V, 4) float32 sets, as many as the
    vertex with the most non-zero weights needs, strongest first, renormalised to sum to 1; unused slots
    have joint 0 and weight 0 (the spec's rule)."""
    weights = np.where(weights > 1e-6, weights, 0.0)
    per_vertex = int((weights > 0).sum(1).max())
    slots = 4 * max(1, -(-per_vertex // 4))
    order = np.argsort(-weights, axis=1, kind="stable")[:, :slots]
    picked = np.take_along_axis(weights, order, 1)
    picked = picked / picked.sum(1, keepdims=True)
    picked32 = picked.astype(np.float32)
    # float32 rounding: put the residual on the strongest influence so each row sums to 1 in float32
    picked32[:, 0] += (1.0 - picked32.astype(np.float64).sum(1)).astype(np.float32)
    joints = np.where(picked32 > 0, order, 0).astype(np.uint8)
    return ([joints[:, k:k + 4] for k in range(0, slots, 4)], [picked32[:, k:k + 4] for k in range(0, slots, 4)])


def write_gltf(gltf, data: bytes, path, binary: bool) -> None:
    """Write .glb (binary chunk) or .gltf (buffer as a base64 data URI: one self-contained file)."""
    if binary:
        gltf.set_binary_blob(data)
        gltf.save_binary(str(path))
    else:
        gltf.buffers[0].uri = "data:application/octet-stream;base64," + base64.b64encode(data).decode("ascii")
        gltf.save_json(str(path))
