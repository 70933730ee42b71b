"""`handcli batch` (handcli.batch) and segment-parallel detection (handcli.detect.parallel)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from handcli.artifacts import load_artifact
from handcli.batch.inputs import expand_inputs
from handcli.detect.parallel import Segment, plan_segments
from handcli.errors import BadInput
from tests.conftest import assert_one_line_error, run_cli

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "synthetic_hand.mp4"


def test_plan_segments_cover_every_frame_once():
    segments = plan_segments(1000, 3, 15)
    assert segments == [Segment(0, 0, 333), Segment(318, 333, 667), Segment(652, 667, None)]
    assert plan_segments(200, 4, 15) == [Segment(0, 0, None)]  # too short to be worth splitting
    assert len(plan_segments(100_000, 8, 15)) == 8


def test_expand_inputs(tmp_path):
    (tmp_path / "videos").mkdir()
    for name in ("b.mp4", "a.mov", "notes.txt"):
        (tmp_path / "videos" / name).write_bytes(b"x")
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "0001.png").write_bytes(b"x")
    videos = expand_inputs([str(tmp_path / "videos"), str(tmp_path / "frames"), str(tmp_path / "videos" / "b.mp4")])
    assert [v.name for v in videos] == ["a", "b", "frames"]  # folder sorted, duplicates once
    assert [v.name for v in expand_inputs([str(tmp_path / "**" / "*.mp4")])] == ["b"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "b.mp4").write_bytes(b"x")
    with pytest.raises(BadInput, match="both be written as b.npz"):
        expand_inputs([str(tmp_path / "videos"), str(tmp_path / "other")])
    with pytest.raises(BadInput, match="no video matches"):
        expand_inputs([str(tmp_path / "nothing*.mp4")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="neither videos"):
        expand_inputs([str(tmp_path / "empty")])


def copies(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        shutil.copyfile(SAMPLE, folder / f"{name}.mp4")
        paths.append(folder / f"{name}.mp4")
    return paths


def test_batch_runs_each_video_records_failures_and_skips_what_is_done(tmp_path):
    videos = copies(tmp_path / "in", ["one"])
    broken = tmp_path / "in" / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    out = tmp_path / "out"
    first = run_cli("batch", *videos, broken, "--out-dir", out, "--no-variance")
    assert first.returncode == 3, first.stderr
    manifest = json.loads((out / "batch_manifest.json").read_text())["videos"]
    assert manifest["one"]["status"] == "done" and manifest["broken"]["status"] == "failed"
    assert manifest["broken"]["error"] and "\n" not in manifest["broken"]["error"]
    assert load_artifact(out / "one.npz").num_tracks == 1
    assert not (out / "broken.npz").exists()
    again = run_cli("batch", *videos, "--out-dir", out, "--no-variance")
    assert again.returncode == 0, again.stderr
    assert "one: done before, skipped" in again.stdout + again.stderr
    # other settings are another content key: the video is run again
    other = run_cli("batch", *videos, "--out-dir", out, "--no-variance", "--seed", "3")
    assert other.returncode == 0 and "skipped" not in other.stdout + other.stderr


def test_batch_killed_midway_redoes_only_the_unfinished_videos(tmp_path):
    videos = copies(tmp_path / "in", ["v1", "v2", "v3"])
    out = tmp_path / "out"
    command = [sys.executable, "-m", "handcli.cli", "batch", *map(str, videos), "--out-dir", str(out),
               "--no-variance"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest_path = out / "batch_manifest.json"
    deadline = time.time() + 120
    done: list[str] = []
    while time.time() < deadline and process.poll() is None:
        if manifest_path.is_file():
            entries = json.loads(manifest_path.read_text())["videos"]
            done = [name for name, entry in entries.items() if entry["status"] == "done"]
            if done:
                break
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 1 <= len(done) < 3, done
    resumed = run_cli("batch", *videos, "--out-dir", out, "--no-variance")
    assert resumed.returncode == 0, resumed.stderr
    text = resumed.stdout + resumed.stderr
    for name in ("v1", "v2", "v3"):
        assert (f"{name}: done before, skipped" in text) == (name in done), (name, done, text)
        assert load_artifact(out / f"{name}.npz").num_tracks == 1
    assert not list(out.glob(".*.tmp*"))


def test_batch_on_a_local_ray_instance_matches_run(tmp_path):
    pytest.importorskip("ray", reason="the cluster extra (ray) is not installed")
    video = copies(tmp_path / "in", ["clip"])[0]
    result = run_cli("batch", video, "--out-dir", tmp_path / "out", "--engine", "ray", "--no-variance")
    assert result.returncode == 0, result.stderr
    single = run_cli("run", video, "--out", tmp_path / "run.npz", "--no-variance", "--workers", "1")
    assert single.returncode == 0, single.stderr
    a, b = load_artifact(tmp_path / "out" / "clip.npz"), load_artifact(tmp_path / "run.npz")
    for key in ("keypoints3d", "valid", "hand_pose", "transl", "keypoints2d"):
        assert np.array_equal(getattr(a, key), getattr(b, key)), key


def test_batch_bad_options_are_one_line(tmp_path):
    bad = run_cli("batch", SAMPLE, "--out-dir", tmp_path / "o", "--engine", "slurm")
    assert bad.returncode == 2 and "expected one of local, ray" in bad.stderr
    missing = run_cli("batch", tmp_path / "nope*.mp4", "--out-dir", tmp_path / "o")
    assert missing.returncode == 2 and "no video matches" in missing.stderr
    pytest.importorskip("ray", reason="the cluster extra (ray) is not installed")
    unreachable = run_cli("batch", SAMPLE, "--out-dir", tmp_path / "o", "--engine", "ray", "--address", "127.0.0.1:1")
    assert_one_line_error(unreachable, 2, "cannot reach the Ray cluster")
    assert not (tmp_path / "o").exists()


def test_segment_parallel_detection_matches_sequential(tmp_path, monkeypatch):
    """The same tracks and identities; the keypoints identical up to the first boundary and within a few
    pixels after it (MediaPipe's tracker restarts from a palm detection there)."""
    import handcli.detect.parallel as parallel
    from handcli.stages.detect import DetectConfig, detect_file

    monkeypatch.setattr(parallel, "MIN_FRAMES_PER_WORKER", 30)
    sequential = detect_file(SAMPLE, DetectConfig(workers=1))
    split = detect_file(SAMPLE, DetectConfig(workers=2))
    assert split.meta["parallel"] == {"workers": 2, "overlap_frames": 15}
    assert sequential.meta["parallel"] is None
    assert split.keypoints2d.shape == sequential.keypoints2d.shape
    assert np.array_equal(split.valid, sequential.valid) and np.array_equal(split.is_right, sequential.is_right)
    boundary = 45
    assert np.array_equal(split.keypoints2d[:, :boundary], sequential.keypoints2d[:, :boundary])
    after = np.linalg.norm(split.keypoints2d[:, boundary:, :, :2] - sequential.keypoints2d[:, boundary:, :, :2],
                           axis=-1)
    assert np.median(after) < 1.0


def test_segment_parallel_detection_forwards_worker_warnings(tmp_path, monkeypatch):
    """A video cut short warns while its last segment is decoded, in a worker process: the parent re-emits that
    InputWarning once, as sequential detection does (it used to be lost with --workers 2)."""
    from handcli.detect import parallel
    from handcli.errors import InputWarning
    from handcli.stages.detect import DetectConfig, detect_file
    from tests.test_hostile_inputs import _ffmpeg

    whole = tmp_path / "whole.mp4"  # 100 small frames, index first, so a cut keeps the header's frame count
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=30", "-frames:v", 100, "-c:v", "libx264", "-g", 10,
            "-pix_fmt", "yuv420p", "-movflags", "+faststart", whole)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.93)])  # a few frames lost: a warning
    monkeypatch.setattr(parallel, "MIN_FRAMES_PER_WORKER", 30)
    with pytest.warns(InputWarning) as caught:
        split = detect_file(cut, DetectConfig(workers=2, overlap_seconds=0))
    assert split.meta["parallel"] == {"workers": 2, "overlap_frames": 0}
    frames = split.meta["video"]["frames"]
    missing = [str(w.message) for w in caught if issubclass(w.category, InputWarning)]
    assert len(missing) == 1 and f"after {frames} of the 100 frames" in missing[0], missing
