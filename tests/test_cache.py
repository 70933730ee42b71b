"""Stage cache: keys change exactly when inputs/config/weights change, corrupt entries recompute, lock."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from handcli.artifacts import Artifact
from handcli.cache import WorkDir, stage_key, weights_digests
from handcli.errors import BadInput
from handcli.handmodels import hand_model_files
from tests.conftest import random_keypoints


def _artifact() -> Artifact:
    return Artifact(keypoints3d=random_keypoints(1, 5), valid=np.ones((1, 5), bool), is_right=np.ones(1, bool))


def test_key_depends_on_each_ingredient():
    base = stage_key("refine", "abc", {"seed": 0}, {"refiner": "w1"})
    assert base == stage_key("refine", "abc", {"seed": 0}, {"refiner": "w1"})
    assert base != stage_key("refine", "abd", {"seed": 0}, {"refiner": "w1"})
    assert base != stage_key("refine", "abc", {"seed": 1}, {"refiner": "w1"})
    assert base != stage_key("refine", "abc", {"seed": 0}, {"refiner": "w2"})
    assert base != stage_key("estimate", "abc", {"seed": 0}, {"refiner": "w1"})


def test_cached_reuses_and_recomputes_corrupt(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return _artifact()

    notes = []
    with WorkDir(tmp_path / "work") as work:
        _, path, hit = work.cached("estimate", "k" * 40, compute)
        assert not hit and path.exists()
        _, _, hit = work.cached("estimate", "k" * 40, compute)
        assert hit and len(calls) == 1
        path.write_bytes(path.read_bytes()[:100])  # a torn file from some other tool
        _, _, hit = work.cached("estimate", "k" * 40, compute, notify=notes.append)
        assert not hit and len(calls) == 2 and "corrupt" in notes[0]
        _, _, hit = work.cached("estimate", "k" * 40, compute, force=True)
        assert not hit and len(calls) == 3


def _hold_lock(path, ready, release):
    with WorkDir(path):
        ready.set()
        release.wait(30)


def test_second_process_gets_a_clear_message(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path / "w", ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(BadInput, match="in use by another handcli process"):
            with WorkDir(tmp_path / "w"):
                pass
    finally:
        release.set()
        holder.join(30)
    with WorkDir(tmp_path / "w"):  # free again once the holder is gone
        pass


def test_hand_model_files_enter_the_key(tmp_path):
    """`run` keys estimate and refine on the hand model's files too: adding MANO_LEFT.pkl (no more left-hand
    mirroring) or rebuilding the open hand must not reuse results made without it."""
    files = hand_model_files("mano", tmp_path)
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(b"right")
    before = stage_key("estimate", "abc", {}, weights_digests(files))
    (tmp_path / "MANO_LEFT.pkl").write_bytes(b"left")
    assert stage_key("estimate", "abc", {}, weights_digests(files)) != before
    assert hand_model_files("open")["open_hand"].is_file()
