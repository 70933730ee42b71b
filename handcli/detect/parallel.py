"""Segment-parallel detection: MediaPipe over time segments of one video in separate processes.

MediaPipe's graph keeps about one core busy, so on a machine with more cores the detector alone leaves them
idle. The video is cut into `workers` consecutive segments; each process decodes the video as a stream,
passes over the frames before its segment without running MediaPipe on them (decoding is ~1/10 of
MediaPipe's time per frame), runs MediaPipe from `overlap` frames before its segment so that its tracking
mode has locked on by the first frame it owns, and returns the detections of the frames it owns. The parent
then tracks and links the detections of all frames in order, exactly as sequential detection does
(handcli.detect.tracking, linking), so tracks and identities never have to be joined at a boundary: what can
differ from a sequential run is only MediaPipe's own output on the first frames after a boundary, where its
tracker started from a fresh palm detection rather than from the previous frame (measured in
docs/benchmarks.md).

Warnings raised in a worker (a video's missing tail, handcli.errors.InputWarning) are recorded there and
re-emitted by the parent, so they reach the user as they do in sequential detection.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from handcli.detect.tracking import HandDetection

# fewer frames than this per worker: one process does it (start-up of a MediaPipe process is ~1-2 s)
MIN_FRAMES_PER_WORKER = 120


@dataclass(frozen=True)
class Segment:
    """Frames [first, end) are this segment's; MediaPipe runs from `warmup` (<= first) to `end`."""

    warmup: int
    first: int
    end: int | None  # None: to the end of the stream


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def plan_segments(num_frames: int, workers: int, overlap: int) -> list[Segment]:
    """`workers` consecutive segments of about equal length covering frames [0, num_frames) (the last one open
    to the end of the stream, in case the header undercounts), each starting MediaPipe `overlap` frames early.
    Fewer segments when the video is too short to be worth splitting."""
    workers = max(1, min(workers, num_frames // MIN_FRAMES_PER_WORKER))
    bounds = [round(i * num_frames / workers) for i in range(workers + 1)]
    return [Segment(max(0, bounds[i] - overlap), bounds[i], bounds[i + 1] if i < workers - 1 else None)
            for i in range(workers)]


# a warning raised in a worker, as it travels to the parent: (category, message, filename, line number)
WarningRecord = tuple[type[Warning], str, str, int]


def _segment_detections(path: str, fps: float | None, segment: Segment, options: dict
                        ) -> tuple[list[list[HandDetection]], float, list[WarningRecord]]:
    """In a worker: the detections of the segment's own frames, MediaPipe's seconds, and the warnings raised
    meanwhile. A worker's warnings would otherwise go to its own stderr as raw Python warnings, outside the
    parent's filters and the CLI's `warning:` lines; so every one is recorded ("always": the worker does not
    inherit the parent's filters, and the parent's filters decide what is shown), once per message and
    category (a warning raised on every frame is one record, not one per frame)."""
    records: dict[tuple[str, type[Warning]], WarningRecord] = {}

    def record(message, category, filename, lineno, file=None, line=None):
        records.setdefault((str(message), category), (category, str(message), filename, lineno))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record  # restored when the block ends
        out, seconds = _run_segment(path, fps, segment, options)
    return out, seconds, list(records.values())


def _run_segment(path: str, fps: float | None, segment: Segment, options: dict
                 ) -> tuple[list[list[HandDetection]], float]:
    """The detections of the segment's own frames, and MediaPipe's seconds."""
    from handcli.detect.mediapipe_hands import MediaPipeHands
    from handcli.video import iter_frames, probe_video

    video = probe_video(path, fps)
    out: list[list[HandDetection]] = []
    seconds = 0.0
    with MediaPipeHands(**options) as hands:
        for index, frame in enumerate(iter_frames(video)):
            if segment.end is not None and index >= segment.end:
                break
            if index < segment.warmup:
                continue  # decoded and dropped: a stream has no cheaper exact way to frame `warmup`
            started = time.perf_counter()
            detections = hands.process(frame)
            seconds += time.perf_counter() - started
            if index >= segment.first:
                out.append(detections)
            if _COUNTER is not None:
                with _COUNTER.get_lock():
                    _COUNTER.value += 1
    return out, seconds


_COUNTER = None  # frames processed, shared by the workers of one pool (set by _init)


def _init(counter) -> None:
    global _COUNTER
    _COUNTER = counter


def detect_segments(path: str | Path, fps: float | None, num_frames: int, workers: int, overlap: int, options: dict,
                    progress: Callable[[int, int | None], None] | None = None
                    ) -> tuple[list[list[HandDetection]], float, int]:
    """Per-frame detections of the whole video (frame order), MediaPipe's seconds summed over the workers, and
    the number of segments used. num_frames: the header's estimate; options: MediaPipeHands' arguments."""
    segments = plan_segments(num_frames, workers, overlap)
    context = multiprocessing.get_context("spawn")  # MediaPipe's native threads do not survive a fork
    counter = context.Value("q", 0)
    with context.Pool(len(segments), initializer=_init, initargs=(counter,)) as pool:
        pending = [pool.apply_async(_segment_detections, (str(path), fps, segment, options)) for segment in segments]
        while not all(result.ready() for result in pending):
            time.sleep(0.2)
            if progress is not None:
                progress(min(counter.value, num_frames), num_frames)
        parts = [result.get() for result in pending]  # re-raises a worker's BadInput here
    _reemit([record for _, _, records in parts for record in records])
    detections = [frame for frame_list, _, _ in parts for frame in frame_list]
    return detections, sum(seconds for _, seconds, _ in parts), len(segments)


def _reemit(records: list[WarningRecord]) -> None:
    """Raise the workers' warnings in this process, in segment order, each message and category once (every
    segment's process imports and starts MediaPipe, so the same warning can come from all of them). They go
    through this process's filters and `showwarning` (the CLI's `warning:` line, pytest.warns), as they
    would in sequential detection; the original file and line keep filters by module working."""
    seen = set()
    for category, message, filename, lineno in records:
        if (message, category) not in seen:
            seen.add((message, category))
            warnings.warn_explicit(message, category, filename, lineno)
