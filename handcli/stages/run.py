"""run: the whole chain on a video (detect -> estimate -> refine -> variance [-> render]), each stage cached in
a work directory.

Each stage's key chains from the previous stage's key (so a new video, option, weight file or code version
invalidates exactly the stages downstream of the change); `force` reruns from a named stage on.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from handcli.artifacts import Artifact, atomic_path, check_work_dir
from handcli.cache import WorkDir, stage_key, weights_digests
from handcli.errors import BadInput
from handcli.handmodels import hand_model_files
from handcli.fitting.landmarks import OFFSETS_PATH
from handcli.stages.detect import DetectConfig, detect_file
from handcli.stages.estimate import EstimateConfig, estimate
from handcli.stages.refine import RefineConfig, refine, variance_settings
from handcli.stages.render import RenderConfig, check_render_output, render_file
from handcli.stages.variance import VarianceConfig, attach_variance
from handcli.video import video_digest

STAGES = ("detect", "estimate", "refine", "variance", "render")
# progress(stage, frames or items done, total or None)
StageProgress = Callable[[str, int, "int | None"], None]


@dataclass
class RunConfig:
    detect: DetectConfig = field(default_factory=DetectConfig)
    estimate: EstimateConfig = field(default_factory=EstimateConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    # the variance maps of the refinement (None: stop after refine, `--no-variance`); its refiner weights,
    # seed, device and hand model are the refine stage's
    variance: VarianceConfig | None = field(default_factory=VarianceConfig)
    # also draw the overlay over the video into render.out (None: no overlay)
    render: RenderConfig | None = None
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
    if config.force == "variance" and config.variance is None:
        raise BadInput("--force variance: the variance stage is off (--no-variance)")
    if config.force == "render" and config.render is None:
        raise BadInput("--force render: no overlay was asked for (--render OUT.mp4)")
    video = Path(video)
    check_work_dir(work_dir)  # a file, under a file, read-only: exit 2 now, not after the work
    if config.render is not None:  # a bad overlay path fails before hours of work, not after
        check_render_output(replace(config.render, video=video))
    if not (video.is_file() or video.is_dir()):
        raise BadInput(f"{video}: no such file or folder")
    forced = set(STAGES[STAGES.index(config.force):]) if config.force else set()
    tick = progress or (lambda stage, done, total: None)
    records: list[StageRecord] = []
    from handcli.diffusion.weights import default_weights_path

    with WorkDir(work_dir) as work:
        key = stage_key("detect", video_digest(video), _config_dict(config.detect))
        detected, path, hit = work.cached(
            "detect", key, lambda: detect_file(video, config.detect, progress=lambda d, t: tick("detect", d, t)),
            force="detect" in forced, notify=notify)
        records.append(StageRecord("detect", path, hit))
        for warning in detected.meta.get("warnings", []):  # as `handcli detect` reports them, cached or not
            notify(warning)
        if detected.num_tracks == 0:
            notify("no hands found in the video; the result has no tracks"
                   + ("; no overlay written" if config.render is not None else ""))
            return detected, records

        detect_key = key
        from handcli.fitting.lifter import WEIGHTS as LIFTER_WEIGHTS  # here: the module imports torch

        key = stage_key("estimate", key, _config_dict(config.estimate),
                        weights_digests({"landmark_offsets": OFFSETS_PATH, "lifter": LIFTER_WEIGHTS,
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
        result = refined
        if config.variance is not None:
            result, path, key = _variance(work, refined, estimated, config, key, forced, notify, records)
            tick("variance", 1, 1)
        if config.render is not None:
            _render(work, path, video, config.render, key, "render" in forced, notify, records, tick)
    return result, records


def _variance(work: WorkDir, refined: Artifact, estimated: Artifact, config: RunConfig, refine_key: str,
              forced: set[str], notify, records: list[StageRecord]) -> tuple[Artifact, Path, str]:
    """The refined artifact with the variance maps of refining `estimated` (cached like every stage)."""
    from handcli.diffusion.weights import default_weights_path
    from handcli.variance.estimate import DEFAULT_CALIBRATION_PATH
    from handcli.variance.posterior import default_laplace_path

    settings = variance_settings(config.refine, config.variance)
    refiner_weights = Path(settings.weights or default_weights_path())
    weights = weights_digests({"refiner": refiner_weights,
                               "laplace": Path(settings.laplace or default_laplace_path(refiner_weights)),
                               "calibration": Path(settings.calibration or DEFAULT_CALIBRATION_PATH),
                               **hand_model_files(settings.hand_model or "open", settings.mano_dir)})
    key = stage_key("variance", refine_key, _config_dict(settings), weights)
    result, path, hit = work.cached("variance", key, lambda: attach_variance(refined, estimated, settings,
                                                                             notify=notify),
                                    force="variance" in forced, notify=notify)
    records.append(StageRecord("variance", path, hit))
    return result, path, key


def _render(work: WorkDir, artifact_path: Path, video: Path, render: RenderConfig, upstream_key: str, force: bool,
            notify, records: list[StageRecord], tick: StageProgress) -> None:
    """Draw the overlay of the cached artifact over `video` into render.out, through a cached copy keyed by the
    artifact's key and the render settings."""
    settings = replace(render, video=video)
    key = stage_key("render", upstream_key, {k: v for k, v in _config_dict(settings).items()
                                             if k not in ("out", "video")})
    cached = work.path / f"render-{key[:20]}{Path(render.out).suffix.lower()}"
    hit = cached.exists() and not force
    tick("render", 0, 1)
    if not hit:
        render_file(artifact_path, replace(settings, out=cached), notify)
    with atomic_path(render.out) as tmp:  # the overlay appears whole or not at all
        shutil.copyfile(cached, tmp)
    tick("render", 1, 1)
    records.append(StageRecord("render", cached, hit))
