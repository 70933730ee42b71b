"""Importers: each format built here with synthetic values in the real structure, detected by content,
converted to the artifact conventions (left hands, rotation formats, units), and refused cleanly when broken.

A tiny stand-in hand model (16-joint FK, fingers along -x like MANO's rest pose, left = mirrored right)
replaces the real one so the tests are fast and do not depend on model files.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED, assert_one_line_error, needs_shared, run_cli
from handcli.errors import BadInput
from handcli.handmodels.kinematics import MANO21_TO_CANONICAL, MANO_PARENTS, axis_angle_to_matrix, forward_kinematics
from handcli.importers import handmodel
from handcli.importers.convert import axis_angle_to_matrices, mirror_axis_angle, mirror_points
from handcli.inputs import detect_format, load_input

# ----------------------------------------------------------------------------------------------- stand-in


class _Out:
    def __init__(self, joints):
        self.joints = joints


class StandInHand(torch.nn.Module):
    """Right hand: rest joints with fingers along -x and the thumb towards +z, the wrist off the origin (as
    MANO's is); betas[0] scales the hand. Left hands as the real models: left(θ, t) = M·right(Mθ, Mt)."""

    num_betas = 10

    def __init__(self):
        super().__init__()
        rest = [[0.09, 0.005, 0.006]]  # wrist, deliberately not at the origin
        for z in (0.02, 0.0, -0.04, -0.02):  # index, middle, pinky, ring (MANO order)
            rest += [[0.09 - 0.08 - 0.03 * k, 0.0, z] for k in range(3)]
        rest += [[0.07 - 0.02 * k, -0.01, 0.03 + 0.02 * k] for k in range(3)]  # thumb
        self.rest = torch.tensor(rest, dtype=torch.float64)
        self.hands_mean = torch.full((15, 3), 0.1, dtype=torch.float64)

    def _right(self, go, hp, betas, transl):
        scale = 1 + 0.05 * betas[:, :1, None]
        rest = self.rest[None] * scale
        rotations = axis_angle_to_matrix(torch.cat([go[:, None], hp.reshape(-1, 15, 3)], 1))
        joints, _ = forward_kinematics(rotations, rest, MANO_PARENTS)
        tips = joints[:, [15, 3, 6, 12, 9]] + (joints[:, [15, 3, 6, 12, 9]] - joints[:, [14, 2, 5, 11, 8]])
        return torch.cat([joints, tips], 1)[:, list(MANO21_TO_CANONICAL)] + transl[:, None]

    def forward(self, go, hp, betas, transl, is_right=True):
        go, hp, betas, transl = (x.double() for x in (go, hp, betas, transl))
        right = torch.as_tensor(is_right).reshape(-1).expand(go.shape[0])
        sign = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)
        flip = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
        left = ~right
        hp = hp.reshape(-1, 15, 3)
        joints = self._right(torch.where(left[:, None], go * sign, go), torch.where(left[:, None, None], hp * sign, hp),
                             betas, torch.where(left[:, None], transl * flip, transl))
        return _Out(torch.where(left[:, None, None], joints * flip, joints).float())


MODEL = StandInHand()
REAL_IMPORT_HAND_MODEL = handmodel.import_hand_model  # kept before the fixture swaps it out


@pytest.fixture(autouse=True)
def stand_in_model(monkeypatch):
    monkeypatch.setattr(handmodel, "import_hand_model", lambda: (MODEL, "mano"))


def pose(go, hp, betas, transl, is_right):
    """Stand-in keypoints (N, 21, 3) for artifact-convention parameters."""
    n = len(go)
    out = MODEL(*(torch.as_tensor(np.asarray(a, float).reshape(n, -1)) for a in (go, hp, betas, transl)),
                is_right=torch.as_tensor(np.broadcast_to(is_right, (n,)).copy()))
    return out.joints.double().numpy()


def random_params(n, seed=0, shared_betas=True):
    """(global_orient (n,3), hand_pose (n,15,3), betas (n,10): one shape unless told otherwise, transl (n,3))."""
    rng = np.random.default_rng(seed)
    betas = rng.normal(0, 0.5, (1 if shared_betas else n, 10))
    return (rng.normal(0, 0.8, (n, 3)), rng.normal(0, 0.3, (n, 15, 3)), np.repeat(betas, n // len(betas), 0),
            np.array([0.1, -0.05, 2.0]) + rng.normal(0, 0.02, (n, 3)))


def network_outputs(go_r, hp_r, betas, cam_t, is_right, style):
    """What HaMeR ('hamer': rotation matrices, left hands left in the mirrored crop frame) or WiLoR-mini
    ('wilor': axis-angle, left hands un-mirrored) hand back for network outputs (go_r, hp_r) in the crop
    frame, plus the expected artifact (keypoints, global_orient, hand_pose) in the camera frame."""
    n = len(go_r)
    right = np.broadcast_to(is_right, (n,))
    keypoints_crop = pose(go_r, hp_r, betas, np.zeros((n, 3)), True)  # the right-hand model, no translation
    left = ~right
    expected_go = np.where(left[:, None], mirror_axis_angle(go_r), go_r)
    expected_hp = np.where(left[:, None, None], mirror_axis_angle(hp_r), hp_r)
    expected_kp = np.where(left[:, None, None], mirror_points(keypoints_crop), keypoints_crop) + cam_t[:, None]
    if style == "hamer":
        out = dict(global_orient=axis_angle_to_matrices(go_r)[:, None], hand_pose=axis_angle_to_matrices(hp_r),
                   pred_keypoints_3d=keypoints_crop)
    else:
        out = dict(global_orient=expected_go[:, None], hand_pose=expected_hp,
                   pred_keypoints_3d=np.where(left[:, None, None], mirror_points(keypoints_crop), keypoints_crop))
    out.update(betas=betas, pred_cam_t_full=cam_t, is_right=right.astype(np.float32))
    return out, (expected_kp, expected_go, expected_hp)


def write_pickle(path: Path, obj) -> Path:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=4)
    return path


# -------------------------------------------------------------------------------- per-frame MANO outputs


@pytest.mark.parametrize("style", ["hamer", "wilor"])
@pytest.mark.parametrize("with_keypoints", [True, False])
def test_left_hand_conventions_give_the_camera_frame_hand(tmp_path, style, with_keypoints):
    go, hp, betas, cam_t = random_params(6)
    out, (kp, exp_go, exp_hp) = network_outputs(go, hp, betas, cam_t, False, style)
    if not with_keypoints:
        out.pop("pred_keypoints_3d")
    np.savez(tmp_path / "left.npz", **out)
    artifact, fmt = load_input(tmp_path / "left.npz")
    assert fmt == "mano-outputs-npz" and artifact.keypoints3d.shape == (1, 6, 21, 3)
    assert not artifact.is_right[0] and artifact.valid.all()
    np.testing.assert_allclose(artifact.keypoints3d[0], kp, atol=1e-5)
    np.testing.assert_allclose(artifact.global_orient[0], exp_go, atol=1e-5)
    np.testing.assert_allclose(artifact.hand_pose[0], exp_hp, atol=1e-5)
    np.testing.assert_allclose(artifact.transl[0], cam_t, atol=1e-6)
    # the stored parameters reproduce the keypoints through the model's left-hand convention
    again = pose(artifact.global_orient[0], artifact.hand_pose[0], np.repeat(artifact.betas, 6, 0),
                 artifact.transl[0], False)
    np.testing.assert_allclose(again, kp, atol=1e-4)


def test_rotation_matrices_and_axis_angle_give_the_same_artifact(tmp_path):
    go, hp, betas, cam_t = random_params(5, seed=1)
    for is_right in (True, False):
        hamer, _ = network_outputs(go, hp, betas, cam_t, is_right, "hamer")
        wilor, _ = network_outputs(go, hp, betas, cam_t, is_right, "wilor")
        np.savez(tmp_path / "m.npz", **hamer)
        np.savez(tmp_path / "a.npz", **wilor)
        from_matrices, _ = load_input(tmp_path / "m.npz")
        from_axis_angle, _ = load_input(tmp_path / "a.npz")
        for key in ("keypoints3d", "global_orient", "hand_pose", "transl", "betas", "valid", "is_right"):
            np.testing.assert_allclose(getattr(from_matrices, key), getattr(from_axis_angle, key), atol=1e-5,
                                       err_msg=key)


def test_keypoints_decide_the_left_frame_against_the_rule(tmp_path):
    """Rotation matrices normally mean HaMeR's mirrored frame; un-mirrored content is recognised by its
    keypoints and imported correctly anyway."""
    go, hp, betas, cam_t = random_params(4, seed=2)
    wilor, (kp, exp_go, _) = network_outputs(go, hp, betas, cam_t, False, "wilor")
    wilor["global_orient"] = axis_angle_to_matrices(wilor["global_orient"])
    np.savez(tmp_path / "x.npz", **wilor)
    artifact, _ = load_input(tmp_path / "x.npz")
    np.testing.assert_allclose(artifact.keypoints3d[0], kp, atol=1e-5)
    np.testing.assert_allclose(artifact.global_orient[0], exp_go, atol=1e-5)
    assert "measured" in artifact.meta["import"]["left_hands"]


def test_keypoints_that_already_include_the_translation(tmp_path):
    go, hp, betas, cam_t = random_params(4, seed=3)
    out, (kp, _, _) = network_outputs(go, hp, betas, cam_t, True, "hamer")
    out["pred_keypoints_3d"] = out["pred_keypoints_3d"] + cam_t[:, None]  # HaMeR demo --save_keypoints
    np.savez(tmp_path / "k.npz", **out)
    artifact, _ = load_input(tmp_path / "k.npz")
    np.testing.assert_allclose(artifact.keypoints3d[0], kp, atol=1e-5)


def test_hands_mean_convention_is_converted(tmp_path):
    go, hp, betas, cam_t = random_params(3, seed=4)
    out, (kp, _, exp_hp) = network_outputs(go, hp, betas, cam_t, True, "wilor")
    out.pop("pred_keypoints_3d")
    out["hand_pose"] = out["hand_pose"] - MODEL.hands_mean.numpy()  # relative to MANO's mean pose
    np.savez(tmp_path / "mean.npz", flat_hand_mean=False, **out)
    artifact, _ = load_input(tmp_path / "mean.npz")
    np.testing.assert_allclose(artifact.hand_pose[0], exp_hp, atol=1e-5)
    np.testing.assert_allclose(artifact.keypoints3d[0], kp, atol=1e-4)


def test_track_layout_and_detection_layout(tmp_path):
    go, hp, betas, cam_t = random_params(8, seed=5)
    sides = np.array([True] * 4 + [False] * 4)
    out, (kp, _, _) = network_outputs(go, hp, betas, cam_t, sides, "wilor")
    tracks = {k: v.reshape(2, 4, *v.shape[1:]) for k, v in out.items() if k != "is_right"}
    np.savez(tmp_path / "tracks.npz", is_right=np.array([1, 0]), **tracks)
    artifact, _ = load_input(tmp_path / "tracks.npz")
    assert artifact.keypoints3d.shape == (2, 4, 21, 3) and list(artifact.is_right) == [True, False]
    np.testing.assert_allclose(artifact.keypoints3d.reshape(8, 21, 3), kp, atol=1e-5)

    # the same rows as detections with frame numbers (right hand on 10..13, left on 10, 11, 14, 15)
    frames = np.array([10, 11, 12, 13, 10, 11, 14, 15])
    np.savez(tmp_path / "detections.npz", frame_index=frames, **out)
    artifact, _ = load_input(tmp_path / "detections.npz")
    assert artifact.num_frames == 6 and list(artifact.frame_index) == list(range(10, 16))
    assert list(artifact.is_right) == [False, True]  # ordered by first appearance, left first on ties
    assert artifact.valid.tolist() == [[1, 1, 0, 0, 1, 1], [1, 1, 1, 1, 0, 0]]
    np.testing.assert_allclose(artifact.keypoints3d[1, :4], kp[:4], atol=1e-5)
    np.testing.assert_allclose(artifact.keypoints3d[0, [0, 1, 4, 5]], kp[4:], atol=1e-5)
    assert np.isnan(artifact.keypoints3d[1, 4:]).all()


def wilor_mini_result(go, hp, betas, cam_t, is_right, focal=5000 / 256 * 1280, size=(1280, 720)):
    """One WiLoR-mini detection dict, arrays with its (1, ...) batch axis."""
    out, (kp, _, _) = network_outputs(go[None], hp[None], betas[None], cam_t[None], is_right, "wilor")
    uv = focal * kp[..., :2] / kp[..., 2:] + np.array(size) / 2
    preds = dict(global_orient=out["global_orient"].astype(np.float32), hand_pose=out["hand_pose"].astype(np.float32),
                 betas=betas[None].astype(np.float32), pred_cam=np.zeros((1, 3), np.float32),
                 pred_keypoints_3d=out["pred_keypoints_3d"].astype(np.float32),
                 pred_vertices=np.zeros((1, 778, 3), np.float32), pred_cam_t_full=cam_t[None].astype(np.float32),
                 scaled_focal_length=np.float64(focal), pred_keypoints_2d=uv.astype(np.float32))
    return {"hand_bbox": [100.0, 100.0, 200.0, 220.0], "is_right": float(is_right), "wilor_preds": preds}, kp[0]


def test_wilor_mini_video_pickle_builds_tracks(tmp_path):
    go, hp, betas, cam_t = random_params(12, seed=6)
    cam_t[:, 0] = np.where(np.arange(12) % 2 == 0, 0.3, -0.3)  # right hands on one side, left on the other
    frames, expected = [], {}
    for t in range(6):
        detections = []
        for side, row in ((1, 2 * t), (0, 2 * t + 1)):
            if side == 0 and t == 3:
                continue  # the left hand is missed on frame 3
            result, kp = wilor_mini_result(go[row], hp[row], betas[row], cam_t[row], side)
            detections.append(result)
            expected[(side, t)] = kp
        if t == 4:  # a second right hand far away: a third track
            far = cam_t[2 * t] + np.array([-1.5, 0.0, 0.0])
            result, expected[(2, t)] = wilor_mini_result(go[0], hp[0], betas[0], far, 1)
            detections.append(result)
        frames.append(detections)
    frames.append([])  # a frame without hands
    path = write_pickle(tmp_path / "wilor.pkl", frames)
    assert detect_format(path) == "mano-outputs-pkl"
    artifact, _ = load_input(path)
    assert artifact.keypoints3d.shape == (3, 7, 21, 3)
    assert list(artifact.is_right) == [False, True, True]
    assert artifact.valid.tolist() == [[1, 1, 1, 0, 1, 1, 0], [1] * 6 + [0], [0, 0, 0, 0, 1, 0, 0]]
    for (side, t), kp in expected.items():
        track = {0: 0, 1: 1, 2: 2}[side]
        np.testing.assert_allclose(artifact.keypoints3d[track, t], kp, atol=1e-4)
    np.testing.assert_allclose(artifact.K, [[25000, 0, 640], [0, 25000, 360], [0, 0, 1]], atol=0.5)
    assert list(artifact.image_size) == [1280, 720]
    assert artifact.boxes.shape == (3, 7, 4) and "WiLoR-mini" in artifact.meta["import"]["source"]

    one_image = write_pickle(tmp_path / "image.pkl", frames[0])  # pipe.predict(image) for one image
    artifact, _ = load_input(one_image)
    assert artifact.keypoints3d.shape == (2, 1, 21, 3)


def test_is_right_changing_without_frame_index_is_refused(tmp_path):
    go, hp, betas, cam_t = random_params(4, seed=7)
    out, _ = network_outputs(go, hp, betas, cam_t, np.array([1, 1, 0, 0], bool), "wilor")
    np.savez(tmp_path / "mixed.npz", **out)
    with pytest.raises(BadInput, match="frame_index"):
        load_input(tmp_path / "mixed.npz")


# ------------------------------------------------------------------------------------------- world space


def test_hawor_world_space_res(tmp_path):
    num_frames = 5
    go, hp, betas, transl = random_params(2 * num_frames, seed=8, shared_betas=False)  # HaWoR: per frame
    valid = torch.ones(2, num_frames)
    valid[0, 1] = 0
    fields = [torch.tensor(transl.reshape(2, num_frames, 3)), torch.tensor(go.reshape(2, num_frames, 3)),
              torch.tensor(hp.reshape(2, num_frames, 45)), torch.tensor(betas.reshape(2, num_frames, 10)), valid]
    plain = write_pickle(tmp_path / "world_space_res.pth", [f.float() for f in fields])  # joblib.dump of tensors
    zipped = tmp_path / "saved.pth"
    torch.save([f.float() for f in fields], zipped)
    resaved = tmp_path / "resaved.npz"
    np.savez(resaved, **dict(zip(("trans", "rot", "hand_pose", "betas", "valid"), (f.numpy() for f in fields))))
    for path in (plain, zipped, resaved):
        artifact, fmt = load_input(path)
        assert fmt == "hawor-world-space" and list(artifact.is_right) == [False, True]
        assert artifact.valid.tolist() == [[1, 0, 1, 1, 1], [1] * 5]
        mean_betas = betas.reshape(2, num_frames, 10)[0][[0, 2, 3, 4]].mean(0)
        np.testing.assert_allclose(artifact.betas[0], mean_betas, atol=1e-5)
        # index 0 holds MANO_LEFT parameters: the artifact's left convention, unchanged
        np.testing.assert_allclose(artifact.global_orient[0, 0], go[0], atol=1e-6)
        expected = pose(go[:num_frames], hp[:num_frames], np.repeat(artifact.betas[:1], num_frames, 0),
                        transl[:num_frames], False)
        np.testing.assert_allclose(artifact.keypoints3d[0, [0, 2, 3, 4]], expected[[0, 2, 3, 4]], atol=1e-4)
        assert "world" in artifact.meta["import"]["frame"]


def joblib_dump(obj, path: Path, monkeypatch) -> Path:
    """The layout joblib.dump writes for numpy arrays, without joblib: each array is a
    joblib.numpy_pickle.NumpyArrayWrapper object in the pickle stream, followed (after the current
    frame is flushed) by one padding-length byte, the padding, and the array's raw bytes."""
    import sys
    import types

    module = types.ModuleType("joblib.numpy_pickle")
    wrapper_class = type("NumpyArrayWrapper", (), {"__module__": "joblib.numpy_pickle"})
    module.NumpyArrayWrapper = wrapper_class
    monkeypatch.setitem(sys.modules, "joblib", types.ModuleType("joblib"))
    monkeypatch.setitem(sys.modules, "joblib.numpy_pickle", module)

    class Pickler(pickle._Pickler):
        def save(self, value, save_persistent_id=True):
            if not isinstance(value, np.ndarray):
                return super().save(value, save_persistent_id)
            wrapper = wrapper_class()
            wrapper.__dict__.update(subclass=np.ndarray, shape=value.shape, order="F", dtype=value.dtype,
                                    allow_mmap=True, numpy_array_alignment_bytes=16)
            super().save(wrapper)
            self.framer.commit_frame(force=True)
            handle.write(bytes([3]) + b"\0\0\0" + np.asfortranarray(value).tobytes(order="F"))

    with open(path, "wb") as handle:
        Pickler(handle, protocol=4).dump(obj)
    return path


def test_hawor_saved_by_joblib_with_numpy_arrays(tmp_path, monkeypatch):
    num_frames = 3
    go, hp, betas, transl = random_params(2 * num_frames, seed=11)
    fields = [transl.reshape(2, num_frames, 3), go.reshape(2, num_frames, 3), hp.reshape(2, num_frames, 45),
              betas.reshape(2, num_frames, 10), np.ones((2, num_frames), bool)]
    path = joblib_dump(fields, tmp_path / "world_space_res.pth", monkeypatch)
    monkeypatch.delitem(__import__("sys").modules, "joblib.numpy_pickle")  # loading must not need joblib
    artifact, fmt = load_input(path)
    assert fmt == "hawor-world-space" and artifact.valid.all()
    np.testing.assert_allclose(artifact.global_orient.reshape(-1, 3), go, atol=1e-6)
    np.testing.assert_allclose(artifact.transl.reshape(-1, 3), transl, atol=1e-6)


def test_hawor_track_never_valid_is_dropped(tmp_path):
    fields = [torch.zeros(2, 3, 3), torch.zeros(2, 3, 3), torch.zeros(2, 3, 45), torch.zeros(2, 3, 10),
              torch.tensor([[0.0, 0, 0], [1, 1, 1]])]
    artifact, _ = load_input(write_pickle(tmp_path / "w.pth", fields))
    assert artifact.num_tracks == 1 and list(artifact.is_right) == [True]


def test_dyn_hamr_world_results_left_track(tmp_path):
    num_frames = 4
    go, hp, betas, trans = random_params(2 * num_frames, seed=9)
    np.savez(tmp_path / "seq_000300_world_results.npz", trans=trans.reshape(2, num_frames, 3),
             root_orient=go.reshape(2, num_frames, 3), pose_body=hp.reshape(2, num_frames, 45),
             betas=betas[:2], is_right=np.array([[0.0] * num_frames, [1.0] * num_frames]),
             cam_R=np.tile(np.eye(3), (num_frames, 1, 1)), cam_t=np.zeros((num_frames, 3)))
    artifact, fmt = load_input(tmp_path / "seq_000300_world_results.npz")
    assert fmt == "dyn-hamr-world-results" and list(artifact.is_right) == [False, True]
    # Dyn-HaMR: left joints = M·(right MANO(θ) + t)
    right_then_mirrored = mirror_points(pose(go[:num_frames], hp[:num_frames], np.repeat(betas[:1], num_frames, 0),
                                             trans[:num_frames], True))
    np.testing.assert_allclose(artifact.keypoints3d[0], right_then_mirrored, atol=1e-4)
    np.testing.assert_allclose(artifact.keypoints3d[1], pose(go[num_frames:], hp[num_frames:],
                               np.repeat(betas[1:2], num_frames, 0), trans[num_frames:], True), atol=1e-4)


def test_real_hand_model_bridge(tmp_path, monkeypatch):
    """With the real model behind the importer: keypoints computed for a parameters-only left hand match
    the model's own left-hand posing, and HaMeR-style keypoints made by it are recognised as mirrored."""
    from handcli.handmodels.open_hand import OPEN_HAND_PATH

    if not OPEN_HAND_PATH.is_file():
        pytest.skip("open hand model not built")
    monkeypatch.setattr(handmodel, "import_hand_model", REAL_IMPORT_HAND_MODEL)
    model, name = REAL_IMPORT_HAND_MODEL()
    go, hp, betas, cam_t = random_params(3, seed=12)
    with torch.no_grad():
        crop = model(torch.tensor(go).float(), torch.tensor(hp).float(), torch.zeros(3, model.num_betas),
                     torch.zeros(3, 3), is_right=True).joints.double().numpy()
    np.savez(tmp_path / "hamer.npz", global_orient=axis_angle_to_matrices(go), hand_pose=axis_angle_to_matrices(hp),
             pred_keypoints_3d=crop, pred_cam_t_full=cam_t, is_right=np.zeros(3))
    artifact, _ = load_input(tmp_path / "hamer.npz")
    assert "parameters mirrored, keypoints mirrored" in artifact.meta["import"]["left_hands"]
    np.testing.assert_allclose(artifact.keypoints3d[0], mirror_points(crop) + cam_t[:, None], atol=1e-5)
    np.savez(tmp_path / "params.npz", global_orient=mirror_axis_angle(go), hand_pose=mirror_axis_angle(hp),
             pred_cam_t_full=cam_t, is_right=np.zeros(3))
    artifact, _ = load_input(tmp_path / "params.npz")
    np.testing.assert_allclose(artifact.keypoints3d[0], mirror_points(crop) + cam_t[:, None], atol=1e-4)
    assert artifact.meta["import"]["keypoints_from"].startswith(f"hand model '{name}'")


def test_every_format_is_documented():
    from handcli.importers import IMPORTERS

    text = (Path(__file__).resolve().parents[1] / "docs" / "importers.md").read_text()
    for importer in IMPORTERS:
        assert f"| `{importer.name}` |" in text, importer.name


# ---------------------------------------------------------------------------------------- keypoint files


def hand_keypoints(num_frames, seed=10):
    go, hp, betas, transl = random_params(num_frames, seed)
    return pose(go, hp * 0.3, np.zeros_like(betas), transl, True)


def test_keypoint_npy_in_millimetres(tmp_path):
    keypoints = hand_keypoints(7)
    np.save(tmp_path / "joints.npy", (keypoints * 1000).astype(np.float32))
    artifact, fmt = load_input(tmp_path / "joints.npy")
    assert fmt == "keypoints-npy" and artifact.keypoints3d.shape == (1, 7, 21, 3)
    np.testing.assert_allclose(artifact.keypoints3d[0], keypoints, atol=1e-4)
    assert "millimetres" in artifact.meta["import"]["units"]


def test_keypoint_npz_tracks_with_missing_frames(tmp_path):
    keypoints = hand_keypoints(6).reshape(2, 3, 21, 3)
    keypoints[1, 2] = np.nan
    np.savez(tmp_path / "kp.npz", keypoints, is_right=np.array([True, False]), fps=np.float32(60))
    artifact, fmt = load_input(tmp_path / "kp.npz")
    assert fmt == "keypoints-array-npz" and artifact.fps == 60
    assert artifact.valid.tolist() == [[1, 1, 1], [1, 1, 0]] and list(artifact.is_right) == [True, False]


def test_landmark_list_pickle(tmp_path):
    keypoints = hand_keypoints(5)
    centred = keypoints - keypoints.mean(axis=1, keepdims=True)  # MediaPipe world landmarks: hand-centred
    entries = [centred[0], None, centred[2][None], [centred[3]], centred[4]]
    artifact, fmt = load_input(write_pickle(tmp_path / "landmarks.pkl", entries))
    assert fmt == "keypoints-pkl" and artifact.valid.tolist() == [[1, 0, 1, 1, 1]]
    np.testing.assert_allclose(artifact.world_landmarks[0, [0, 2, 3, 4]], centred[[0, 2, 3, 4]], atol=1e-6)
    two_hands = write_pickle(tmp_path / "two.pkl", [np.stack([centred[0], centred[1]])])
    with pytest.raises(BadInput, match="2 hands"):
        load_input(two_hands)


@needs_shared
def test_shared_dexretarget_landmarks():
    path = SHARED / "data" / "video" / "dexretarget_open_close.mediapipe_world_landmarks.pkl"
    artifact, fmt = load_input(path)
    assert fmt == "keypoints-pkl" and artifact.keypoints3d.shape == (1, 621, 21, 3) and artifact.valid.all()
    assert "wrist frame" in artifact.meta["import"]["frame"]


# ------------------------------------------------------------------------------------------------ refusals


class _Shell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EmbeddedStorage:
    """A pickle that hands torch.storage._load_from_bytes a payload which would run a command."""

    def __init__(self, marker):
        self.payload = pickle.dumps(_Shell(marker), protocol=2)

    def __reduce__(self):
        import torch.storage

        return (torch.storage._load_from_bytes, (self.payload,))


def test_pickles_with_code_are_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = write_pickle(tmp_path / "evil.pkl", [{"hand_pose": np.zeros((1, 15, 3)), "x": _Shell(marker)}])
    with pytest.raises(BadInput, match=r"system"):
        load_input(path)
    path = write_pickle(tmp_path / "evil_storage.pth", [_EmbeddedStorage(marker)])
    with pytest.raises(BadInput):
        load_input(path)
    assert not marker.exists()


def test_cli_refuses_a_malicious_pickle_in_one_line(tmp_path):
    marker = tmp_path / "ran"
    path = write_pickle(tmp_path / "evil.pkl", _Shell(marker))
    result = run_cli("info", path)
    assert_one_line_error(result, 2, contains="posix.system")
    assert not marker.exists()


@pytest.mark.parametrize("name, arrays, message", [
    ("no_orient", dict(hand_pose=np.zeros((3, 15, 3)), pred_cam_t_full=np.zeros((3, 3))), "global_orient"),
    ("no_translation", dict(hand_pose=np.zeros((3, 15, 3)), global_orient=np.zeros((3, 3)),
                            pred_cam_t=np.zeros((3, 3))), "pred_cam_t_full"),
    ("bad_pose", dict(hand_pose=np.zeros((3, 14, 3)), global_orient=np.zeros((3, 3)),
                      pred_cam_t_full=np.zeros((3, 3))), "hand_pose"),
    ("orient_mismatch", dict(hand_pose=np.zeros((3, 15, 3)), global_orient=np.zeros((4, 3)),
                             pred_cam_t_full=np.zeros((3, 3))), "global_orient"),
    ("not_rotations", dict(hand_pose=np.zeros((3, 15, 3)), global_orient=np.ones((3, 1, 3, 3)),
                           pred_cam_t_full=np.zeros((3, 3))), "not rotation matrices"),
    ("dyn_hamr_no_side", dict(trans=np.zeros((1, 2, 3)), root_orient=np.zeros((1, 2, 3)),
                              pose_body=np.zeros((1, 2, 45))), "is_right"),
    ("unknown", dict(something=np.zeros(3)), "supported:"),
])
def test_malformed_npz_is_one_line_bad_input(tmp_path, name, arrays, message):
    np.savez(tmp_path / f"{name}.npz", **arrays)
    with pytest.raises(BadInput, match=message) as error:
        load_input(tmp_path / f"{name}.npz")
    assert "\n" not in error.value.message


def test_broken_files_are_one_line_bad_input(tmp_path):
    good = write_pickle(tmp_path / "good.pkl", [hand_keypoints(3)[0]] * 3)
    cases = {
        "truncated.pkl": good.read_bytes()[:-20],
        "garbage.pth": os.urandom(300),
        "compressed.pkl": b"\x78\x9c" + os.urandom(50),
        "empty.npz": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(BadInput) as error:
            load_input(tmp_path / name)
        assert "\n" not in error.value.message, name
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(BadInput, match="Python objects"):
        load_input(tmp_path / "objects.npy")
    np.save(tmp_path / "tiny.npy", np.full((4, 21, 3), 1e-6))
    with pytest.raises(BadInput, match="hand size"):
        load_input(tmp_path / "tiny.npy")


def test_cli_info_describes_an_imported_file(tmp_path):
    np.save(tmp_path / "joints.npy", hand_keypoints(4).astype(np.float32))
    result = run_cli("info", tmp_path / "joints.npy")
    assert result.returncode == 0, result.stderr
    assert "keypoints-npy" in result.stdout and "frames: 4" in result.stdout
