"""The artifact contract: round trips, rejections with one named key, atomic writes."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

from handcli.artifacts import Artifact, SPEC, artifact_from_arrays, load_artifact, make_meta, save_artifact
from handcli.errors import BadInput, StageFailed
from tests.conftest import random_keypoints


def full_artifact(num_tracks=2, num_frames=12) -> Artifact:
    keypoints3d = random_keypoints(num_tracks, num_frames)
    H, T = num_tracks, num_frames
    return Artifact(
        keypoints3d=keypoints3d, valid=np.ones((H, T), bool), is_right=np.array([True, False][:H]), fps=29.97,
        meta=make_meta("test", hand_model="open", config={"a": 1}),
        image_size=np.array([640, 480]), K=np.eye(3), frame_index=np.arange(T), track_id=np.arange(H),
        keypoints2d=np.ones((H, T, 21, 3)), global_orient=np.zeros((H, T, 3)), hand_pose=np.zeros((H, T, 15, 3)),
        transl=np.zeros((H, T, 3)), betas=np.zeros((H, 10)), var_joints=np.ones((H, T, 21)) * 1e-6,
        var_vertices=np.ones((H, T, 50)), var_force=np.ones((H, T, 51)))


def test_round_trip_preserves_every_key(tmp_path):
    artifact = full_artifact()
    path = save_artifact(artifact, tmp_path / "a.npz")
    with np.load(path, allow_pickle=False) as raw:  # loadable by plain numpy without pickles
        assert raw["keypoints3d"].dtype == np.float32 and raw["fps"].shape == ()
        assert json.loads(str(raw["meta"]))["stage"] == "test"
    loaded = load_artifact(path)
    for key, value in artifact.arrays().items():
        if key == "meta":
            assert loaded.meta == artifact.meta
        else:
            np.testing.assert_allclose(loaded.arrays()[key], value, rtol=1e-6)
    assert loaded.fps == pytest.approx(29.97, rel=1e-6)


def test_flags_written_as_integers_by_another_tool_load_as_bool(tmp_path):
    """A 0/1/255 flag array from another tool: nonzero is True (uint8 & bool would drop the 2 of 0b10)."""
    arrays = Artifact(random_keypoints(1, 4), np.ones((1, 4), bool), np.array([True])).arrays()
    np.savez(tmp_path / "a.npz", **arrays, beyond_calibration=np.array([[2, 0, 1, 255]], np.uint8),
             observed=np.array([[1, 1, 0, 1]], np.uint8))
    loaded = load_artifact(tmp_path / "a.npz")
    assert loaded.beyond_calibration.dtype == bool and loaded.beyond_calibration.tolist() == [[True, False, True, True]]
    assert loaded.observed.dtype == bool and loaded.observed.tolist() == [[True, True, False, True]]


def test_every_spec_key_is_a_field():
    assert set(SPEC) <= set(Artifact.__dataclass_fields__)


def _arrays(**changes):
    arrays = {"keypoints3d": random_keypoints(1, 10), "valid": np.ones((1, 10), bool), "is_right": np.array([True]),
              "fps": np.float32(30)}
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


@pytest.mark.parametrize("changes, key", [
    (dict(keypoints3d=np.zeros((10, 21, 3))), "keypoints3d"),
    (dict(keypoints3d=np.zeros((1, 10, 20, 3))), "keypoints3d"),
    (dict(valid=np.ones((1, 9), bool)), "valid"),
    (dict(is_right=np.array([True, False])), "is_right"),
    (dict(hand_pose=np.zeros((1, 10, 16, 3))), "hand_pose"),
    (dict(keypoints3d=None), "keypoints3d"),
    (dict(meta=np.array("{not json")), "meta"),
    (dict(fps=np.float32(np.nan)), "fps"),
    (dict(keypoints3d=np.full((1, 10, 21, 3), 5e3, np.float32)), "keypoints3d"),
    (dict(keypoints3d=np.zeros((1, 0, 21, 3), np.float32), valid=np.zeros((1, 0), bool)), "keypoints3d"),
    (dict(K=np.full((3, 3), np.inf)), "K"),
    (dict(frame_index=np.r_[np.arange(9), np.nan]), "frame_index"),
    (dict(frame_index=np.arange(10) + 0.5), "frame_index"),
    (dict(keypoints3d=np.array([["a"] * 3] * 21)[None, None].repeat(10, 1)), "keypoints3d"),
])
def test_rejections_name_the_key(changes, key):
    with pytest.raises(BadInput) as info:
        artifact_from_arrays(_arrays(**changes))
    assert key in info.value.message and "\n" not in info.value.message


def test_nan_allowed_only_where_invalid():
    keypoints3d = random_keypoints(1, 10)
    keypoints3d[0, 3] = np.nan
    valid = np.ones((1, 10), bool)
    with pytest.raises(BadInput, match="frame 3"):
        artifact_from_arrays(_arrays(keypoints3d=keypoints3d, valid=valid))
    valid[0, 3] = False
    assert artifact_from_arrays(_arrays(keypoints3d=keypoints3d, valid=valid)).valid.sum() == 9


def test_outputs_must_be_finite(tmp_path):
    artifact = full_artifact()
    artifact.keypoints3d[0, 0, 0, 0] = np.nan
    with pytest.raises(StageFailed, match="keypoints3d"):
        save_artifact(artifact, tmp_path / "bad.npz")
    assert not list(tmp_path.iterdir())


def test_pickled_object_arrays_are_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, keypoints3d=np.array([{"a": 1}], dtype=object))
    with pytest.raises(BadInput, match="Python objects"):
        load_artifact(path)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"not a zip at all"])
def test_unreadable_files(tmp_path, content):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(BadInput):
        load_artifact(path)


def test_truncated_archive(tmp_path):
    path = save_artifact(full_artifact(), tmp_path / "a.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput):
        load_artifact(path)


def test_huge_header_is_refused_without_allocating(tmp_path):
    path = tmp_path / "huge.npz"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1, 21, 3), np.float32))
    header["shape"] = (1, 10**9, 21, 3)
    with zipfile.ZipFile(path, "w") as archive, archive.open("keypoints3d.npy", "w") as member:
        np.lib.format.write_array_header_1_0(member, header)
    with pytest.raises(BadInput, match="too large"):
        load_artifact(path)


def test_atomic_write_keeps_previous_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "a.npz"
    save_artifact(full_artifact(), target)
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np.lib.format, "write_array", boom)
    with pytest.raises(KeyboardInterrupt):
        save_artifact(full_artifact(), target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["a.npz"]


def test_meta_history_chains_stages():
    first = make_meta("detect", config={"x": 1})
    second = make_meta("refine", previous=first)
    assert second["stage"] == "refine" and second["history"][0]["stage"] == "detect"


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".a.npz.{dead.pid}.xyz.tmp.npz"
    alive = tmp_path / f".a.npz.{os.getpid()}.abc.tmp.npz"
    stale.write_bytes(b"partial")
    alive.write_bytes(b"in progress")
    save_artifact(full_artifact(), tmp_path / "a.npz")
    assert not stale.exists() and alive.exists()
