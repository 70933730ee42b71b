"""run: the whole chain on a video (detect -> estimate -> refine), each stage cached in a work directory.

Each stage's key chains from the previous stage's key (so a new video, option, weight file or code version
invalidates exactly the stages downstream of the change); `force` reruns from a named stage on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from handcli.artifacts import Artifact, file_digest
from handcli.cache import WorkDir, stage_key, weights_digests
from handcli.errors import BadInput
from handcli.handmodels import hand_model_files
from handcli.stages.detect import DetectConfig, detect_file
from handcli.fitting.landmarks import OFFSETS_PATH
from handcli.stages.estimate import EstimateConfig, estimate
from handcli.stages.refine import RefineConfig, refine

STAGES = ("detect", "estimate", "refine")
# progress(stage, frames or items done, total or None)
StageProgress = Callable[[str, int, "int | None"], None]


@dataclass
class RunConfig:
    detect: DetectConfig = field(default_factory=DetectConfig)
    estimate: EstimateConfig = field(default_factory=EstimateConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    force: str | None = None  # rerun this stage and every later one even if cached


@dataclass
class StageRecord:
    stage: str
    path: Path
    cached: bool


def _config_dict(config) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}


def _made_from(artifact: Artifact, detected: Artifact, upstream: str, key: str) -> Artifact:
    """Provenance of a stage inside `run`: the video (as detect recorded it) and the cache entry it was computed
    from, named by its content-addressed key (the same in every work dir, unlike a path)."""
    artifact.meta["inputs"] = {**detected.meta.get("inputs", {}), "upstream": f"{upstream} {key}"}
    return artifact


def run_video(video: Path, work_dir: Path, config: RunConfig, *, progress: StageProgress | None = None,
              notify: Callable[[str], None] = lambda message: None) -> tuple[Artifact, list[StageRecord]]:
    """Run (or reuse) every stage for `video`; returns the final artifact and what each stage did."""
    if config.force is not None and config.force not in STAGES:
        raise BadInput(f"--force {config.force}: expected one of {', '.join(STAGES)}")
    video = Path(video)
    if not video.is_file():
        raise BadInput(f"{video}: no such file")
    forced = set(STAGES[STAGES.index(config.force):]) if config.force else set()
    tick = progress or (lambda stage, done, total: None)
    records: list[StageRecord] = []
    from handcli.diffusion.weights import default_weights_path

    with WorkDir(work_dir) as work:
        key = stage_key("detect", file_digest(video), _config_dict(config.detect))
        detected, path, hit = work.cached(
            "detect", key, lambda: detect_file(video, config.detect, progress=lambda d, t: tick("detect", d, t)),
            force="detect" in forced, notify=notify)
        records.append(StageRecord("detect", path, hit))
        for warning in detected.meta.get("warnings", []):  # as `handcli detect` reports them, cached or not
            notify(warning)
        if detected.num_tracks == 0:
            notify("no hands found in the video; the result has no tracks")
            return detected, records

        detect_key = key
        key = stage_key("estimate", key, _config_dict(config.estimate),
                        weights_digests({"landmark_offsets": OFFSETS_PATH,
                                         **hand_model_files(config.estimate.hand_model, config.estimate.mano_dir)}))
        estimated, path, hit = work.cached("estimate", key, lambda: _made_from(
                                               estimate(detected, config.estimate), detected, "detect", detect_key),
                                           force="estimate" in forced, notify=notify)
        records.append(StageRecord("estimate", path, hit))
        tick("estimate", 1, 1)

        weights = weights_digests({"refiner": Path(config.refine.weights or default_weights_path()),
                                   **hand_model_files(config.refine.hand_model, config.refine.mano_dir)})
        estimate_key = key
        key = stage_key("refine", key, _config_dict(config.refine), weights)
        refined, path, hit = work.cached("refine", key, lambda: _made_from(
                                             refine(estimated, config.refine), detected, "estimate", estimate_key),
                                         force="refine" in forced, notify=notify)
        records.append(StageRecord("refine", path, hit))
        tick("refine", 1, 1)
    return refined, records
