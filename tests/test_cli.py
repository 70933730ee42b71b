"""The command line as a script sees it: help, exit codes, one-line errors, nothing written on failure."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import assert_one_line_error, random_keypoints, run_cli

STAGES = ("run", "detect", "estimate", "refine", "variance", "render", "train", "eval", "info")


def test_help_lists_every_stage():
    result = run_cli("--help")
    assert result.returncode == 0
    for stage in STAGES:
        assert stage in result.stdout


def test_usage_error_is_one_line_and_exit_2():
    assert_one_line_error(run_cli("refine"), 2, "Missing option '--input'")
    assert_one_line_error(run_cli("no-such-command"), 2, "No such command")
    assert_one_line_error(run_cli("refine", "--input", "x.npz", "--out", "y.npz", "--samples", "0"), 2, "--samples")
    assert_one_line_error(run_cli("train", "--steps", "0"), 2, "--steps")
    # metres: 0.9 is no hand (a length in mm or a typo), refused before anything runs
    assert_one_line_error(run_cli("estimate", "--input", "x.npz", "--out", "y.npz", "--hand-length", "0.9"), 2,
                          "--hand-length")
    assert run_cli("--help").returncode == 0


def test_version():
    from handcli import __version__

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"handcli {__version__}"


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"", "empty file"),
    (b"garbage", "not a readable npz"),
])
def test_refine_bad_files(tmp_path, content, message):
    path = tmp_path / "in.npz"
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "out.npz"
    assert_one_line_error(run_cli("refine", "--input", path, "--out", out), 2, message)
    assert not out.exists()


def test_refine_rejects_nan_on_valid_frame(tmp_path):
    keypoints3d = random_keypoints(1, 20)
    keypoints3d[0, 5, 3] = np.nan
    np.savez(tmp_path / "in.npz", keypoints3d=keypoints3d, valid=np.ones((1, 20), bool))
    result = run_cli("refine", "--input", tmp_path / "in.npz", "--out", tmp_path / "out.npz")
    assert_one_line_error(result, 2, "keypoints3d")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz"]


def test_unknown_format(tmp_path):
    path = tmp_path / "motion.bvh"
    path.write_text("HIERARCHY")
    assert_one_line_error(run_cli("info", path), 2, "format")


def test_cuda_request_without_cuda_is_bad_input(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    np.savez(tmp_path / "in.npz", keypoints3d=random_keypoints(1, 20))
    result = run_cli("refine", "--input", tmp_path / "in.npz", "--out", tmp_path / "o.npz", "--device", "cuda")
    assert_one_line_error(result, 2, "CUDA")


def test_refine_anchor_switch_is_recorded(tmp_path):
    from handcli.artifacts import load_artifact

    keypoints3d = random_keypoints(1, 90)
    depth_noise = np.random.default_rng(0).normal(0, 0.01, (1, 90, 1, 1)) * np.array([0.2, 0.1, 0.97])
    np.savez(tmp_path / "in.npz", keypoints3d=(keypoints3d + depth_noise).astype(np.float32), fps=np.float32(30))
    outputs = {}
    for flag in ("--anchor", "--no-anchor"):
        out = tmp_path / f"out{flag}.npz"
        result = run_cli("refine", "--input", tmp_path / "in.npz", "--out", out, flag)
        assert result.returncode == 0, result.stderr
        outputs[flag] = load_artifact(out)
    assert outputs["--anchor"].meta["config"]["anchor"] is True
    assert outputs["--no-anchor"].meta["config"]["anchor"] is False
    # the input jitters along one axis, so the switch changes the output
    assert np.abs(outputs["--anchor"].keypoints3d - outputs["--no-anchor"].keypoints3d).max() > 1e-3
