"""Running a batch: one video through `handcli run`'s chain (`run_one`, the unit of work) and the engines that
schedule the videos: `local` (this process, or a process pool with --jobs > 1) and `ray` (one Ray task per
video on a running cluster, or on a local Ray instance).

Every video is independent: a failure is recorded in the manifest and the others go on. Finished videos are
skipped by content key (handcli.batch.manifest), so a batch that was stopped is resumed by running it again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from handcli.batch.inputs import BatchVideo, expand_inputs
from handcli.batch.manifest import Manifest
from handcli.errors import BadInput, HandcliError

ENGINES = ("local", "ray")


@dataclass
class BatchConfig:
    out_dir: Path
    run: object  # handcli.stages.run.RunConfig; its render.out is replaced by DIR/<name>.mp4 per video
    engine: str = "local"
    jobs: int = 1  # local engine: videos at once (each in its own process when > 1)
    address: str | None = None  # ray engine: the cluster's address (None: a local Ray instance)
    # stage caches, one folder per video (a work dir is locked by the process using it, and videos run at
    # once); default DIR/.handcli-cache
    work_dir: Path | None = None


@dataclass
class BatchResult:
    """rows: one per video {name, source, output, status ("done" | "skipped" | "failed"), seconds, error}."""

    rows: list[dict] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(row["status"] == "failed" for row in self.rows)


def content_key(source: Path, run_config) -> str:
    """The video's bytes and every setting that shapes the artifact (output paths left out)."""
    from handcli.video import video_digest

    settings = asdict(run_config)
    settings.pop("force", None)
    if settings.get("render"):
        settings["render"] = {k: v for k, v in settings["render"].items() if k not in ("out", "video")}
    text = json.dumps(settings, sort_keys=True, default=str)
    return video_digest(source) + "-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def run_one(source: str, output: str, work_dir: str, run_config, progress=None) -> dict:
    """One video through the chain into `output` (atomically). Returns {"status", "seconds", "error" (one line
    or None), "warnings"}; an error is returned, not raised, except KeyboardInterrupt (it stops the batch,
    and the manifest says which videos were done). Runs in a worker process or Ray task as well as
    in-process (`progress`: handcli.stages.run's stage progress, in-process only)."""
    from handcli.artifacts import save_artifact
    from handcli.stages.run import run_video

    started = time.perf_counter()
    warnings: list[str] = []
    try:
        result, _ = run_video(Path(source), Path(work_dir), run_config, progress=progress, notify=warnings.append)
        save_artifact(result, Path(output))
        return {"status": "done", "seconds": time.perf_counter() - started, "error": None, "warnings": warnings}
    except HandcliError as error:
        message = str(error)
    except MemoryError:
        message = "out of memory"
    except Exception as error:  # one video's internal failure must not stop the batch; it is recorded
        message = f"internal error: {type(error).__name__}: {error}".splitlines()[0]
    return {"status": "failed", "seconds": time.perf_counter() - started, "error": message, "warnings": warnings}


def run_batch(inputs: list[str], config: BatchConfig, notify: Callable[[str], None] = lambda message: None,
              progress: Callable[[str, int, "int | None"], None] | None = None) -> BatchResult:
    """Expand INPUTS, skip the videos already done, run the rest with the chosen engine, record each in the
    manifest as it finishes. notify: one line per finished video; progress: per-stage progress of the video
    being run, for the local engine with one job."""
    if config.engine not in ENGINES:
        raise BadInput(f"--engine {config.engine}: expected one of {', '.join(ENGINES)}")
    if config.jobs < 1:
        raise BadInput(f"--jobs must be at least 1, got {config.jobs}")
    out_dir = Path(config.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"--out-dir {out_dir} is a file")
    videos = expand_inputs(inputs)
    ray = _ray(config.address) if config.engine == "ray" else None  # a missing extra fails before any work
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(config.work_dir or out_dir / ".handcli-cache")
    manifest = Manifest(out_dir)
    result = BatchResult()
    todo: list[tuple[BatchVideo, Path, str, object]] = []
    for video in videos:
        output = out_dir / f"{video.name}.npz"
        run_config = _video_config(config.run, out_dir, video)
        key = content_key(video.source, run_config)
        if manifest.is_done(video.name, key, output):
            result.rows.append(_row(video, output, {"status": "skipped", "seconds": 0.0, "error": None}))
            notify(f"[{len(result.rows)}/{len(videos)}] {video.name}: done before, skipped")
            continue
        manifest.record(video.name, source=str(video.source), output=str(output), key=key, status="pending",
                        seconds=None, error=None)
        todo.append((video, output, key, run_config))
    work_dir = {video.name: work_dir / video.name for video, *_ in todo}

    def finished(video: BatchVideo, output: Path, key: str, outcome: dict) -> None:
        manifest.record(video.name, source=str(video.source), output=str(output), key=key,
                        status=outcome["status"], seconds=round(outcome["seconds"], 2), error=outcome["error"])
        result.rows.append(_row(video, output, outcome))
        state = "done" if outcome["status"] == "done" else f"FAILED: {outcome['error']}"
        notify(f"[{len(result.rows)}/{len(videos)}] {video.name}: {state} ({outcome['seconds']:.1f} s)")

    if ray is not None:
        _run_ray(ray, todo, work_dir, finished)
    elif config.jobs == 1:
        for video, output, key, run_config in todo:
            tick = None if progress is None else (lambda stage, done, total, name=video.name:
                                                  progress(f"{name} {stage}", done, total))
            finished(video, output, key, run_one(str(video.source), str(output), str(work_dir[video.name]), run_config,
                                                tick))
    else:
        _run_pool(todo, work_dir, config.jobs, finished)
    return result


def _video_config(run_config, out_dir: Path, video: BatchVideo):
    """The run settings of one video: its overlay goes to DIR/<name>.mp4."""
    if getattr(run_config, "render", None) is None:
        return run_config
    return replace(run_config, render=replace(run_config.render, out=out_dir / f"{video.name}.mp4"))


def _row(video: BatchVideo, output: Path, outcome: dict) -> dict:
    return {"name": video.name, "source": str(video.source), "output": str(output), "status": outcome["status"],
            "seconds": outcome["seconds"], "error": outcome["error"]}


def _run_pool(todo, work_dir: dict[str, Path], jobs: int, finished) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: MediaPipe's native threads do not survive a fork
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_one, str(video.source), str(output), str(work_dir[video.name]), run_config):
                   (video, output, key) for video, output, key, run_config in todo}
        for future in as_completed(futures):
            video, output, key = futures[future]
            try:
                outcome = future.result()
            except Exception as error:  # the worker process itself died (killed, out of memory)
                outcome = {"status": "failed", "seconds": 0.0, "error": f"worker died: {type(error).__name__}"}
            finished(video, output, key, outcome)


def _ray(address: str | None):
    """The ray module, initialised (connected to `address`, or a local instance)."""
    try:
        import ray
    except ImportError:
        raise BadInput("--engine ray needs Ray: pip install 'handcli[cluster]'") from None
    if address is not None and address != "auto":
        _check_reachable(address)  # ray.init retries an unreachable address for minutes
    if not ray.is_initialized():
        from handcli.detect.mediapipe_hands import native_stderr_silenced

        try:
            with native_stderr_silenced():  # Ray's C++ core logs to file descriptor 2
                ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                         ignore_reinit_error=True)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise BadInput(f"cannot reach the Ray cluster at {address or 'a local instance'}: "
                           f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """BadInput unless something listens at HOST:PORT (the `ray://` client form included)."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return
    except ValueError:
        raise BadInput(f"--address {address}: expected HOST:PORT, as `ray start --head` prints it") from None
    except OSError as error:
        raise BadInput(f"cannot reach the Ray cluster at {address}: {error.strerror or type(error).__name__}"
                       ) from None


def _run_ray(ray, todo, work_dir: dict[str, Path], finished) -> None:
    """One Ray task per video; outcomes recorded in the order they finish. Outputs and the cache are paths the
    workers write themselves: on a cluster they must be on storage every node sees (docs/batch.md)."""
    task = ray.remote(num_cpus=1)(run_one)
    pending = {task.remote(str(video.source), str(output), str(work_dir[video.name]), run_config): (video, output, key)
               for video, output, key, run_config in todo}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for reference in ready:
            video, output, key = pending.pop(reference)
            try:
                outcome = ray.get(reference)
            except Exception as error:  # the task's worker died
                outcome = {"status": "failed", "seconds": 0.0, "error": f"ray task failed: {type(error).__name__}"}
            finished(video, output, key, outcome)
