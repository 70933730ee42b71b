"""Property-based: malformed artifacts never crash the loaders or the CLI; they end in exit code 2 with one
line naming the problem, and nothing is written."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from typer.testing import CliRunner

from handcli.artifacts import Artifact
from handcli.cli import app
from handcli.errors import BadInput
from handcli.inputs import load_input
from tests.malformed import hostile_files, npz_payloads, write_npz

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def check_loader(writer) -> str:
    """Load a generated file; returns 'accepted' or 'rejected'. Anything but BadInput fails the test."""
    with tempfile.TemporaryDirectory() as directory:
        path = writer(Path(directory))
        try:
            artifact, _ = load_input(path)
        except BadInput as error:
            assert error.message and "\n" not in error.message
            return "rejected"
        assert isinstance(artifact, Artifact)
        # an accepted input satisfies the contract's invariants
        H, T = artifact.valid.shape
        assert artifact.keypoints3d.shape == (H, T, 21, 3) and artifact.is_right.shape == (H,)
        assert np.isfinite(artifact.keypoints3d[artifact.valid]).all()
        return "accepted"


@SETTINGS
@given(npz_payloads())
def test_random_payloads(payload):
    check_loader(write_npz(payload))


@SETTINGS
@given(hostile_files())
def test_hostile_files(case):
    kind, writer = case
    assert check_loader(writer) == "rejected", kind


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(hostile_files())
def test_cli_one_line_exit_2_nothing_written(case):
    kind, writer = case
    runner = CliRunner()
    with tempfile.TemporaryDirectory() as directory:
        path = writer(Path(directory))
        out = Path(directory) / "out.npz"
        result = runner.invoke(app, ["estimate", "--input", str(path), "--out", str(out)])
        assert result.exit_code == 2, (kind, result.output)
        assert "Traceback" not in result.output
        assert len([line for line in result.output.strip().splitlines() if line.strip()]) == 1, result.output
        assert not out.exists()
        assert sorted(p.name for p in Path(directory).iterdir()) == [path.name]
