"""Faults: real `handcli run` / `handcli render` processes killed (SIGKILL) or interrupted (SIGINT) at seeded random
points, then what is on disk; resuming to a bit-identical result; the work-dir lock; cache keys; exit codes.

Kill points are events a test can see (the work-dir lock taken, a stage's cache file appearing, a hidden
temporary appearing) plus a seeded random fraction of how long that phase took in an uninterrupted run, so they
land in the intended phase on slow and fast machines alike. Nothing asserts on durations. HANDCLI_FAULT_SEED
draws other kill points (e.g. `for s in 1 2 3; do HANDCLI_FAULT_SEED=$s pytest tests/test_faults.py; done`).
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
from typer.testing import CliRunner

from handcli import cache
from handcli.artifacts import Artifact, load_artifact, save_artifact
from handcli.cli import app
from handcli.errors import BadInput
from handcli.render.synthetic import render_synthetic_video
from handcli.stages import run as run_stage
from handcli.video import iter_frames, probe_video
from tests.conftest import REPO, assert_one_line_error, random_keypoints, run_cli

SEED = int(os.environ.get("HANDCLI_FAULT_SEED", "6"))
STAGES = ("detect", "estimate", "refine", "variance")
NUM_FRAMES, WIDTH, HEIGHT = 24, 320, 240
# a rate float32 cannot hold exactly: fresh and resumed runs must still agree bit for bit
FPS = 29.97
TIMEOUT = 240.0


# ------------------------------------------------------------------------------------------- process helpers
def spawn(repo: Path, *args) -> subprocess.Popen:
    """`handcli ARGS` in a new process, as a user would start it, running the package found in `repo`."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.Popen([sys.executable, "-m", "handcli.cli", *map(str, args)], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def snapshot_repo(directory: Path) -> Path:
    """A copy of the package and its weights: the CLI processes of this module run it, so the code version in
    the cache keys (a digest of the sources) and the weights cannot change mid-test while the tree is edited."""
    if not (REPO / "weights" / "refiner.pt").is_file():
        pytest.skip("weights/refiner.pt is absent (make weights)")
    shutil.copytree(REPO / "handcli", directory / "handcli", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "weights", directory / "weights")
    return directory


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def wait_until(process: subprocess.Popen, condition: Callable[[], bool]) -> bool:
    """Poll `condition` every millisecond: True once it holds, False if the process ended first."""
    deadline = time.monotonic() + TIMEOUT
    while process.poll() is None:
        if condition():
            return True
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting on {process.args}")
        time.sleep(0.001)
    return False


def holds_lock(work: Path, pid: int) -> bool:
    try:
        return (work / ".lock").read_text().strip() == str(pid)
    except FileNotFoundError:
        return False


def cached_stages(work: Path) -> dict[str, Path]:
    """Stage -> its visible (complete) cache file."""
    found = {}
    for stage in STAGES:
        paths = sorted(work.glob(f"{stage}-*.npz")) if work.is_dir() else []
        assert len(paths) <= 1, paths
        if paths:
            found[stage] = paths[0]
    return found


def hidden_temporaries(directory: Path) -> list[Path]:
    """Writers' temporaries: `.{target}.{pid}.{random}.tmp{suffix}`."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.startswith(".") and ".tmp" in p.name)


def temporary_owner(path: Path) -> tuple[str, int]:
    """(target name, writer pid) of a hidden temporary."""
    match = re.fullmatch(r"\.(.+)\.(\d+)\.[^.]+\.tmp.*", path.name)
    assert match, f"unexpected hidden file {path}"
    return match.group(1), int(match.group(2))


def writing(directory: Path, prefix: str, pid: int) -> bool:
    """Process `pid` has a temporary named `{prefix}...` open in `directory` (it is writing that target)."""
    return any(p.name.startswith(prefix) and temporary_owner(p)[1] == pid for p in hidden_temporaries(directory))


def write_began(directory: Path, prefix: str) -> Callable[[], Callable[[subprocess.Popen], bool]]:
    """Trigger: the process began writing a file named `{prefix}...` in `directory`: its hidden temporary
    appeared or, for a writer that is not atomic, a visible file of that name appeared or changed."""
    def visible() -> dict[str, tuple[int, int, int]]:
        found = {}
        for path in directory.glob(f"{prefix}*") if directory.is_dir() else []:
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            found[path.name] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        return found

    def arm() -> Callable[[subprocess.Popen], bool]:
        before = visible()
        return lambda process: writing(directory, f".{prefix}", process.pid) or visible() != before
    return arm


def at_once() -> Callable[[subprocess.Popen], bool]:
    return lambda process: True


def stage_report(stderr: str) -> dict[str, str]:
    """What `handcli run` said it did per stage: {'detect': 'cached' | 'computed', ...}."""
    return dict(re.findall(r"^\s+(detect|estimate|refine|variance|render): (cached|computed) \(", stderr, re.M))


def npz_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k != "timings"}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def assert_identical(path: Path, reference: dict[str, np.ndarray]) -> None:
    """Same keys, dtypes, shapes and bytes as `reference`; meta equal apart from timings."""
    arrays = npz_arrays(path)
    assert sorted(arrays) == sorted(reference), path
    for key, value in reference.items():
        if key == "meta":
            assert _without_timings(json.loads(str(arrays[key]))) == _without_timings(json.loads(str(value))), path
        else:
            assert (arrays[key].dtype, arrays[key].shape) == (value.dtype, value.shape), (path, key)
            assert arrays[key].tobytes() == value.tobytes(), f"{path}: '{key}' differs"


def decoded_frames(path: Path) -> np.ndarray:
    """(N, H, W, 3) uint8: every frame of a video (raises BadInput on an incomplete file)."""
    return np.stack([frame.copy() for frame in iter_frames(probe_video(path))])


# ------------------------------------------------------------------------------ baseline run and the lock
@dataclass
class Baseline:
    repo: Path  # the package snapshot the CLI processes run
    video: Path
    truth: Artifact  # the clip's ground truth: a complete artifact to stand in for an earlier result
    work: Path
    out: Path
    result: subprocess.CompletedProcess
    contender: subprocess.CompletedProcess  # a second run started while the first held the lock
    work_unchanged_by_contender: bool
    times: dict[str, float] = field(default_factory=dict)  # seconds from start: 'lock' and each stage's file

    def arrays(self) -> dict[str, np.ndarray]:
        return npz_arrays(self.out)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Baseline:
    """An uninterrupted `handcli run` on a fresh work dir, timed by event. While it holds the lock it is paused
    (SIGSTOP) and a second `handcli run` on the same work dir is started; then it resumes (SIGCONT)."""
    root = tmp_path_factory.mktemp("faults")
    repo = snapshot_repo(tmp_path_factory.mktemp("repo"))
    video = root / "clip.mp4"
    truth = render_synthetic_video(video, NUM_FRAMES, WIDTH, HEIGHT, fps=FPS)
    work, out = root / "work", root / "baseline" / "hands.npz"
    out.parent.mkdir()
    started = time.monotonic()
    paused = 0.0
    process = spawn(repo, "run", video, "--out", out, "--work-dir", work)
    times: dict[str, float] = {}
    contender = None
    unchanged = False
    while process.poll() is None:
        now = time.monotonic() - started - paused
        if "lock" not in times and holds_lock(work, process.pid):
            times["lock"] = now
            before = snapshot(work)
            pause_start = time.monotonic()
            process.send_signal(signal.SIGSTOP)
            try:
                contender = run_cli("run", video, "--out", root / "second.npz", "--work-dir", work, cwd=repo)
                unchanged = snapshot(work) == before
            finally:
                process.send_signal(signal.SIGCONT)
            paused += time.monotonic() - pause_start
        for stage, path in cached_stages(work).items():
            times.setdefault(stage, now)
        if out.exists():
            times.setdefault("out", now)
        if now > TIMEOUT:
            process.kill()
            raise AssertionError("baseline run timed out")
        time.sleep(0.001)
    result = finish(process)
    assert result.returncode == 0, result.stderr
    assert stage_report(result.stderr) == dict.fromkeys(STAGES, "computed"), result.stderr
    assert contender is not None, "the baseline run never took the lock"
    assert set(times) >= {"lock", *STAGES}, times
    return Baseline(repo, video, truth, work, out, result, contender, unchanged, times)


def test_second_run_on_the_same_work_dir_is_refused(baseline):
    """The second process gets one line and exit code 2 and touches nothing; the first finishes fine."""
    assert_one_line_error(baseline.contender, 2, "in use by another handcli process")
    assert not (baseline.out.parent.parent / "second.npz").exists()
    assert baseline.work_unchanged_by_contender
    assert baseline.result.returncode == 0
    artifact = load_artifact(baseline.out)
    assert (artifact.num_tracks, artifact.num_frames) == (1, NUM_FRAMES)


# --------------------------------------------------------------------------------- SIGKILL inside a write
def _die_halfway_through_a_write(target: str, through_cache: bool) -> None:
    """Child process: save an artifact (directly, or as a cache entry) and SIGKILL itself when half the bytes
    are written: the one moment a random kill rarely hits."""
    from handcli import artifacts

    def half_then_die(path, arrays):
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        with open(path, "wb") as handle:
            handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    artifacts._write_npz = half_then_die  # the one function save_artifact writes the npz through
    artifact = Artifact(keypoints3d=random_keypoints(1, 50, seed=1), valid=np.ones((1, 50), bool),
                        is_right=np.ones(1, bool))
    if through_cache:
        with cache.WorkDir(Path(target).parent) as work:
            work.cached("estimate", "k" * 40, lambda: artifact)
    else:
        save_artifact(artifact, target)


@pytest.mark.parametrize("through_cache", [False, True], ids=["artifact", "cache entry"])
def test_sigkill_halfway_through_a_write(tmp_path, through_cache):
    """The target keeps its previous content (or stays absent); the writer's hidden temporary stays until the
    next write of that target, which removes it."""
    target = tmp_path / ("estimate-" + "k" * 20 + ".npz" if through_cache else "hands.npz")
    previous = Artifact(keypoints3d=random_keypoints(1, 5), valid=np.ones((1, 5), bool), is_right=np.ones(1, bool))
    if not through_cache:
        save_artifact(previous, target)
    before = target.read_bytes() if target.exists() else None
    writer = multiprocessing.get_context("fork").Process(target=_die_halfway_through_a_write,
                                                         args=(str(target), through_cache))
    writer.start()
    writer.join(60)
    assert writer.exitcode == -signal.SIGKILL
    assert (target.read_bytes() if target.exists() else None) == before
    (leftover,) = hidden_temporaries(tmp_path)
    assert temporary_owner(leftover) == (target.name, writer.pid)
    with pytest.raises(BadInput):
        load_artifact(leftover)  # it really is a partial file
    if through_cache:
        with cache.WorkDir(tmp_path) as work:
            _, _, hit = work.cached("estimate", "k" * 40, lambda: previous)
        assert not hit
    else:
        save_artifact(previous, target)
    assert hidden_temporaries(tmp_path) == []
    assert load_artifact(target).num_frames == 5


# ------------------------------------------------------------------------------------- kill and resume run
@dataclass
class KillPoint:
    name: str
    signal: int
    trigger: Callable[[], Callable[[subprocess.Popen], bool]]  # armed before the start: the event to wait for
    delay: float  # seconds after the event


def end_of(result: subprocess.CompletedProcess, point: KillPoint) -> str:
    """How a signalled process ended: 'killed' (SIGKILL), 'interrupted' (SIGINT before its work was done:
    exit 130 and the one line "interrupted") or 'finished' (its work was done before the signal: exit 0, or
    the stage's "<stage>: wrote" report before a late SIGINT, which then ends it with 130 or, during
    interpreter teardown, by the signal itself, as a shell's 130). Only the report says the work was done:
    other lines (a warning, progress) can come before an interrupt too."""
    if result.returncode == -signal.SIGKILL:
        assert point.signal == signal.SIGKILL
        return "killed"
    reported = any(": wrote " in line for line in result.stderr.splitlines())
    if result.returncode == 130:
        assert point.signal == signal.SIGINT
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert "Traceback" not in result.stderr and lines[-1] == "interrupted", result.stderr
        return "finished" if reported else "interrupted"
    assert result.returncode == 0 or (result.returncode == -signal.SIGINT and point.signal == signal.SIGINT), \
        (point.name, result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return "finished" if result.returncode == 0 or reported else "interrupted"


class DiskChecker:
    """What may be on disk after any process ended, however it ended:
    * OUT is the previous complete file, or a complete artifact identical to the uninterrupted run's;
    * every visible cache file is complete and identical to the uninterrupted run's file of that name;
    * hidden temporaries belong only to SIGKILLed writers, and only until their target is written again."""

    def __init__(self, baseline: Baseline, out: Path, work: Path, previous: bytes):
        self.baseline, self.out, self.work, self.previous = baseline, out, work, previous
        self.reference = baseline.arrays()
        self.killed_pids: set[int] = set()
        self.leftovers: dict[Path, tuple[bool, bytes | None]] = {}  # temp -> (its target visible?, OUT bytes)

    def check(self, label: str) -> None:
        if self.out.exists():
            data = self.out.read_bytes()
            if data != self.previous:
                load_artifact(self.out)
                assert_identical(self.out, self.reference)
        visible = sorted(p.name for p in self.out.parent.iterdir() if not p.name.startswith("."))
        assert visible == [self.out.name], (label, visible)
        for stage, path in cached_stages(self.work).items():
            load_artifact(path)
            assert_identical(path, npz_arrays(cached_stages(self.baseline.work)[stage]))
        visible_work = [p.name for p in self.work.iterdir() if not p.name.startswith(".")] if self.work.is_dir() else []
        assert len(visible_work) == len(cached_stages(self.work)), (label, visible_work)
        for temporary in hidden_temporaries(self.out.parent) + hidden_temporaries(self.work):
            target, pid = temporary_owner(temporary)
            assert pid in self.killed_pids, f"{label}: {temporary.name} is not from a SIGKILLed writer"
            if temporary not in self.leftovers:
                self.leftovers[temporary] = ((temporary.parent / target).exists(), self._out_bytes())
        for temporary, (target_existed, out_bytes) in self.leftovers.items():
            target = temporary.parent / temporary_owner(temporary)[0]
            rewritten = (target.exists() and not target_existed if target != self.out
                         else self._out_bytes() != out_bytes)
            if rewritten:
                assert not temporary.exists(), f"{label}: {temporary.name} survived a later write of its target"

    def _out_bytes(self) -> bytes | None:
        return self.out.read_bytes() if self.out.exists() else None


def test_kill_and_resume_run(baseline, tmp_path):
    rng = np.random.default_rng(SEED)
    times = baseline.times
    work, out = tmp_path / "work", tmp_path / "out" / "hands.npz"
    out.parent.mkdir()
    # a complete earlier result in OUT: no interrupted run may damage it
    previous = save_artifact(baseline.truth, out).read_bytes()
    disk = DiskChecker(baseline, out, work, previous)

    def locked(*stages: str) -> Callable[[], Callable[[subprocess.Popen], bool]]:
        return lambda: lambda process: holds_lock(work, process.pid) and set(stages) <= set(cached_stages(work))

    within = lambda start, end: float(rng.uniform(0.1, 0.9)) * (times[end] - (times[start] if start else 0.0))
    points = [
        KillPoint("start-up", signal.SIGKILL, at_once, within(None, "lock")),
        KillPoint("detect", signal.SIGKILL, locked(), within("lock", "detect")),
        KillPoint("detect cache write", signal.SIGKILL, write_began(work, "detect-"), 0.0),
        KillPoint("estimate (SIGINT)", signal.SIGINT, locked("detect"), within("detect", "estimate")),
        KillPoint("refine", signal.SIGKILL, locked("detect", "estimate"), within("estimate", "refine")),
        KillPoint("variance", signal.SIGKILL, locked("detect", "estimate", "refine"), within("refine", "variance")),
        KillPoint("output write", signal.SIGKILL, write_began(out.parent, out.name), 0.0),
    ]
    landed = []
    for point in points:
        trigger = point.trigger()
        process = spawn(baseline.repo, "run", baseline.video, "--out", out, "--work-dir", work)
        if wait_until(process, lambda: trigger(process)):
            time.sleep(point.delay)
            if process.poll() is None:
                process.send_signal(point.signal)
        result = finish(process)
        if end_of(result, point) == "killed":
            disk.killed_pids.add(process.pid)
        elif end_of(result, point) == "finished":
            assert out.read_bytes() != previous, point.name
        landed.append(f"{point.name}: exit {result.returncode}, cached {sorted(cached_stages(work))}, "
                      f"temporaries {[p.name for p in hidden_temporaries(work) + hidden_temporaries(out.parent)]}")
        disk.check(point.name)
    print("\n".join(landed))

    before = set(cached_stages(work))
    result = finish(spawn(baseline.repo, "run", baseline.video, "--out", out, "--work-dir", work))
    assert result.returncode == 0, result.stderr
    assert stage_report(result.stderr) == {s: "cached" if s in before else "computed" for s in STAGES}, result.stderr
    assert_identical(out, baseline.arrays())
    disk.check("final run")
    assert hidden_temporaries(work) == [] and hidden_temporaries(out.parent) == []


# ----------------------------------------------------------------------------------- cache through the CLI
def test_corrupt_cache_entry_is_reported_and_recomputed_and_options_key_stages(baseline, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(baseline.work, work, ignore=shutil.ignore_patterns(".lock"))
    refined = cached_stages(work)["refine"]
    refined.write_bytes(refined.read_bytes()[: refined.stat().st_size // 2])  # torn by some other tool
    out = tmp_path / "hands.npz"
    result = run_cli("run", baseline.video, "--out", out, "--work-dir", work, cwd=baseline.repo)
    assert result.returncode == 0, result.stderr
    assert re.search(rf"warning: cached refine artifact {refined.name} is corrupt .*recomputing", result.stderr)
    # the recomputed refine has the same key, so the variance computed from it before is still valid
    assert stage_report(result.stderr) == {"detect": "cached", "estimate": "cached", "refine": "computed",
                                           "variance": "cached"}
    assert_identical(out, baseline.arrays())
    assert_identical(refined, npz_arrays(cached_stages(baseline.work)["refine"]))

    # a refine option (the seed) changes only the refine key
    result = run_cli("run", baseline.video, "--out", out, "--work-dir", work, "--seed", "1", cwd=baseline.repo)
    assert result.returncode == 0, result.stderr
    assert stage_report(result.stderr) == {"detect": "cached", "estimate": "cached", "refine": "computed",
                                           "variance": "computed"}
    assert len(list(work.glob("refine-*.npz"))) == 2 and len(list(work.glob("estimate-*.npz"))) == 1


@dataclass
class FakeStages:
    """Cheap stand-ins for detect/estimate/refine that count their calls (keys, not results, are tested)."""

    calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))

    def _artifact(self) -> Artifact:
        return Artifact(keypoints3d=random_keypoints(1, 5), valid=np.ones((1, 5), bool), is_right=np.ones(1, bool))

    def detect(self, video, config, progress=None):
        self.calls["detect"] += 1
        return self._artifact()

    def estimate(self, artifact, config):
        self.calls["estimate"] += 1
        return artifact

    def refine(self, artifact, config):
        self.calls["refine"] += 1
        return artifact

    def variance(self, refined, observations, config, notify=None):
        self.calls["variance"] += 1
        return refined


def test_cache_keys_change_exactly_with_their_ingredients(tmp_path, monkeypatch):
    """Video content, a stage option, the weights file and the code version each recompute exactly the
    stages downstream of them; undoing the change (or renaming the video) reuses everything."""
    fakes = FakeStages()
    monkeypatch.setattr(run_stage, "detect_file", fakes.detect)
    monkeypatch.setattr(run_stage, "estimate", fakes.estimate)
    monkeypatch.setattr(run_stage, "refine", fakes.refine)
    monkeypatch.setattr(run_stage, "attach_variance", fakes.variance)
    video, weights = tmp_path / "clip.mp4", tmp_path / "refiner.pt"
    video.write_bytes(b"video one")
    weights.write_bytes(b"weights one")

    def run(**changes) -> set[str]:
        config = run_stage.RunConfig()
        config.refine.weights = weights
        for name, value in changes.items():
            stage, option = name.split("__")
            setattr(getattr(config, stage), option, value)
        before = dict(fakes.calls)
        run_stage.run_video(video, tmp_path / "work", config)
        return {stage for stage in STAGES if fakes.calls[stage] > before[stage]}

    assert run() == set(STAGES)
    assert run() == set()
    video.write_bytes(b"video two")
    assert run() == set(STAGES)
    video.write_bytes(b"video one")
    assert run() == set()
    video = video.rename(tmp_path / "renamed.mp4")
    assert run() == set()  # the key is the content, not the name
    assert run(detect__focal=500.0) == set(STAGES)
    assert run(estimate__device="cpu") == {"estimate", "refine", "variance"}
    assert run(estimate__image_fit=False) == {"estimate", "refine", "variance"}
    assert run() == set()
    offsets = tmp_path / "landmark_offsets.npz"  # the image fit's calibration is part of the estimate's key
    offsets.write_bytes(b"offsets one")
    monkeypatch.setattr(run_stage, "OFFSETS_PATH", offsets)
    assert run() == {"estimate", "refine", "variance"}
    offsets.write_bytes(b"offsets two")
    assert run() == {"estimate", "refine", "variance"}
    assert run(refine__seed=1) == {"refine", "variance"}
    assert run() == set()
    assert run(variance__samples=5) == {"variance"}
    assert run() == set()
    weights.write_bytes(b"weights two")
    assert run() == {"refine", "variance"}
    laplace = tmp_path / "refiner_laplace.pt"  # the posterior bound to the weights keys the variance alone
    laplace.write_bytes(b"posterior two")
    assert run() == {"variance"}
    original = cache.code_version()
    monkeypatch.setattr(cache, "code_version", lambda: original + "-edited")
    assert run() == set(STAGES)
    monkeypatch.setattr(cache, "code_version", lambda: original)
    assert run() == set()


# --------------------------------------------------------------------------------------------- exit codes
@pytest.fixture
def keypoints_file(tmp_path) -> Path:
    path = tmp_path / "keypoints.npz"
    np.savez(path, keypoints3d=random_keypoints(1, 12), valid=np.ones((1, 12), bool))
    return path


@pytest.mark.parametrize("failure, message", [
    ("raise", "internal failure: RuntimeError: solver diverged"),
    ("nan", "internal error: output key"),
])
def test_stage_failure_on_valid_input_is_exit_3(keypoints_file, tmp_path, monkeypatch, failure, message):
    """A stage that breaks on valid input: exit 3, one line (no traceback), nothing written."""
    import handcli.fitting

    def broken_fit(model, keypoints3d, valid, is_right, *args, **kwargs):
        if failure == "raise":
            raise RuntimeError("solver diverged")
        H, T = valid.shape
        return SimpleNamespace(keypoints3d_fit=np.full((H, T, 21, 3), np.nan, np.float32),
                               global_orient=np.zeros((H, T, 3)), hand_pose=np.zeros((H, T, 15, 3)),
                               transl=np.zeros((H, T, 3)), betas=np.zeros((H, 10)))

    monkeypatch.setattr(handcli.fitting, "fit_keypoints", broken_fit)
    out = tmp_path / "out.npz"
    result = CliRunner().invoke(app, ["estimate", "--input", str(keypoints_file), "--out", str(out)])
    assert result.exit_code == 3, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [keypoints_file.name]


# ------------------------------------------------------------------------------------ kill and resume render
def test_kill_and_resume_render(baseline, tmp_path):
    """SIGKILL during start-up and during encoding, SIGINT during encoding (exit 130): OUT stays the previous
    video or is complete; the rerun writes a complete video with the same frames as an uninterrupted render."""
    rng = np.random.default_rng(SEED + 1)
    reference = tmp_path / "reference" / "overlay.mp4"
    reference.parent.mkdir()
    args = ("render", "--input", baseline.out, "--video", baseline.video, "--out")
    began = write_began(reference.parent, reference.name)()
    process = spawn(baseline.repo, *args, reference)
    started = time.monotonic()
    assert wait_until(process, lambda: began(process))
    encode_start = time.monotonic() - started
    renamed = lambda: reference.exists() and not writing(reference.parent, f".{reference.name}.", process.pid)
    wait_until(process, renamed)
    encode_time = time.monotonic() - started - encode_start
    assert finish(process).returncode == 0
    expected = decoded_frames(reference)
    assert expected.shape == (NUM_FRAMES, HEIGHT, WIDTH, 3)

    out = tmp_path / "out" / "overlay.mp4"
    out.parent.mkdir()
    shutil.copy(baseline.video, out)  # a complete earlier video in OUT
    previous = out.read_bytes()
    fraction = lambda: float(rng.uniform(0.1, 0.9))
    points = [
        KillPoint("start-up", signal.SIGKILL, at_once, fraction() * encode_start),
        KillPoint("encoding", signal.SIGKILL, write_began(out.parent, out.name), fraction() * encode_time),
        KillPoint("encoding (SIGINT)", signal.SIGINT, write_began(out.parent, out.name), fraction() * encode_time),
    ]
    killed = set()
    for point in points:
        trigger = point.trigger()
        process = spawn(baseline.repo, *args, out)
        if wait_until(process, lambda: trigger(process)):
            time.sleep(point.delay)
            if process.poll() is None:
                process.send_signal(point.signal)
        result = finish(process)
        if end_of(result, point) == "killed":
            killed.add(process.pid)
        elif end_of(result, point) == "finished":
            assert out.read_bytes() != previous, point.name
        if out.read_bytes() != previous:
            np.testing.assert_array_equal(decoded_frames(out), expected)
        for temporary in hidden_temporaries(out.parent):
            assert temporary_owner(temporary)[1] in killed, (point.name, temporary.name)
        assert [p.name for p in out.parent.iterdir() if not p.name.startswith(".")] == [out.name]

    result = finish(spawn(baseline.repo, *args, out))
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(decoded_frames(out), expected)
    assert hidden_temporaries(out.parent) == []
