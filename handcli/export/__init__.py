"""`handcli export`: an artifact's hands as glTF 2.0 (.glb/.gltf), BVH, a Rerun recording (.rrd), CSV or
Parquet (docs/export.md). One module per format; `common` holds the rig, the motion and the frame conversion.

Everything that can be wrong is checked before the work: the format (from the suffix, or `--format`), the
output path, the track, the hand-model parameters, the hand model itself and `--video`. Every file is
written to a temporary name in the target directory and renamed into place at the end (all files of a
multi-track BVH export together), so a failure leaves nothing half-written.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from handcli.artifacts import Artifact, atomic_path
from handcli.errors import BadInput

# suffix -> format name
SUFFIXES = {".glb": "glb", ".gltf": "gltf", ".bvh": "bvh", ".rrd": "rrd", ".csv": "csv", ".parquet": "parquet"}
FORMATS = ("glb", "gltf", "bvh", "rrd", "csv", "parquet")
# the output frame when --frame is not given: glTF and BVH tools expect y up; tables and Rerun keep the
# artifact's camera frame (Rerun is told the axes, so it shows the hands upright anyway)
DEFAULT_FRAMES = {"glb": "world-up", "gltf": "world-up", "bvh": "world-up", "rrd": "camera", "csv": "camera",
                  "parquet": "camera"}


@dataclass
class ExportConfig:
    out: Path
    format: str | None = None  # default: from the suffix of `out`
    track: int | None = None  # default: every track with usable parameters
    frame: str | None = None  # camera | world-up; default per format (DEFAULT_FRAMES)
    video: Path | None = None  # .rrd: the video the input was made from, shown under the hands
    hand_model: str | None = None  # default: the artifact's meta.hand_model, else "open"
    mano_dir: Path | None = None
    colours: bool = True  # glTF: vertex colours from the variance when the input has it


@dataclass
class ExportResult:
    paths: list[Path]
    format: str
    frame: str
    tracks: list[int]
    frames: int
    seconds: float
    notes: list[str] = field(default_factory=list)


def output_format(out: Path, fmt: str | None) -> str:
    """The format to write: `fmt` if given, else from the suffix; BadInput for formats we do not write."""
    if fmt is not None:
        name = fmt.lower().lstrip(".")
        if name not in FORMATS:
            raise BadInput(f"--format: cannot write {fmt!r} (choose from {', '.join(FORMATS)})")
        return name
    name = SUFFIXES.get(out.suffix.lower())
    if name is None:
        raise BadInput(f"{out}: cannot tell the format from the suffix {out.suffix or '(none)'!r} (write "
                       f"{', '.join(SUFFIXES)}, or pass --format)")
    return name


def check_output_path(out: Path) -> None:
    directory = out.parent if str(out.parent) else Path(".")
    if not directory.is_dir():
        raise BadInput(f"{out}: output directory {directory} does not exist")
    if out.is_dir():
        raise BadInput(f"{out}: is a directory; give a file name")


def bvh_paths(out: Path, tracks: list[int], single: bool) -> dict[int, Path]:
    """One BVH file per track: `out` itself for a single requested track (--track) or a one-track input,
    else `<stem>_track<h><suffix>` beside it (h: the track's index in the artifact)."""
    if single:
        return {tracks[0]: out}
    return {h: out.with_name(f"{out.stem}_track{h}{out.suffix}") for h in tracks}


def export_file(input: str | Path, config: ExportConfig, notify: Callable[[str], None] | None = None) -> ExportResult:
    """Load any supported input and write it in the requested format."""
    from handcli.inputs import load_input

    out = Path(config.out)
    fmt = output_format(out, config.format)
    check_output_path(out)
    if config.video is not None and fmt != "rrd":
        raise BadInput(f"--video: only .rrd exports show the video (not .{fmt})")
    if Path(input).exists() and out.exists() and out.resolve() == Path(input).resolve():
        raise BadInput(f"{out}: is the input; write the export to another file")
    _check_format_dependencies(fmt)
    artifact, _ = load_input(input)
    return export_artifact(artifact, config, notify=notify, source=str(input))


def export_artifact(artifact: Artifact, config: ExportConfig, notify: Callable[[str], None] | None = None,
                    source: str = "input") -> ExportResult:
    """Write `artifact` as `config` asks. Raises BadInput (one line) before writing anything when the request
    cannot be met."""
    from handcli.export import common
    from handcli.handmodels import load_hand_model

    started = time.perf_counter()
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        if notify is not None:
            notify(message)

    out = Path(config.out)
    fmt = output_format(out, config.format)
    check_output_path(out)
    _check_format_dependencies(fmt)
    frame = config.frame or DEFAULT_FRAMES[fmt]
    rotation = common.frame_rotation(frame)
    common.require_params(artifact, source)
    H = artifact.num_tracks
    if config.track is not None and not 0 <= config.track < H:
        raise BadInput(f"--track {config.track}: the input has {H} track(s) (0..{H - 1})")
    requested = [config.track] if config.track is not None else list(range(H))
    motions: dict[int, common.TrackMotion] = {}
    for h in requested:
        motion = common.track_motion(artifact, h)
        if motion is None:
            if config.track is not None:
                raise BadInput(f"--track {h}: has no frame with finite hand-model parameters")
            note(f"track {h} has no frame with finite hand-model parameters: left out")
            continue
        motions[h] = motion
    if not motions:
        raise BadInput(f"{source}: no track has a frame with finite hand-model parameters")
    tracks = sorted(motions)
    video_info = None
    if config.video is not None:
        if fmt != "rrd":
            raise BadInput(f"--video: only .rrd exports show the video (not .{fmt})")
        from handcli.export.rrd import check_video

        video_info = check_video(config.video, artifact)

    model = None
    rigs: dict[int, common.TrackRig] = {}
    if fmt in ("glb", "gltf", "bvh", "rrd"):
        name = config.hand_model or artifact.meta.get("hand_model") or "open"
        model = load_hand_model(name, config.mano_dir)
        common.check_betas(artifact, model)
        if artifact.var_vertices is not None and artifact.var_vertices.shape[-1] != model.num_vertices:
            raise BadInput(f"var_vertices: {artifact.var_vertices.shape[-1]} vertices per frame but hand model "
                           f"'{model.name}' has {model.num_vertices} (was it made with another --hand-model?)")
        rigs = {h: common.track_rig(model, artifact.betas[h], bool(artifact.is_right[h]), h) for h in tracks}
        if model.posedirs.numel() and fmt != "rrd":
            note(f"hand model '{model.name}' has pose blend shapes, which .{fmt} cannot carry: the exported mesh is "
                 "skinned only (a few mm from the model on strongly bent fingers)")
        if fmt == "bvh" and not all(rig.tips_rigid for rig in rigs.values()):
            note("the model's fingertip vertices are not bound to one joint only: BVH end sites approximate them")

    if fmt == "bvh":
        targets = bvh_paths(out, tracks, single=config.track is not None or H == 1)
    else:
        targets = {-1: out}
    for path in targets.values():
        check_output_path(path)

    with ExitStack() as stack:  # every file renamed into place only when all were written
        temporaries = {key: stack.enter_context(atomic_path(path)) for key, path in targets.items()}
        if fmt in ("glb", "gltf"):
            _write_gltf(artifact, model, rigs, motions, rotation, frame, config, temporaries[-1], fmt == "glb")
        elif fmt == "bvh":
            from handcli.export.bvh import bvh_text

            for h, tmp in temporaries.items():
                tmp.write_text(bvh_text(rigs[h], motions[h], artifact.fps, rotation))
        elif fmt == "rrd":
            from handcli.export.rrd import write_rrd

            write_rrd(temporaries[-1], artifact, model, rigs, motions, rotation, frame, video=video_info, notify=note)
        else:
            from handcli.export import table

            columns = table.table_columns(artifact, motions, rotation)
            (table.write_csv if fmt == "csv" else table.write_parquet)(columns, temporaries[-1])
    return ExportResult(list(targets.values()), fmt, frame, tracks, artifact.num_frames,
                        time.perf_counter() - started, notes)


def _check_format_dependencies(fmt: str) -> None:
    if fmt == "rrd":
        from handcli.export.rrd import require_rerun

        require_rerun()
    elif fmt == "parquet":
        from handcli.export.table import require_pyarrow

        require_pyarrow()


def _write_gltf(artifact: Artifact, model, rigs, motions, rotation: np.ndarray, frame: str, config: ExportConfig,
                path: Path, binary: bool) -> None:
    from handcli.export.gltf import GltfTrack, build_gltf, write_gltf

    colours = {}
    if config.colours and (artifact.var_vertices is not None or artifact.var_joints is not None):
        colours = _static_variance_colours(artifact, model, motions)
    tracks = []
    for h in sorted(motions):
        side = "right" if artifact.is_right[h] else "left"
        motion = motions[h]
        extras = {"track": h, "is_right": bool(artifact.is_right[h]), "fps": float(artifact.fps),
                  "valid": motion.valid.astype(int).tolist(), "observed": motion.observed.astype(int).tolist()}
        if artifact.track_id is not None:
            extras["track_id"] = int(artifact.track_id[h])
        if artifact.beyond_calibration is not None:  # frames whose error bars extrapolate (docs/variance.md)
            extras["extrapolated"] = artifact.beyond_calibration[h].astype(int).tolist()
        if h in colours:
            extras["colour"] = colours[h][1]
        tracks.append(GltfTrack(rigs[h], motion, f"hand{h}_{side}", f"hand{h}",
                                colours[h][0] if h in colours else None, extras))
    scene_extras = {"frame": frame, "camera_to_frame": rotation.tolist(), "units": "metres",
                    "hand_model": model.name, "source_stage": artifact.meta.get("stage")}
    gltf, data = build_gltf(tracks, artifact.fps, rotation, "world_up" if frame == "world-up" else "camera_frame",
                            scene_extras)
    write_gltf(gltf, data, path, binary)


def _static_variance_colours(artifact: Artifact, model, motions) -> dict[int, tuple[np.ndarray, dict]]:
    """track -> (vertex colours (V, 3) sRGB, a note for extras): each vertex's standard deviation averaged
    (RMS) over the track's valid frames, on a viridis scale from 0 to the 99th percentile over all tracks.
    glTF vertex colours cannot change over time; the per-frame values are in the .rrd and table exports."""
    from handcli.export.common import std_mm, vertex_variance
    from handcli.render.colours import colour_lut, map_values
    from handcli.render.hands import HandMeshes

    meshes = HandMeshes(model, artifact)
    std = {}
    for h, motion in motions.items():
        spread = meshes.joint_spread(h) if artifact.var_vertices is None else None
        variance = vertex_variance(artifact, h, spread)
        frames = motion.valid & np.isfinite(variance).all(1)
        if frames.any():
            std[h] = std_mm(variance[frames].mean(0))
    if not std:
        return {}
    vmax = max(float(np.percentile(np.concatenate(list(std.values())), 99)), 1e-3)
    lut = colour_lut("viridis")
    source = "var_vertices" if artifact.var_vertices is not None else "var_joints"
    return {h: (map_values(values, 0.0, vmax, lut),
                {"map": "viridis", "quantity": f"standard deviation (mm) from {source}, RMS over valid frames",
                 "min_mm": 0.0, "max_mm": vmax}) for h, values in std.items()}
