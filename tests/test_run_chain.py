"""`handcli run` runs the whole chain: detect -> estimate -> refine -> variance, and on request the overlay."""

from __future__ import annotations

import numpy as np
import pytest

from handcli.artifacts import load_artifact
from handcli.render.synthetic import render_synthetic_video
from handcli.video import count_frames, probe_video
from tests.conftest import assert_one_line_error, run_cli

NUM_FRAMES = 20


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("chain") / "clip.mp4"
    render_synthetic_video(path, NUM_FRAMES, 320, 240)
    return path


def test_run_delivers_variance_and_the_overlay_cached(clip, tmp_path):
    out, overlay, work = tmp_path / "hands.npz", tmp_path / "overlay.mp4", tmp_path / "work"
    first = run_cli("run", clip, "--out", out, "--render", overlay, "--skeleton", "--work-dir", work)
    assert first.returncode == 0, first.stderr
    hands = load_artifact(out)
    assert hands.var_joints is not None and hands.var_joints.shape == hands.keypoints3d.shape[:3]
    assert np.isfinite(hands.var_joints).all() and (hands.var_joints > 0).all()
    assert count_frames(probe_video(overlay)) == NUM_FRAMES
    for stage in ("detect", "estimate", "refine", "variance", "render"):
        assert f"  {stage}: computed" in first.stderr, first.stderr
    again = run_cli("run", clip, "--out", out, "--render", overlay, "--skeleton", "--work-dir", work)
    assert again.returncode == 0 and again.stderr.count(": cached (") == 5, again.stderr
    # what run wrote is what `render --variance` reads
    still = tmp_path / "still.png"
    drawn = run_cli("render", "--input", out, "--variance", "--video", clip, "--frame", "3", "--out", still)
    assert drawn.returncode == 0 and still.stat().st_size > 0, drawn.stderr


def test_no_variance_stops_after_refine(clip, tmp_path):
    out = tmp_path / "hands.npz"
    result = run_cli("run", clip, "--out", out, "--no-variance", "--work-dir", tmp_path / "work")
    assert result.returncode == 0, result.stderr
    assert load_artifact(out).var_joints is None and "variance:" not in result.stderr


@pytest.mark.parametrize("options, message", [
    (["--render", "overlay.txt"], "the output must be a video"),
    (["--no-variance", "--force", "variance"], "the variance stage is off"),
    (["--force", "render"], "no overlay was asked for"),
])
def test_bad_chain_options_fail_first_with_one_line(clip, tmp_path, options, message):
    options = [str(tmp_path / o) if o.endswith(".txt") else o for o in options]
    result = run_cli("run", clip, "--out", tmp_path / "hands.npz", "--work-dir", tmp_path / "work", *options)
    assert_one_line_error(result, 2, message)
    assert not (tmp_path / "work").exists() and not (tmp_path / "hands.npz").exists()
