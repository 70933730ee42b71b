"""The pipeline on a rendered clip, in-process with the stage functions, as `handcli run` chains them
(stages/run.py): detect_file -> estimate -> refine, each with its default config unless overridden.

Caching, so a rerun re-scores without recomputing:
* detect does not depend on the variant: one file per clip, `<split dir>/detect/clipNN_detect.npz`, keyed by
  the video's digest, the DetectConfig, MediaPipe's version and the detect code; linked into each variant's
  directory as `<tag>/clipNN_detect.npz` so a variant's directory holds all its stages.
* estimate and refine: `<split dir>/<tag>/clipNN_{estimate,refine}.npz`, keyed by the detect key, the two
  configs, the weights and hand-model files, and a digest of handcli's code outside the benchmark package.
The key is stored in each artifact's meta (`videobench_key`); a mismatch recomputes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

from handcli.artifacts import Artifact, file_digest, load_artifact, save_artifact
from handcli.errors import BadInput

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # handcli/


def parse_value(text: str):
    """A --*-set value: int, float, bool (true/false/yes/no/on/off), none, else the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_overrides(items: list[str], config_class, option: str) -> dict:
    """["KEY=VALUE", ...] -> {field: value} for the dataclass `config_class`; BadInput (one line) for a
    malformed item or a field the config does not have."""
    names = {f.name for f in dataclasses.fields(config_class)}
    out = {}
    for item in items:
        if "=" not in item:
            raise BadInput(f"{option} {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        key = key.strip()
        if key not in names:
            raise BadInput(f"{option} {key}: {config_class.__name__} has no such field "
                           f"(fields: {', '.join(sorted(names))})")
        out[key] = parse_value(value)
    return out


def _digest_files(paths) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(PACKAGE_DIR)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=1)
def detect_code_digest() -> str:
    """The code detect runs: handcli/detect/, the detect stage and video reading."""
    files = [*(PACKAGE_DIR / "detect").glob("*.py"), PACKAGE_DIR / "stages" / "detect.py", PACKAGE_DIR / "video.py"]
    try:
        from importlib.metadata import version

        mediapipe = version("mediapipe")
    except Exception:  # a missing distribution name is not worth failing over: the code digest still keys
        mediapipe = "unknown"
    return f"{_digest_files(files)}+mediapipe{mediapipe}"


@lru_cache(maxsize=1)
def pipeline_code_digest() -> str:
    """Every handcli source file except this benchmark's own (re-scoring must not recompute the pipeline), and
    the shipped weights the stages load (refiner, landmark offsets, hand model)."""
    files = [p for p in PACKAGE_DIR.rglob("*.py") if "videobench" not in p.relative_to(PACKAGE_DIR).parts]
    weights = hashlib.sha256()
    for path in sorted((PACKAGE_DIR.parent / "weights").glob("*.[np][pt]*")):
        weights.update(path.name.encode() + path.read_bytes())
    return f"{_digest_files(files)}+{weights.hexdigest()[:12]}"


def _key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _config_dict(config) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}


def _cached(path: Path, key: str, compute, force: bool = False) -> tuple[Artifact, bool]:
    """The artifact at `path` if its meta carries `key`, else compute(), stamp, save. (artifact, reused?)"""
    if path.is_file() and not force:
        try:
            artifact = load_artifact(path)
            if artifact.meta.get("videobench_key") == key:
                return artifact, True
        except BadInput:
            pass  # damaged: recompute
    artifact = compute()
    artifact.meta["videobench_key"] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    save_artifact(artifact, path)
    return artifact, False


def _link(source: Path, target: Path) -> None:
    """target becomes the same file as source (hard link; a copy where links are not possible)."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def run_clip(video: Path, focal: float | None, name: str, split_dir: Path, tag: str, estimate_overrides: dict,
             refine_overrides: dict, force: bool = False) -> tuple[dict[str, Artifact], dict[str, bool]]:
    """Run (or reuse) detect, estimate and refine on one clip with the true focal length, or with focal None
    as a user who gives none (detect's default field of view).

    Returns ({stage: artifact}, {stage: reused?}) for detect, estimate, refine."""
    from handcli.handmodels import hand_model_files
    from handcli.cache import weights_digests
    from handcli.stages.detect import DetectConfig, detect_file
    from handcli.stages.estimate import EstimateConfig, estimate
    from handcli.stages.refine import RefineConfig, refine
    from handcli.diffusion.weights import default_weights_path

    detect_config = DetectConfig(focal=focal)
    estimate_config = EstimateConfig(**estimate_overrides)
    refine_config = RefineConfig(**refine_overrides)
    variant_dir = split_dir / tag
    variant_dir.mkdir(parents=True, exist_ok=True)
    out, reused = {}, {}

    detect_key = _key({"video": file_digest(video), "config": _config_dict(detect_config),
                       "code": detect_code_digest()})
    # detections with the assumed focal length have their own folder: one cache per clip and camera model
    detect_path = split_dir / ("detect" if focal is not None else "detect_assumed_focal") / f"{name}_detect.npz"
    out["detect"], reused["detect"] = _cached(detect_path, detect_key, lambda: detect_file(video, detect_config),
                                              force)
    _link(detect_path, variant_dir / f"{name}_detect.npz")

    weights = weights_digests({
        "refiner": Path(refine_config.weights or default_weights_path()),
        **{f"estimate_{k}": v for k, v in hand_model_files(estimate_config.hand_model, estimate_config.mano_dir).items()},
        **hand_model_files(refine_config.hand_model, refine_config.mano_dir)})
    estimate_key = _key({"detect": detect_key, "config": _config_dict(estimate_config), "weights": weights,
                         "code": pipeline_code_digest()})
    out["estimate"], reused["estimate"] = _cached(
        variant_dir / f"{name}_estimate.npz", estimate_key, lambda: estimate(out["detect"], estimate_config), force)
    refine_key = _key({"estimate": estimate_key, "config": _config_dict(refine_config)})
    out["refine"], reused["refine"] = _cached(
        variant_dir / f"{name}_refine.npz", refine_key, lambda: refine(out["estimate"], refine_config), force)
    return out, reused
