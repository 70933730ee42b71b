"""Rerun recording (.rrd): open with `rerun FILE.rrd` (rerun-sdk, the `export` extra). docs/export.md lists the
entities; in short, on the timelines `frame` (artifact frame) and `time` (frame / fps):

* `world` declares its axes (camera frame: RDF, x right, y down, z forward; world-up: RUB).
* `world/camera` (with intrinsics K): a pinhole at the origin, its image plane `world/camera/image` showing
  the `--video` frames (JPEG) and each track's 2D keypoints (`world/camera/image/keypoints2d/track{h}`,
  skeleton lines from the annotation context).
* `world/hands/track{h}/keypoints` (Points3D, 21 keypoints with skeleton) and `world/hands/track{h}/mesh`
  (Mesh3D, the hand model posed per frame); coloured by the standard deviation (viridis, mm) when the
  artifact has variance, else by the track's colour. Frames where the track is not `valid` clear the hand.
* `plots/track{h}/std_mm` (RMS standard deviation over the joints, mm) and `plots/threshold_mm`; frames whose
  score is above the threshold (2x the clip's median, as `handcli render --variance`) are flagged with a
  warning in `flags` (a text log); frames the refiner infilled (`observed` False) are logged there as info.
"""

from __future__ import annotations

import numpy as np

from handcli.artifacts import Artifact
from handcli.errors import BadInput
from handcli.export.common import TrackMotion, TrackRig, model_vertices, std_mm
from handcli.handmodels.kinematics import CANONICAL_PARENTS

RERUN_EXTRA = "export"
APPLICATION_ID = "handcli"
KEYPOINT_RADIUS = 0.003  # metres
JPEG_QUALITY = 85
CHUNK_FRAMES = 128  # hand meshes are posed this many frames at a time


def require_rerun():
    try:
        import rerun  # noqa: F401
    except ImportError:
        raise BadInput(f"writing .rrd needs rerun-sdk: pip install 'handcli[{RERUN_EXTRA}]'") from None


def write_rrd(path, artifact: Artifact, model, rigs: dict[int, TrackRig], motions: dict[int, TrackMotion],
              frame_rotation: np.ndarray, frame_name: str, video=None, notify=None) -> None:
    """Write the recording to `path` (a temporary name; the caller renames it into place)."""
    import rerun as rr
    from rerun.error_utils import set_strict_mode, strict_mode

    # strict: a value rerun cannot convert raises (and the export fails, leaving no file) instead of being
    # dropped with a warning from an otherwise "successful" export
    previous = strict_mode()
    set_strict_mode(True)
    try:
        _write(rr, path, artifact, model, rigs, motions, frame_rotation, frame_name, video, notify)
    finally:
        set_strict_mode(previous)


def _write(rr, path, artifact, model, rigs, motions, frame_rotation, frame_name, video, notify) -> None:
    from handcli.render.colours import colour_lut, map_values, track_colours
    from handcli.render.hands import HandMeshes
    from handcli.render.scene import VertexNormals

    rec = rr.RecordingStream(APPLICATION_ID, send_properties=False)
    rec.save(str(path))
    C = frame_rotation
    tracks = sorted(motions)
    T = artifact.num_frames
    colours = track_colours(artifact.is_right)

    rec.log("world", rr.ViewCoordinates.RDF if frame_name == "camera" else rr.ViewCoordinates.RUB, static=True)
    # skeleton bones as line strips (rerun-sdk 0.23's keypoint-connection annotations need numpy 2)
    bones = np.array([(p, c) for c, p in enumerate(CANONICAL_PARENTS) if p >= 0])  # (20, 2) keypoint ids
    image_entity = None
    if artifact.K is not None:
        width, height = (artifact.image_size.tolist() if artifact.image_size is not None
                         else (2 * float(artifact.K[0, 2]), 2 * float(artifact.K[1, 2])))
        rec.log("world/camera", rr.Transform3D(mat3x3=C), static=True)
        rec.log("world/camera/image", rr.Pinhole(image_from_camera=np.asarray(artifact.K, np.float64),
                                                 resolution=[width, height], camera_xyz=rr.ViewCoordinates.RDF),
                static=True)
        image_entity = "world/camera/image"

    # variance: colour scale and flagged frames, as render --variance defines them
    view = None
    if artifact.var_joints is not None or artifact.var_vertices is not None:
        from handcli.stages.render import variance_view

        view = variance_view(artifact, None)
    lut = colour_lut("viridis")
    meshes = HandMeshes(model, artifact)
    spreads = ({h: meshes.joint_spread(h) for h in tracks}
               if (view is not None and artifact.var_vertices is None) else {})

    normals = {}
    for h in tracks:
        faces = rigs[h].faces.astype(np.uint32)
        normals[h] = VertexNormals(rigs[h].faces, len(rigs[h].vertices))
        rec.log(f"world/hands/track{h}/mesh", rr.Mesh3D.from_fields(triangle_indices=faces), static=True)

    frame_ids = artifact.frame_index if artifact.frame_index is not None else np.arange(T)
    flagged = 0
    for start in range(0, T, CHUNK_FRAMES):
        stop = min(start + CHUNK_FRAMES, T)
        posed = {h: model_vertices(model, motions[h], artifact.betas[h], bool(artifact.is_right[h]),
                                   np.arange(start, stop)) @ C.T for h in tracks}
        for t in range(start, stop):
            rec.set_time("frame", sequence=t)
            rec.set_time("time", duration=t / artifact.fps)
            if view is not None:
                score = view.frame_scores[t]
                if np.isfinite(score):
                    rec.log("plots/threshold_mm", rr.Scalars([view.threshold]))
                    if score > view.threshold:
                        flagged += 1
                        rec.log("flags", rr.TextLog(f"frame {t}: RMS standard deviation {score:.1f} mm is above "
                                                    f"the threshold {view.threshold:.1f} mm",
                                                    level=rr.TextLogLevel.WARN))
            for h in tracks:
                base = f"world/hands/track{h}"
                motion = motions[h]
                if not motion.valid[t]:
                    if t == 0 or motion.valid[t - 1]:
                        rec.log(base, rr.Clear(recursive=True))
                        if image_entity is not None:
                            rec.log(f"{image_entity}/keypoints2d/track{h}", rr.Clear(recursive=True))
                    continue
                if not motion.observed[t]:
                    rec.log("flags", rr.TextLog(f"frame {t}: track {h} infilled (not observed)",
                                                level=rr.TextLogLevel.INFO))
                if artifact.beyond_calibration is not None and artifact.beyond_calibration[h, t]:
                    rec.log("flags", rr.TextLog(f"frame {t}: track {h} error bars extrapolate the calibration "
                                                "(beyond_calibration)", level=rr.TextLogLevel.WARN))
                keypoints = np.asarray(artifact.keypoints3d[h, t], np.float64) @ C.T
                vertex_rgb = joint_rgb = None
                if view is not None:
                    joint_std = std_mm(artifact.var_joints[h, t]) if artifact.var_joints is not None else None
                    vertex_var = (artifact.var_vertices[h, t] if artifact.var_vertices is not None
                                  else spreads[h] @ artifact.var_joints[h, t])
                    vertex_rgb = map_values(std_mm(vertex_var), 0.0, view.vmax, lut)
                    if joint_std is not None:
                        joint_rgb = map_values(joint_std, 0.0, view.vmax, lut)
                        rec.log(f"plots/track{h}/std_mm", rr.Scalars([float(np.sqrt(np.mean(joint_std ** 2)))]))
                rec.log(f"{base}/keypoints", rr.Points3D(
                    keypoints, radii=KEYPOINT_RADIUS, colors=_rgb8(joint_rgb if joint_rgb is not None else colours[h])))
                rec.log(f"{base}/bones", rr.LineStrips3D(keypoints[bones], radii=KEYPOINT_RADIUS / 3,
                                                          colors=_rgb8(colours[h])))
                vertices = posed[h][t - start]
                rec.log(f"{base}/mesh", rr.Mesh3D.from_fields(
                    vertex_positions=vertices.astype(np.float32), vertex_normals=normals[h](vertices),
                    vertex_colors=_rgb8(vertex_rgb if vertex_rgb is not None else
                                        np.broadcast_to(colours[h], vertices.shape))))
                if image_entity is not None and artifact.keypoints2d is not None:
                    pixels = np.asarray(artifact.keypoints2d[h, t, :, :2], np.float64)
                    rec.log(f"{image_entity}/keypoints2d/track{h}/points", rr.Points2D(pixels, radii=2.0,
                                                                                       colors=_rgb8(colours[h])))
                    rec.log(f"{image_entity}/keypoints2d/track{h}/bones", rr.LineStrips2D(pixels[bones], radii=1.0,
                                                                                          colors=_rgb8(colours[h])))
    if video is not None:
        _log_video(rec, video, frame_ids, artifact, notify)
    if flagged and notify is not None:
        notify(f"{flagged} frame(s) flagged (RMS standard deviation above {view.threshold:.1f} mm)")
    rec.flush(blocking=True)
    rec.disconnect()


def _rgb8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(rgb) * 255), 0, 255).astype(np.uint8)


def check_video(video, artifact: Artifact):
    """Probe --video before any work; BadInput when it cannot go under this artifact's 2D view."""
    from handcli.video import probe_video

    if artifact.K is None:
        raise BadInput("--video: the input has no camera intrinsics (K), so its frames cannot be placed "
                       "under the hands; export without --video")
    info = probe_video(video, artifact.fps)
    if artifact.image_size is not None and (info.width, info.height) != tuple(int(v) for v in artifact.image_size):
        raise BadInput(f"--video: the input was made from a {int(artifact.image_size[0])}x{int(artifact.image_size[1])}"
                       f" video, {video} is {info.width}x{info.height}")
    return info


def _log_video(rec, info, frame_ids: np.ndarray, artifact: Artifact, notify) -> None:
    """The video frames the artifact covers, JPEG-compressed, on the artifact's frame timeline."""
    import cv2
    import rerun as rr

    from handcli.video import iter_frames

    wanted = {int(v): t for t, v in enumerate(np.asarray(frame_ids).tolist())}
    last = max(wanted)
    logged = 0
    for index, rgb in enumerate(iter_frames(info)):
        if index > last:
            break
        t = wanted.get(index)
        if t is None:
            continue
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise BadInput(f"{info.path}: cannot encode frame {index} as JPEG")
        rec.set_time("frame", sequence=t)
        rec.set_time("time", duration=t / artifact.fps)
        rec.log("world/camera/image", rr.EncodedImage(contents=jpeg.tobytes(), media_type="image/jpeg"))
        logged += 1
    if logged < len(wanted) and notify is not None:
        notify(f"--video: only {logged} of the input's {len(wanted)} frames were found in {info.path}")
