"""Hand models: LBS against a slow reference, mirroring, the open model's build product, MANO file loading."""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse
import torch

from handcli.errors import BadInput
from handcli.handmodels import available_hand_models, load_hand_model
from handcli.handmodels.base import HandModel
from handcli.handmodels.kinematics import (
    MANO21_TO_CANONICAL,
    MANO_PARENTS,
    MANO_TIP_VERTICES,
    axis_angle_to_matrix,
    forward_kinematics,
    forward_kinematics_by_level,
    mirror_axis_angle,
    mirror_points,
)
from handcli.handmodels.mano import load_mano, load_mano_pickle
from handcli.handmodels.open_hand import OPEN_HAND_PATH

needs_open_hand = pytest.mark.skipif(not OPEN_HAND_PATH.is_file(), reason="weights/open_hand.npz not built")


# ------------------------------------------------------------------------------------------ tiny models
def random_model_arrays(num_vertices: int, num_betas: int = 10, seed: int = 0, pose_blend: bool = True) -> dict:
    """Arrays of a random but well-formed 16-joint LBS model (float64)."""
    rng = np.random.default_rng(seed)
    joints = rng.normal(0, 0.04, (16, 3))
    vertices = joints[rng.integers(0, 16, num_vertices)] + rng.normal(0, 0.01, (num_vertices, 3))
    weights = rng.dirichlet(np.full(16, 0.3), num_vertices)
    return {
        "v_template": vertices,
        "shapedirs": rng.normal(0, 0.002, (num_vertices, 3, num_betas)),
        "joint_template": joints,
        "joint_shapedirs": rng.normal(0, 0.002, (16, 3, num_betas)),
        "skinning_weights": weights,
        "faces": rng.integers(0, num_vertices, (2 * num_vertices, 3)),
        "tip_vertex_ids": rng.choice(num_vertices, 5, replace=False),
        "posedirs": rng.normal(0, 0.001, (135, num_vertices * 3)) if pose_blend else None,
    }


def slow_lbs(arrays: dict, global_orient, hand_pose, betas, transl) -> tuple[np.ndarray, np.ndarray]:
    """One sample, plain loops: vertices (V, 3) and joints (21, 3) in canonical order."""
    pose = np.concatenate([global_orient[None], hand_pose])
    rotations = axis_angle_to_matrix(torch.as_tensor(pose)).numpy()
    shaped = arrays["v_template"] + arrays["shapedirs"] @ betas
    rest_joints = arrays["joint_template"] + arrays["joint_shapedirs"] @ betas
    if arrays["posedirs"] is not None:
        feature = (rotations[1:] - np.eye(3)).reshape(-1)
        shaped = shaped + (feature @ arrays["posedirs"]).reshape(-1, 3)
    world_rot, world_pos = [], []
    for j, parent in enumerate(MANO_PARENTS):
        if parent < 0:
            world_rot.append(rotations[j])
            world_pos.append(rest_joints[j])
        else:
            world_rot.append(world_rot[parent] @ rotations[j])
            world_pos.append(world_pos[parent] + world_rot[parent] @ (rest_joints[j] - rest_joints[parent]))
    vertices = np.zeros_like(shaped)
    for v in range(len(shaped)):
        for j in range(16):
            moved = world_rot[j] @ (shaped[v] - rest_joints[j]) + world_pos[j]
            vertices[v] += arrays["skinning_weights"][v, j] * moved
    vertices += transl
    joints = np.concatenate([np.stack(world_pos) + transl, vertices[arrays["tip_vertex_ids"]]])
    return vertices, joints[list(MANO21_TO_CANONICAL)]


def random_parameters(batch: int, num_betas: int = 10, seed: int = 1, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, generator=generator, dtype=dtype),
            0.4 * torch.randn(batch, 15, 3, generator=generator, dtype=dtype),
            torch.randn(batch, num_betas, generator=generator, dtype=dtype),
            0.1 * torch.randn(batch, 3, generator=generator, dtype=dtype))


# ------------------------------------------------------------------------------------------------- LBS
@pytest.mark.parametrize("pose_blend", [True, False])
def test_lbs_matches_slow_reference(pose_blend):
    arrays = random_model_arrays(40, pose_blend=pose_blend)
    model = HandModel("tiny", dtype=torch.float64, **arrays)
    params = random_parameters(3)
    out = model(*params)
    keypoints = model.keypoints(*params)
    for b in range(3):
        vertices, joints = slow_lbs(arrays, *(p[b].numpy() for p in params))
        np.testing.assert_allclose(out.vertices[b].numpy(), vertices, atol=1e-12)
        np.testing.assert_allclose(out.joints[b].numpy(), joints, atol=1e-12)
        np.testing.assert_allclose(keypoints[b].numpy(), joints, atol=1e-12)


def test_level_kinematics_equal_sequential():
    rotations = axis_angle_to_matrix(torch.randn(5, 16, 3, dtype=torch.float64))
    rest = torch.randn(5, 16, 3, dtype=torch.float64)
    for fast, slow in zip(forward_kinematics_by_level(rotations, rest), forward_kinematics(rotations, rest)):
        torch.testing.assert_close(fast, slow)


def test_rest_joints21_is_zero_pose():
    model = HandModel("tiny", dtype=torch.float64, **random_model_arrays(30))
    betas = torch.randn(2, 10, dtype=torch.float64)
    zero = torch.zeros(2, 15, 3, dtype=torch.float64)
    posed = model(torch.zeros(2, 3, dtype=torch.float64), zero, betas, torch.zeros(2, 3, dtype=torch.float64)).joints
    torch.testing.assert_close(model.rest_joints21(betas)[:, list(MANO21_TO_CANONICAL)], posed)


def test_mirrored_left_hand_is_mirror_image():
    model = HandModel("tiny", dtype=torch.float64, **random_model_arrays(30))
    orient, pose, betas, transl = random_parameters(4)
    left = model(orient, pose, betas, transl, is_right=False)
    right = model(mirror_axis_angle(orient), mirror_axis_angle(pose), betas, mirror_points(transl), is_right=True)
    torch.testing.assert_close(left.vertices, mirror_points(right.vertices))
    torch.testing.assert_close(left.joints, mirror_points(right.joints))
    mixed = model(orient, pose, betas, transl, is_right=torch.tensor([True, False, True, False]))
    torch.testing.assert_close(mixed.vertices[1], left.vertices[1])
    torch.testing.assert_close(mixed.vertices[0], model(orient, pose, betas, transl).vertices[0])
    torch.testing.assert_close(model.rest_joints21(betas, is_right=False), mirror_points(model.rest_joints21(betas)))


# ------------------------------------------------------------------------------------------ open model
def signed_volume(vertices: torch.Tensor, faces: torch.Tensor) -> float:
    tri = vertices[faces]
    return float(torch.linalg.det(tri).sum() / 6)


@needs_open_hand
def test_open_hand_model_shape_and_conventions():
    model = load_hand_model("open")
    assert model.name == "open" and model.num_betas == 10 and model.num_vertices == 1609
    assert model.faces.shape == (3196, 3) and model.skinning_weights.shape == (1609, 16)
    torch.testing.assert_close(model.skinning_weights.sum(1), torch.ones(1609), atol=1e-5, rtol=0)
    rest = model.rest_joints21(torch.zeros(1, 10))[0]
    assert rest[0].abs().max() < 1e-6  # the wrist is the origin
    assert bool((rest[[1, 4, 7, 10], 0] < -0.07).all())  # MANO frame: the knuckles lie 7+ cm along -x
    assert rest[13, 2] > 0.01 and rest[7, 2] < -0.02  # thumb towards +z, pinky towards -z
    # outward faces: positive signed volume for the right hand and for the mirrored left hand
    zeros = (torch.zeros(1, 3), torch.zeros(1, 15, 3), torch.zeros(1, 10), torch.zeros(1, 3))
    right = model(*zeros).vertices[0].double()
    left = model(*zeros, is_right=False).vertices[0].double()
    assert signed_volume(right, model.faces_for(True)) > 1e-4
    assert signed_volume(left, model.faces_for(False)) > 1e-4


@needs_open_hand
def test_open_hand_shape_space_moves_bones():
    model = load_hand_model("open")
    rest = model.rest_joints21(torch.eye(10))  # one unit of each direction
    base = model.rest_joints21(torch.zeros(1, 10))
    moved = (rest - base).norm(dim=-1).max(-1).values
    assert bool((moved > 1e-3).all()), moved  # every direction moves some keypoint by > 1 mm per std
    size = rest[0, 12].norm() / base[0, 12].norm()  # 'size' scales the hand about the wrist
    assert 1.03 < float(size) < 1.1


@needs_open_hand
def test_open_left_forward_is_mirror_of_right():
    model = load_hand_model("open").double()
    orient, pose, betas, transl = random_parameters(3)
    left = model(orient, pose, betas, transl, is_right=False)
    right = model(mirror_axis_angle(orient), mirror_axis_angle(pose), betas, mirror_points(transl))
    torch.testing.assert_close(left.vertices, mirror_points(right.vertices))
    torch.testing.assert_close(left.joints, mirror_points(right.joints))


def test_available_hand_models_reports_both(tmp_path):
    status = available_hand_models(tmp_path)
    assert set(status) == {"open", "mano"}
    assert "MANO_RIGHT.pkl" in status["mano"] and str(tmp_path) in status["mano"]


def test_unknown_model_and_missing_mano_are_bad_input(tmp_path):
    with pytest.raises(BadInput):
        load_hand_model("smpl")
    with pytest.raises(BadInput, match="MANO_RIGHT.pkl"):
        load_hand_model("mano", tmp_path)


# ------------------------------------------------------------------------------------------------ MANO
def fake_mano_arrays(seed: int = 0, left: bool = False) -> dict:
    """MANO-format arrays (random values, official shapes and dtypes)."""
    rng = np.random.default_rng(seed)
    arrays = random_model_arrays(778, seed=seed)
    rest_joints = arrays["joint_template"]
    if left:
        rest_joints = rest_joints * np.array([-1.0, 1.0, 1.0])
    # a regressor whose rows average a few vertices, as MANO's sparse J_regressor does
    regressor = np.zeros((16, 778))
    for j in range(16):
        regressor[j, rng.choice(778, 8, replace=False)] = rng.dirichlet(np.ones(8))
    kintree = np.array([[4294967295] + list(MANO_PARENTS[1:]), list(range(16))], dtype=np.uint32)
    return {
        "v_template": arrays["v_template"] + rest_joints.mean(0),
        "shapedirs": arrays["shapedirs"],
        "posedirs": arrays["posedirs"].T.reshape(778, 3, 135),
        "J_regressor": scipy.sparse.csc_matrix(regressor),
        "weights": arrays["skinning_weights"],
        "kintree_table": kintree,
        "f": rng.integers(0, 778, (1538, 3)).astype(np.uint32),
        "hands_components": rng.normal(size=(45, 45)),
        "hands_mean": rng.normal(0, 0.1, 45),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


def write_chumpy_pickle(path, arrays: dict, monkeypatch) -> None:
    """Pickle `arrays` like the official files (protocol 2) with shapedirs as a chumpy.ch.Ch and
    hands_components as a chumpy.reordering.Reshape of a Ch: throwaway classes whose pickles reference those
    names, registered as modules only while dumping. A Ch pickles its __dict__ with the value under 'x'."""
    bookkeeping = {"_dirty_vars": set(), "_itr": None, "_depends_on_deps": {}, "_make_dense": False}
    ch_class = type("Ch", (), {"__module__": "chumpy.ch"})
    reshape_class = type("Reshape", (), {"__module__": "chumpy.reordering"})

    def make(cls, **state):
        obj = cls()
        obj.__dict__.update(bookkeeping, **state)
        return obj

    with monkeypatch.context() as patch:
        for name, cls in (("chumpy", None), ("chumpy.ch", ch_class), ("chumpy.reordering", reshape_class)):
            module = types.ModuleType(name)
            if cls is not None:
                setattr(module, cls.__name__, cls)
            patch.setitem(sys.modules, name, module)
        data = dict(arrays)
        data["shapedirs"] = make(ch_class, x=arrays["shapedirs"])
        data["hands_components"] = make(reshape_class, a=make(ch_class, x=arrays["hands_components"].ravel()),
                                        newshape=(45, 45))
        with open(path, "wb") as handle:
            pickle.dump(data, handle, protocol=2)


def test_mano_pickle_with_chumpy_objects_loads(tmp_path, monkeypatch):
    arrays = fake_mano_arrays()
    path = tmp_path / "MANO_RIGHT.pkl"
    write_chumpy_pickle(path, arrays, monkeypatch)
    assert b"chumpy.ch" in path.read_bytes()
    with pytest.raises(ImportError):
        import chumpy  # noqa: F401  (the real loading path must not need it)
    loaded = load_mano_pickle(path)
    np.testing.assert_array_equal(loaded["shapedirs"], arrays["shapedirs"])
    np.testing.assert_array_equal(loaded["hands_components"], arrays["hands_components"])
    np.testing.assert_array_equal(loaded["J_regressor"], arrays["J_regressor"].toarray())
    model = load_mano(tmp_path)
    assert model.name == "mano" and model.num_vertices == 778 and model.num_betas == 10
    assert model.faces.shape == (1538, 3) and model.left_model is None
    torch.testing.assert_close(model.hands_mean, torch.as_tensor(arrays["hands_mean"], dtype=torch.float32).reshape(15, 3))
    out = model(*(p.float() for p in random_parameters(2)))
    assert out.vertices.shape == (2, 778, 3) and out.joints.shape == (2, 21, 3)
    # the fingertips are MANO's tip vertices
    torch.testing.assert_close(out.joints[:, 4], out.vertices[:, MANO_TIP_VERTICES[0]])


def test_mano_pickle_refuses_other_globals(tmp_path):
    path = tmp_path / "MANO_RIGHT.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"v_template": np.zeros((3, 3)), "hook": types.SimpleNamespace(a=1)}, handle, protocol=2)
    with pytest.raises(BadInput, match="refusing"):
        load_mano_pickle(path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(BadInput):
        load_mano_pickle(path)


def test_mano_matches_smplx(tmp_path, monkeypatch):
    smplx = pytest.importorskip("smplx")
    ours_dir, plain_dir = tmp_path / "ours", tmp_path / "plain"
    ours_dir.mkdir()
    plain_dir.mkdir()
    for is_right, name in ((True, "MANO_RIGHT.pkl"), (False, "MANO_LEFT.pkl")):
        arrays = fake_mano_arrays(seed=3 if is_right else 4, left=not is_right)
        write_chumpy_pickle(ours_dir / name, arrays, monkeypatch)
        with open(plain_dir / name, "wb") as handle:
            pickle.dump(arrays, handle, protocol=2)
    model = load_mano(ours_dir, dtype=torch.float64)
    assert model.left_model is not None
    orient, pose, betas, transl = random_parameters(3)
    for is_right in (True, False):
        reference = smplx.MANO(str(plain_dir), is_rhand=is_right, use_pca=False, flat_hand_mean=True,
                               batch_size=3, dtype=torch.float64)
        expected = reference(betas=betas, global_orient=orient, hand_pose=pose.reshape(3, 45), transl=transl)
        ours = model(orient, pose, betas, transl, is_right=is_right)
        # smplx's Rodrigues adds 1e-8 to the axis-angle, hence agreement to ~1e-8 m rather than round-off
        torch.testing.assert_close(ours.vertices, expected.vertices, atol=1e-7, rtol=0)
        canonical_of_mano = [MANO21_TO_CANONICAL.index(k) for k in range(16)]
        torch.testing.assert_close(ours.joints[:, canonical_of_mano], expected.joints[:, :16], atol=1e-7, rtol=0)


def test_damaged_open_hand_model_is_bad_input(tmp_path):
    from handcli.handmodels.open_hand import OPEN_HAND_PATH, load_open_hand

    damaged = tmp_path / "open_hand.npz"
    damaged.write_bytes(OPEN_HAND_PATH.read_bytes()[:5000])
    with pytest.raises(BadInput, match="damaged open hand model"):
        load_open_hand(damaged)
