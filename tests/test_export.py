"""`handcli export` (docs/export.md): glTF, BVH, Rerun, CSV and Parquet, checked by reading the files back with
independent readers (the Khronos validator, pygltflib, the `bvh` package, the Rerun SDK, pyarrow) and
comparing with the hand model posed by the artifact's own parameters.

The artifacts are built here from the open hand model with known parameters: two tracks, one right and one
left hand (a mirrored model: the case that needs care), with frames where one track is not valid."""

from __future__ import annotations

import base64
import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from handcli.artifacts import Artifact, save_artifact
from handcli.errors import BadInput
from handcli.export import ExportConfig, export_artifact
from handcli.handmodels import load_hand_model
from tests.conftest import REPO, assert_one_line_error, run_cli

T = 8
FPS = 24.0
WORLD_UP = np.diag([1.0, -1.0, -1.0])  # camera (OpenCV) -> world-up, as documented
MM = 1e-3
VALIDATOR_VERSION = "2.0.0-dev.3.10"  # the Makefile's pin


# ------------------------------------------------------------------------------------------------ data
def posed_artifact(seed: int = 0, is_right=(True, False), frames: int = T) -> Artifact:
    """H = len(is_right) tracks of the open hand posed with known random parameters; track 1 (if any) is
    invalid on its first two frames (NaN parameters on frame 0, as an input may hold)."""
    rng = np.random.default_rng(seed)
    model = load_hand_model("open")
    H = len(is_right)
    ramp = np.linspace(0.0, 1.0, frames)[None, :, None]
    orient = rng.normal(0, 0.8, (H, 1, 3)) + ramp * rng.normal(0, 0.8, (H, 1, 3))
    pose = rng.normal(0, 0.35, (H, 1, 15, 3)) * (0.3 + ramp[..., None])
    transl = rng.normal(0, 0.08, (H, 1, 3)) + np.array([0, 0, 0.5]) + ramp * rng.normal(0, 0.05, (H, 1, 3))
    betas = rng.normal(0, 1, (H, model.num_betas))
    keypoints = np.stack([_keypoints(model, orient[h], pose[h], betas[h], transl[h], is_right[h]) for h in range(H)])
    valid = np.ones((H, frames), bool)
    K = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
    pixels = keypoints[..., :2] / keypoints[..., 2:] * 600 + np.array([320.0, 240.0])
    artifact = Artifact(
        keypoints3d=keypoints.astype(np.float32), valid=valid, is_right=np.array(is_right), fps=FPS,
        meta={"hand_model": "open", "stage": "refine"}, global_orient=orient.astype(np.float32),
        hand_pose=pose.astype(np.float32), transl=transl.astype(np.float32), betas=betas.astype(np.float32),
        var_joints=((rng.uniform(1, 6, (H, frames, 21)) * MM) ** 2).astype(np.float32),
        K=K.astype(np.float32), image_size=np.array([640, 480]),
        keypoints2d=np.concatenate([pixels, np.ones_like(pixels[..., :1])], -1).astype(np.float32),
        observed=np.ones((H, frames), bool), track_id=np.arange(H) + 7)
    if H > 1:
        artifact.valid[1, :2] = False
        artifact.observed[1, :2] = False
        artifact.observed[0, 3] = False  # an infilled frame
    artifact.beyond_calibration = np.zeros((H, frames), bool)
    artifact.beyond_calibration[0, 4] = True  # error bars beyond the calibration's range
    return artifact


def _keypoints(model, orient, pose, betas, transl, is_right) -> np.ndarray:
    def f(a):
        return torch.as_tensor(np.asarray(a, np.float32))

    with torch.no_grad():
        betas_t = f(betas)[None].expand(len(orient), -1)
        return model.keypoints(f(orient), f(pose), betas_t, f(transl), bool(is_right)).numpy()


def model_output(artifact: Artifact, h: int):
    """(vertices (T, V, 3), keypoints (T, 21, 3)) of track h from the artifact's own parameters (float64)."""
    model = load_hand_model("open").double()

    def f(a):
        return torch.as_tensor(np.asarray(a, np.float64))

    with torch.no_grad():
        out = model(f(artifact.global_orient[h]), f(artifact.hand_pose[h]),
                    f(artifact.betas[h])[None].expand(artifact.num_frames, -1), f(artifact.transl[h]),
                    bool(artifact.is_right[h]))
    return out.vertices.numpy(), out.joints.numpy()


@pytest.fixture(scope="module")
def two_hands() -> Artifact:
    return posed_artifact()


@pytest.fixture(scope="module")
def exported(two_hands, tmp_path_factory):
    """Every format written once from the two-hand artifact: name -> path (or paths)."""
    folder = tmp_path_factory.mktemp("export")
    out = {}
    for name in ("hands.glb", "hands.gltf", "hands.bvh", "hands.rrd", "hands.csv", "hands.parquet"):
        result = export_artifact(two_hands, ExportConfig(out=folder / name))
        out[name] = result.paths
    return out


# --------------------------------------------------------------------------------------- glTF reading
def read_gltf(path: Path) -> tuple[dict, bytes]:
    """(JSON document, binary buffer) read with pygltflib, then decoded here, independently of the writer."""
    from pygltflib import GLTF2

    gltf = GLTF2().load(str(path))
    document = json.loads(gltf.to_json())
    if path.suffix == ".glb":
        blob = gltf.binary_blob()
    else:
        uri = document["buffers"][0]["uri"]
        blob = base64.b64decode(uri.split(",", 1)[1])
    return document, blob


COMPONENTS = {5126: np.float32, 5121: np.uint8, 5123: np.uint16, 5125: np.uint32}
WIDTH = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}


def accessor(document: dict, blob: bytes, index: int) -> np.ndarray:
    acc = document["accessors"][index]
    view = document["bufferViews"][acc["bufferView"]]
    assert "byteStride" not in view
    dtype = np.dtype(COMPONENTS[acc["componentType"]])
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    width = WIDTH[acc["type"]]
    data = np.frombuffer(blob, dtype, acc["count"] * width, start).reshape(acc["count"], width)
    if acc["type"] == "MAT4":  # column-major
        return data.reshape(-1, 4, 4).transpose(0, 2, 1).astype(np.float64)
    return data.astype(np.float64)


def quat_matrix(xyzw: np.ndarray) -> np.ndarray:
    return Rotation.from_quat(xyzw).as_matrix()


def trs(node: dict, overrides: dict) -> np.ndarray:
    """A node's local 4x4 (glTF: T · R · S), animated values replacing the defaults."""
    matrix = np.eye(4)
    translation = overrides.get("translation", node.get("translation", [0, 0, 0]))
    rotation = overrides.get("rotation", node.get("rotation", [0, 0, 0, 1]))
    scale = overrides.get("scale", node.get("scale", [1, 1, 1]))
    matrix[:3, :3] = quat_matrix(np.asarray(rotation)) @ np.diag(scale)
    matrix[:3, 3] = translation
    return matrix


def animated_globals(document: dict, blob: bytes, animation: dict, key: int) -> dict[int, np.ndarray]:
    """node -> global 4x4 at keyframe `key` of `animation` (every node of the scene)."""
    overrides: dict[int, dict] = {}
    for channel in animation["channels"]:
        sampler = animation["samplers"][channel["sampler"]]
        values = accessor(document, blob, sampler["output"])
        overrides.setdefault(channel["target"]["node"], {})[channel["target"]["path"]] = values[key]
    globals_: dict[int, np.ndarray] = {}

    def visit(n: int, parent: np.ndarray) -> None:
        globals_[n] = parent @ trs(document["nodes"][n], overrides.get(n, {}))
        for child in document["nodes"][n].get("children", []):
            visit(child, globals_[n])

    for root in document["scenes"][document.get("scene", 0)]["nodes"]:
        visit(root, np.eye(4))
    return globals_


def skinned_vertices(document: dict, blob: bytes, mesh_node: int, globals_: dict[int, np.ndarray]) -> np.ndarray:
    """glTF skinning: Σ_k w_k · (global(joint_k) · inverseBind_k) · position."""
    node = document["nodes"][mesh_node]
    skin = document["skins"][node["skin"]]
    inverse_bind = accessor(document, blob, skin["inverseBindMatrices"])
    joint_matrices = np.stack([globals_[j] @ inverse_bind[k] for k, j in enumerate(skin["joints"])])
    attributes = document["meshes"][node["mesh"]]["primitives"][0]["attributes"]
    positions = accessor(document, blob, attributes["POSITION"])
    homogeneous = np.concatenate([positions, np.ones((len(positions), 1))], 1)
    out = np.zeros((len(positions), 4))
    k = 0
    while f"JOINTS_{k}" in attributes:
        joints = accessor(document, blob, attributes[f"JOINTS_{k}"]).astype(int)
        weights = accessor(document, blob, attributes[f"WEIGHTS_{k}"])
        for slot in range(4):
            out += weights[:, slot, None] * np.einsum("vij,vj->vi", joint_matrices[joints[:, slot]], homogeneous)
        k += 1
    return out[:, :3]


# ------------------------------------------------------------------------------------------- validator
def validator_module() -> Path | None:
    if shutil.which("node") is None:
        return None
    local = REPO / ".tools" / "node_modules" / "gltf-validator"
    if local.is_dir():
        return local
    if shutil.which("npm"):
        root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True).stdout.strip()
        if root and (Path(root) / "gltf-validator").is_dir():
            return Path(root) / "gltf-validator"
    return None


VALIDATE_JS = """
const fs = require('fs');
const validator = require(process.argv[1]);
const data = new Uint8Array(fs.readFileSync(process.argv[2]));
validator.validateBytes(data, {uri: process.argv[2], maxIssues: 50}).then(r => {
  console.log(JSON.stringify(r.issues));
}).catch(e => { console.error(String(e)); process.exit(1); });
"""


@pytest.mark.parametrize("name", ["hands.glb", "hands.gltf"])
def test_gltf_passes_the_khronos_validator(exported, name):
    module = validator_module()
    if module is None:
        pytest.skip("the Khronos glTF validator is not installed: `make setup` puts gltf-validator "
                    f"{VALIDATOR_VERSION} in .tools/ (needs node and npm)")
    result = subprocess.run(["node", "-e", VALIDATE_JS, str(module), str(exported[name][0])], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    issues = json.loads(result.stdout)
    assert issues["numErrors"] == 0, issues["messages"]
    assert issues["numWarnings"] == 0, issues["messages"]


@pytest.mark.parametrize("name", ["hands.glb", "hands.gltf"])
def test_gltf_keyframes_are_the_artifact_poses(exported, two_hands, name):
    document, blob = read_gltf(exported[name][0])
    assert [a["name"] for a in document["animations"]] == ["hand0_right", "hand1_left"]
    for h, animation in enumerate(document["animations"]):
        targets = {(c["target"]["node"], c["target"]["path"]): animation["samplers"][c["sampler"]]
                   for c in animation["channels"]}
        names = {n: document["nodes"][n]["name"] for n, _ in targets}
        wrist = next(n for n, name_ in names.items() if name_ == f"hand{h}_wrist")
        times = accessor(document, blob, targets[(wrist, "rotation")]["input"])[:, 0]
        np.testing.assert_allclose(times, np.arange(T) / FPS, atol=1e-6)
        rotation = quat_matrix(accessor(document, blob, targets[(wrist, "rotation")]["output"]))
        translation = accessor(document, blob, targets[(wrist, "translation")]["output"])
        index1 = next(n for n, name_ in names.items() if name_ == f"hand{h}_index1")
        finger = quat_matrix(accessor(document, blob, targets[(index1, "rotation")]["output"]))
        for key in (0, T - 1):  # first and last keyframes
            expected = Rotation.from_rotvec(two_hands.global_orient[h, key].astype(np.float64)).as_matrix()
            np.testing.assert_allclose(rotation[key], expected, atol=1e-5)
            # MANO joint 1 is index MCP: hand_pose[:, 0]
            expected = Rotation.from_rotvec(two_hands.hand_pose[h, key, 0].astype(np.float64)).as_matrix()
            np.testing.assert_allclose(finger[key], expected, atol=1e-5)
            # the open hand's rest wrist is the origin (also after mirroring), so the wrist is at transl
            np.testing.assert_allclose(translation[key], two_hands.transl[h, key], atol=1e-6)


def test_gltf_skinning_reproduces_the_hand_model(exported, two_hands):
    """Read back and skinned the way a glTF viewer does: the mesh is the model's, right and left hand, in the
    world-up frame, at the first valid and the last keyframe."""
    document, blob = read_gltf(exported["hands.glb"][0])
    mesh_nodes = [n for n, node in enumerate(document["nodes"]) if "mesh" in node]
    assert mesh_nodes == sorted(mesh_nodes) and len(mesh_nodes) == 2
    assert set(mesh_nodes) <= set(document["scenes"][0]["nodes"])  # skinned meshes at the root
    for h, (animation, mesh_node) in enumerate(zip(document["animations"], mesh_nodes)):
        vertices, _ = model_output(two_hands, h)
        first = int(np.flatnonzero(two_hands.valid[h])[0])  # before it the hand is hidden (scale 0)
        for key in (first, T - 1):
            posed = skinned_vertices(document, blob, mesh_node, animated_globals(document, blob, animation, key))
            np.testing.assert_allclose(posed, vertices[key] @ WORLD_UP.T, atol=2e-5)


def test_gltf_left_hand_winds_outward(exported):
    """Triangles of both hands face outward after export (mirroring flips the left hand's winding)."""
    document, blob = read_gltf(exported["hands.glb"][0])
    for mesh in document["meshes"]:
        primitive = mesh["primitives"][0]
        positions = accessor(document, blob, primitive["attributes"]["POSITION"])
        faces = accessor(document, blob, primitive["indices"]).astype(int).reshape(-1, 3)
        corners = positions[faces]
        normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        outward = np.einsum("fi,fi->f", normals, corners.mean(1) - positions.mean(0))
        # a closed-ish hand surface: face normals point away from its centre on the whole
        assert outward.sum() > 0, mesh["name"]


def test_gltf_hides_invalid_frames_and_keeps_flags(exported, two_hands):
    document, blob = read_gltf(exported["hands.glb"][0])
    left = document["animations"][1]
    scale = [c for c in left["channels"] if c["target"]["path"] == "scale"]
    assert len(scale) == 1
    sampler = left["samplers"][scale[0]["sampler"]]
    assert sampler["interpolation"] == "STEP"
    np.testing.assert_array_equal(accessor(document, blob, sampler["output"])[:, 0], two_hands.valid[1])
    assert left["extras"]["valid"] == two_hands.valid[1].astype(int).tolist()
    assert document["animations"][0]["extras"]["extrapolated"] == two_hands.beyond_calibration[0].astype(int).tolist()
    assert not any(c["target"]["path"] == "scale" for c in document["animations"][0]["channels"])
    # variance colours are present (var_joints) and the frame conversion is recorded
    assert "COLOR_0" in document["meshes"][0]["primitives"][0]["attributes"]
    assert document["scenes"][0]["extras"]["frame"] == "world-up"


def test_gltf_camera_frame_is_the_artifact_frame(two_hands, tmp_path):
    out = tmp_path / "camera.glb"
    export_artifact(two_hands, ExportConfig(out=out, frame="camera", track=0, colours=False))
    document, blob = read_gltf(out)
    assert len(document["animations"]) == 1 and "rotation" not in document["nodes"][0]
    mesh_node = next(n for n, node in enumerate(document["nodes"]) if "mesh" in node)
    vertices, _ = model_output(two_hands, 0)
    posed = skinned_vertices(document, blob, mesh_node, animated_globals(document, blob, document["animations"][0], 3))
    np.testing.assert_allclose(posed, vertices[3], atol=2e-5)
    assert "COLOR_0" not in document["meshes"][0]["primitives"][0]["attributes"]


# ------------------------------------------------------------------------------------------------ BVH
EULER_AXES = {"Xrotation": "x", "Yrotation": "y", "Zrotation": "z"}
BVH_TO_CANONICAL = {"wrist": 0}
for finger, first in (("thumb", 1), ("index", 5), ("middle", 9), ("ring", 13), ("pinky", 17)):
    for k in range(3):
        BVH_TO_CANONICAL[f"{finger}{k + 1}"] = first + k


def bvh_keypoints(path: Path) -> tuple[np.ndarray, float]:
    """Forward kinematics of a BVH file parsed by the `bvh` package: ((frames, 21, 3) canonical keypoints,
    frame time). Rotation channels compose in listed order (R = R_first · R_second · R_third); end sites are
    the fingertips (the tip after each finger's third joint)."""
    from bvh import Bvh

    parsed = Bvh(path.read_text())
    joints = parsed.get_joints()
    out = np.zeros((parsed.nframes, 21, 3))
    world: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for joint in joints:
        name = joint.name
        channels = parsed.joint_channels(name)
        offset = np.array(parsed.joint_offset(name))
        values = np.array(parsed.frames_joint_channels(name, channels))  # (frames, channels)
        rotation = np.tile(np.eye(3), (parsed.nframes, 1, 1))
        for k, channel in enumerate(channels):
            if channel in EULER_AXES:
                turn = Rotation.from_euler(EULER_AXES[channel], values[:, k:k + 1], degrees=True)
                rotation = rotation @ turn.as_matrix()
        parent = parsed.joint_parent(name)
        if parent is None:
            position = offset + values[:, [channels.index(c) for c in ("Xposition", "Yposition", "Zposition")]]
            world_rotation = rotation
        else:
            parent_rotation, parent_position = world[parent.name]
            position = parent_position + parent_rotation @ offset
            world_rotation = parent_rotation @ rotation
        world[name] = (world_rotation, position)
        out[:, BVH_TO_CANONICAL[name]] = position
        for end in joint.filter("End"):
            tip = np.array([float(v) for v in end["OFFSET"]])
            out[:, BVH_TO_CANONICAL[name] + 1] = position + world_rotation @ tip
    return out, parsed.frame_time


def test_bvh_round_trip_within_a_millimetre(exported, two_hands):
    paths = exported["hands.bvh"]
    assert [p.name for p in paths] == ["hands_track0.bvh", "hands_track1.bvh"]
    for h, path in enumerate(paths):
        keypoints, frame_time = bvh_keypoints(path)
        assert frame_time == pytest.approx(1 / FPS, abs=1e-7)
        _, expected = model_output(two_hands, h)
        assert keypoints.shape == (T, 21, 3)
        error = np.linalg.norm(keypoints - expected @ WORLD_UP.T, axis=-1)
        assert error.max() < 1 * MM, (h, error.max())


def test_bvh_single_track_camera_frame(two_hands, tmp_path):
    out = tmp_path / "left.bvh"
    result = export_artifact(two_hands, ExportConfig(out=out, track=1, frame="camera"))
    assert result.paths == [out] and sorted(p.name for p in tmp_path.iterdir()) == ["left.bvh"]
    keypoints, _ = bvh_keypoints(out)
    _, expected = model_output(two_hands, 1)
    assert np.linalg.norm(keypoints - expected, axis=-1).max() < 1 * MM
    header = out.read_text().split("MOTION")[0]
    assert "CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation" in header
    assert header.count("End Site") == 5 and header.count("JOINT") == 15


# ---------------------------------------------------------------------------------------------- Rerun
def test_rrd_loads_with_the_rerun_sdk(exported, two_hands):
    rr = pytest.importorskip("rerun", reason="rerun-sdk is part of the test extra")
    recording = rr.dataframe.load_recording(str(exported["hands.rrd"][0]))
    columns = {str(c) for c in recording.schema().component_columns()}
    for h in (0, 1):
        for part in ("keypoints:Position3D", "mesh:Position3D", "mesh:Color", "mesh:TriangleIndices"):
            assert f"Component(/world/hands/track{h}/{part})" in columns, part
        assert f"Component(/world/camera/image/keypoints2d/track{h}/points:Position2D)" in columns
    table = recording.view(index="frame", contents="/world/hands/track1/keypoints").select().read_all()
    frames = table.column("frame").to_pylist()
    positions = table.column("/world/hands/track1/keypoints:Position3D").to_pylist()
    logged = {t: p for t, p in zip(frames, positions) if p is not None}
    assert sorted(logged) == np.flatnonzero(two_hands.valid[1]).tolist()  # invalid frames are not drawn
    for t, points in logged.items():
        np.testing.assert_allclose(np.array(points), two_hands.keypoints3d[1, t], atol=1e-6)
    assert "Component(/world/hands/track1:ClearIsRecursive)" in columns  # the hand is cleared where invalid
    flags = recording.view(index="frame", contents="/flags").select().read_all()
    texts = {t: text for t, text in zip(flags.column("frame").to_pylist(), flags.column("/flags:Text").to_pylist())
             if text is not None}
    assert "track 0 error bars extrapolate" in str(texts.get(4)), texts.get(4)
    assert not any("extrapolate" in str(text) for t, text in texts.items() if t != 4)
    mesh = recording.view(index="frame", contents="/world/hands/track0/mesh").select().read_all()
    vertices = [v for v in mesh.column("/world/hands/track0/mesh:Position3D").to_pylist() if v is not None]
    expected, _ = model_output(two_hands, 0)
    np.testing.assert_allclose(np.array(vertices[-1]), expected[-1], atol=1e-5)


def test_rrd_with_the_sample_video(tmp_path):
    """The bundled sample's frames go under the hands on the artifact's frame timeline (frame_index)."""
    rr = pytest.importorskip("rerun", reason="rerun-sdk is part of the test extra")
    artifact = posed_artifact(is_right=(True,), frames=5).replace(frame_index=np.array([0, 10, 20, 30, 40]))
    out = tmp_path / "sample.rrd"
    export_artifact(artifact, ExportConfig(out=out, video=REPO / "samples" / "synthetic_hand.mp4", frame="world-up"))
    recording = rr.dataframe.load_recording(str(out))
    table = recording.view(index="frame", contents="/world/camera/image").select().read_all()
    blobs = dict(zip(table.column("frame").to_pylist(), table.column("/world/camera/image:Blob").to_pylist()))
    assert sorted(t for t, blob in blobs.items() if blob is not None) == [0, 1, 2, 3, 4]
    assert bytes(blobs[2][0][:2]) == b"\xff\xd8"  # JPEG
    with pytest.raises(BadInput, match="--video"):
        export_artifact(artifact, ExportConfig(out=tmp_path / "x.glb", video=REPO / "samples" / "synthetic_hand.mp4"))


# ---------------------------------------------------------------------------------------------- tables
def test_tables_leave_the_flag_empty_without_it(two_hands, tmp_path):
    import pyarrow.parquet as pq

    unflagged = two_hands.replace(beyond_calibration=None)
    export_artifact(unflagged, ExportConfig(out=tmp_path / "a.csv"))
    export_artifact(unflagged, ExportConfig(out=tmp_path / "a.parquet"))
    with open(tmp_path / "a.csv", newline="") as handle:
        assert {row["std_extrapolated"] for row in csv.DictReader(handle)} == {""}
    assert set(pq.read_table(tmp_path / "a.parquet").to_pydict()["std_extrapolated"]) == {None}


def test_csv_and_parquet_rows(exported, two_hands):
    import pyarrow.parquet as pq

    with open(exported["hands.csv"][0], newline="") as handle:
        rows = list(csv.DictReader(handle))
    table = pq.read_table(exported["hands.parquet"][0]).to_pydict()
    assert len(rows) == len(table["track"]) == 2 * T * 21
    assert list(rows[0]) == list(table)
    for row_index in (0, 21 * 5 + 4, 2 * T * 21 - 1):
        row = rows[row_index]
        h, t, j = int(row["track"]), int(row["frame"]), int(row["joint"])
        assert (h, t, j) == (row_index // (T * 21), row_index // 21 % T, row_index % 21)
        xyz = [float(row[k]) for k in "xyz"]
        np.testing.assert_allclose(xyz, two_hands.keypoints3d[h, t, j], atol=1e-6)
        np.testing.assert_allclose([table[k][row_index] for k in "xyz"], two_hands.keypoints3d[h, t, j], atol=1e-6)
        assert float(row["std_mm"]) == pytest.approx(np.sqrt(two_hands.var_joints[h, t, j]) * 1000, rel=1e-5)
        assert row["std_extrapolated"] == str(bool(two_hands.beyond_calibration[h, t]))
    flagged = 4 * 21 + 7  # track 0, frame 4, joint 7: beyond the calibration
    assert rows[flagged]["std_extrapolated"] == "True" and table["std_extrapolated"][flagged] is True
    assert table["std_extrapolated"][0] is False
    wrist_row = rows[T * 21 + 2 * 21]  # track 1, frame 2, wrist
    np.testing.assert_allclose([float(wrist_row[k]) for k in ("rx", "ry", "rz")], two_hands.global_orient[1, 2],
                               atol=1e-6)
    assert rows[4]["joint_name"] == "thumb_tip" and rows[4]["rx"] == "" and table["rx"][4] is None
    assert rows[T * 21]["valid"] == "False" and table["valid"][T * 21] is False
    assert table["track_id"][0] == 7 and table["is_right"][T * 21] is False


# ------------------------------------------------------------------------------------------ bad input
def test_bad_requests_are_refused_before_writing(two_hands, tmp_path):
    with pytest.raises(BadInput, match="cannot tell the format"):
        export_artifact(two_hands, ExportConfig(out=tmp_path / "hands.fbx"))
    with pytest.raises(BadInput, match="--format"):
        export_artifact(two_hands, ExportConfig(out=tmp_path / "hands.glb", format="fbx"))
    with pytest.raises(BadInput, match="--track 2"):
        export_artifact(two_hands, ExportConfig(out=tmp_path / "hands.glb", track=2))
    with pytest.raises(BadInput, match="does not exist"):
        export_artifact(two_hands, ExportConfig(out=tmp_path / "missing" / "hands.glb"))
    with pytest.raises(BadInput, match="--frame"):
        export_artifact(two_hands, ExportConfig(out=tmp_path / "hands.glb", frame="z-up"))
    with pytest.raises(BadInput, match="hand-model parameters"):
        export_artifact(two_hands.replace(betas=None), ExportConfig(out=tmp_path / "hands.csv"))
    assert list(tmp_path.iterdir()) == []


def test_failed_bvh_export_leaves_no_file(two_hands, tmp_path, monkeypatch):
    import handcli.export.bvh as bvh

    real = bvh.bvh_text
    calls = []

    def fail_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(bvh, "bvh_text", fail_second)
    with pytest.raises(RuntimeError):
        export_artifact(two_hands, ExportConfig(out=tmp_path / "hands.bvh"))
    assert list(tmp_path.iterdir()) == []  # neither the first track's file nor any temporary


def test_missing_optional_library_is_one_line(two_hands, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(BadInput, match=r"handcli\[export\]"):
        export_artifact(two_hands, ExportConfig(out=tmp_path / "hands.parquet"))


def test_cli_export_and_its_errors(two_hands, tmp_path):
    source = tmp_path / "hands.npz"
    save_artifact(two_hands, source)
    ok = run_cli("export", "--input", source, "--out", tmp_path / "hands.glb", "--track", "1")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "hands.glb").stat().st_size > 10_000
    assert_one_line_error(run_cli("export", "--input", source, "--out", tmp_path / "x.obj"), 2, "format")
    assert_one_line_error(run_cli("export", "--input", source, "--out", tmp_path / "x.bvh", "--track", "5"), 2,
                          "--track 5")
    keypoints_only = tmp_path / "keypoints.npz"
    np.savez(keypoints_only, keypoints3d=two_hands.keypoints3d)
    assert_one_line_error(run_cli("export", "--input", keypoints_only, "--out", tmp_path / "x.glb"), 2,
                          "hand-model parameters")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hands.glb", "hands.npz", "keypoints.npz"]
