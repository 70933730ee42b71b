"""Shared test helpers: paths, a CLI runner in a subprocess, and small artifacts made on the spot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared is absent")


def run_cli(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `handcli ARGS` as a user would (new process), capturing text output."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "handcli.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or REPO, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess, code: int = 2, contains: str | None = None) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    if contains:
        assert contains in lines[0], lines[0]


def random_keypoints(num_tracks: int = 1, num_frames: int = 40, seed: int = 0) -> np.ndarray:
    """(H, T, 21, 3) float32 hand-sized point clouds drifting smoothly 0.5 m in front of the camera."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 0.03, (num_tracks, 1, 21, 3))
    drift = np.cumsum(rng.normal(0, 0.002, (num_tracks, num_frames, 1, 3)), axis=1)
    return (base + drift + np.array([0, 0, 0.5])).astype(np.float32)
