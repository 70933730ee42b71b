"""render: projection, depth order, backend choice, video in = video out, atomic writes, one-line errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from handcli.artifacts import Artifact, save_artifact
from handcli.errors import BadInput
from handcli.render.backends import make_renderer
from handcli.render.camera import follow_offsets, gl_projection, project
from handcli.render.colours import track_colours
from handcli.render.painter import PainterRenderer
from handcli.render.scene import Mesh
from handcli.stages import render as stage
from tests.conftest import assert_one_line_error, run_cli

K = np.array([[200.0, 0, 79.5], [0, 200.0, 59.5], [0, 0, 1]])
WIDTH, HEIGHT = 160, 120


def gl_or_skip(width: int = WIDTH, height: int = HEIGHT):
    try:
        return make_renderer(width, height, "gl")
    except BadInput as error:
        pytest.skip(f"no OpenGL here: {error.message}")


def renderer_for(backend: str):
    return gl_or_skip() if backend == "gl" else PainterRenderer(WIDTH, HEIGHT)


def square(centre, half: float) -> tuple[np.ndarray, np.ndarray]:
    """Two triangles: a square of side 2*half facing the camera at `centre` (3,)."""
    corners = np.array([[-half, -half, 0], [half, -half, 0], [half, half, 0], [-half, half, 0]]) + centre
    return corners, np.array([[0, 1, 2], [0, 2, 3]])


def coverage(layer, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Full-image (H, W) float coverage in [0, 1] from a Layer."""
    full = np.zeros((height, width))
    h, w = layer.rgba.shape[:2]
    full[layer.y0: layer.y0 + h, layer.x0: layer.x0 + w] = layer.rgba[..., 3] / 255.0
    return full


# --------------------------------------------------------------------------------------------- projection
def test_project_known_point():
    pixels, depth = project(np.array([[0.05, -0.02, 0.5]]), K)
    assert np.allclose(pixels[0], [200 * 0.1 + 79.5, 200 * -0.04 + 59.5])
    assert depth[0] == 0.5


def test_gl_projection_matches_opencv_pixels():
    """The clip-space matrix maps a point to the NDC of the pixel OpenCV projects it to."""
    point = np.array([0.03, 0.02, 0.7, 1.0])
    clip = gl_projection(K, WIDTH, HEIGHT) @ point
    ndc = clip[:2] / clip[3]
    (u, v), _ = project(point[:3], K)
    assert np.allclose(ndc, [(2 * u + 1) / WIDTH - 1, (2 * v + 1) / HEIGHT - 1])


@pytest.mark.parametrize("backend", ["painter", "gl"])
def test_square_lands_on_projected_pixel(backend):
    """A 2 cm square centred on a known camera-frame point is drawn centred on that point's pixel."""
    renderer = renderer_for(backend)
    centre = np.array([0.04, -0.03, 0.5])
    vertices, faces = square(centre, 0.01)
    layer = renderer.render([Mesh(vertices, faces, np.array([1.0, 0.0, 0.0]))], K)
    mask = coverage(layer)
    rows, cols = np.nonzero(mask > 0.5)
    (u, v), _ = project(centre, K)
    assert abs(cols.mean() - u) <= 0.5 and abs(rows.mean() - v) <= 0.5, (cols.mean(), rows.mean(), u, v)
    # 2 cm at 0.5 m with f = 200 px: 8 x 8 pixels (GL's fill rule); OpenCV also fills pixels whose centres lie
    # exactly on the edges, 9 x 9
    assert 64 - 4 <= mask.sum() <= 81, mask.sum()
    renderer.release()


@pytest.mark.parametrize("backend", ["painter", "gl"])
@pytest.mark.parametrize("near_first", [True, False])
def test_near_triangle_wins(backend, near_first):
    renderer = renderer_for(backend)
    near_vertices, faces = square([0.0, 0.0, 0.5], 0.02)
    far_vertices, _ = square([0.0, 0.0, 1.0], 0.2)
    near = Mesh(near_vertices, faces, np.array([0.0, 1.0, 0.0]))
    far = Mesh(far_vertices, faces, np.array([1.0, 0.0, 0.0]))
    layer = renderer.render([near, far] if near_first else [far, near], K)
    colour = layer.rgba[int(round(59.5)) - layer.y0, int(round(79.5)) - layer.x0]
    assert colour[1] > 100 and colour[0] == 0, colour  # green (near), lit, not red
    corner = layer.rgba[5, 5]  # far square only
    assert corner[0] > 100 and corner[1] == 0, corner
    renderer.release()


def test_backends_agree_on_hand_silhouette():
    """GL and painter draw the same mesh at the same place (intersection over union of the silhouettes)."""
    gl = gl_or_skip(320, 240)
    artifact = hand_artifact(1)
    meshes = mesh_source(artifact)
    big_K = K * np.array([[2], [2], [1]])
    vertices = meshes.frame(0)[0]
    hand = Mesh(vertices, meshes.faces[0], np.array([0.5, 0.5, 0.5]), outward=True)
    masks = [coverage(r.render([hand], big_K), 320, 240) > 0.5 for r in (gl, PainterRenderer(320, 240))]
    iou = (masks[0] & masks[1]).sum() / (masks[0] | masks[1]).sum()
    assert masks[0].sum() > 2000 and iou > 0.95, (masks[0].sum(), iou)


# ------------------------------------------------------------------------------------------ backend choice
def test_falls_back_to_painter_without_gl(monkeypatch):
    import moderngl

    def no_context(*args, **kwargs):
        raise RuntimeError("cannot open display (simulated)")

    monkeypatch.setattr(moderngl, "create_standalone_context", no_context)
    notices: list[str] = []
    renderer = make_renderer(WIDTH, HEIGHT, "auto", notices.append)
    assert isinstance(renderer, PainterRenderer)
    assert len(notices) == 1 and "painter" in notices[0] and "\n" not in notices[0]
    with pytest.raises(BadInput, match="no OpenGL context"):
        make_renderer(WIDTH, HEIGHT, "gl")


def test_falls_back_when_moderngl_is_missing(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "moderngl", None)  # import now raises ImportError
    notices: list[str] = []
    assert make_renderer(WIDTH, HEIGHT, "auto", notices.append).name == "painter"
    assert len(notices) == 1


def test_gl_is_chosen_when_available():
    notices: list[str] = []
    gl_or_skip()
    assert make_renderer(WIDTH, HEIGHT, "auto", notices.append).name == "gl" and notices == []


# ----------------------------------------------------------------------------------------- whole renders
def hand_artifact(num_tracks: int = 1, num_frames: int = 12, with_params: bool = True, variance: bool = False,
                  frame_index: np.ndarray | None = None) -> Artifact:
    """Open hands 0.5 m in front of the camera, palm to it, fingers up, slowly closing; track 1 is a left hand."""
    from handcli.handmodels import load_hand_model

    model = load_hand_model("open")
    # rest frame: fingers -x, palm -y -> camera: fingers up (-y), palm to the camera (-z)
    orient = torch.tensor([1.2092, 1.2092, 1.2092])
    keypoints3d = np.zeros((num_tracks, num_frames, 21, 3), np.float32)
    global_orient = np.tile(orient.numpy(), (num_tracks, num_frames, 1)).astype(np.float32)
    hand_pose = np.zeros((num_tracks, num_frames, 15, 3), np.float32)
    hand_pose[:, :, :12, 2] = np.linspace(0, 0.5, num_frames)[None, :, None]
    transl = np.zeros((num_tracks, num_frames, 3), np.float32)
    is_right = np.array([h % 2 == 0 for h in range(num_tracks)])
    for h in range(num_tracks):
        transl[h] = [0.06 * (1 if is_right[h] else -1) if num_tracks > 1 else 0.0, 0.05, 0.5]
    betas = np.zeros((num_tracks, 10), np.float32)
    with torch.no_grad():
        for h in range(num_tracks):
            keypoints3d[h] = model(torch.tensor(global_orient[h]), torch.tensor(hand_pose[h]),
                                   torch.zeros(num_frames, 10), torch.tensor(transl[h]), bool(is_right[h])).joints
    fields = dict(keypoints3d=keypoints3d, valid=np.ones((num_tracks, num_frames), bool), is_right=is_right,
                  fps=15.0, K=K.astype(np.float32), image_size=np.array([WIDTH, HEIGHT]), frame_index=frame_index,
                  meta={"stage": "refine", "hand_model": "open"})
    if with_params:
        fields.update(global_orient=global_orient, hand_pose=hand_pose, transl=transl, betas=betas)
    if variance:
        var_joints = np.full((num_tracks, num_frames, 21), (2e-3) ** 2, np.float32)
        var_joints[:, num_frames // 2] = (12e-3) ** 2  # one clearly uncertain frame
        fields["var_joints"] = var_joints
    return Artifact(**fields)


def mesh_source(artifact: Artifact):
    from handcli.handmodels import load_hand_model
    from handcli.render.hands import HandMeshes

    return HandMeshes(load_hand_model("open"), artifact)


def make_video(path: Path, num_frames: int = 12, fps: float = 15.0) -> Path:
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), (WIDTH, HEIGHT), fps=fps, codec="libx264",
                                         macro_block_size=2, ffmpeg_log_level="error")
    writer.send(None)
    for index in range(num_frames):
        frame = np.full((HEIGHT, WIDTH, 3), 200, np.uint8)
        frame[:, : 10 * (index + 1)] = 60  # moving edge: frames differ
        writer.send(frame)
    writer.close()
    return path


def read_video(path: Path) -> tuple[dict, list[np.ndarray]]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(raw, np.uint8).reshape(height, width, 3) for raw in reader]
    return meta, frames


@pytest.fixture
def scene(tmp_path):
    artifact_path = tmp_path / "motion.npz"
    save_artifact(hand_artifact(), artifact_path)
    return artifact_path, make_video(tmp_path / "clip.mp4")


def test_video_keeps_frame_count_and_fps(scene, tmp_path):
    artifact_path, video = scene
    out = tmp_path / "overlay.mp4"
    result = stage.render_file(artifact_path, stage.RenderConfig(out=out, video=video, backend="painter"))
    meta, frames = read_video(out)
    assert result.frames == 12 and len(frames) == 12
    assert meta["fps"] == pytest.approx(15.0) and tuple(meta["size"]) == (WIDTH, HEIGHT)
    # the hand is drawn where its wrist projects (blue over the grey frame), and nowhere near the corner
    (u, v), _ = project(hand_artifact().keypoints3d[0, 0, 9], K)  # middle-finger knuckle
    pixel = frames[0][int(v), int(u)].astype(int)
    assert pixel[2] > pixel[0] + 40, pixel
    assert np.abs(frames[0][2, WIDTH - 3].astype(int) - 200).max() < 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "motion.npz", "overlay.mp4"]


def test_frame_index_rule(tmp_path):
    """With frame_index, artifact frames go on those video frames; the rest pass through unchanged."""
    artifact = hand_artifact(num_frames=6, frame_index=np.arange(0, 12, 2))
    path = tmp_path / "motion.npz"
    save_artifact(artifact, path)
    video = make_video(tmp_path / "clip.mp4")
    out = tmp_path / "overlay.mp4"
    stage.render_file(path, stage.RenderConfig(out=out, video=video, backend="painter"))
    _, frames = read_video(out)
    _, originals = read_video(video)
    assert len(frames) == 12
    difference = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames, originals)]
    assert all(difference[i] > 2 for i in range(0, 12, 2)), difference
    assert all(difference[i] < 1 for i in range(1, 12, 2)), difference
    assert np.array_equal(stage.frame_map(artifact, 12), [0, -1, 1, -1, 2, -1, 3, -1, 4, -1, 5, -1])
    with pytest.raises(BadInput, match="frame_index"):
        stage.frame_map(artifact, 10)


def test_still_without_video_follows_the_hand(tmp_path):
    """No video: the hand sits at the centre of the canvas on the neutral background, whatever its position."""
    artifact = hand_artifact()
    artifact.transl[:] += np.array([0.3, -0.2, 0.4], np.float32)  # far off-centre in the real camera
    artifact.keypoints3d[:] += np.array([0.3, -0.2, 0.4], np.float32)
    path = tmp_path / "motion.npz"
    save_artifact(artifact, path)
    out = tmp_path / "still.png"
    stage.render_file(path, stage.RenderConfig(out=out, frame=5, size=(320, 240), backend="painter"))
    image = cv2.imread(str(out))[..., ::-1].astype(int)
    background = stage._background(320, 240).astype(int)
    rows, cols = np.nonzero(np.abs(image - background).max(-1) > 30)
    assert abs(cols.mean() - 160) < 40 and abs(rows.mean() - 120) < 40, (cols.mean(), rows.mean())
    assert 0.05 < len(rows) / (320 * 240) < 0.6  # fills a good part of the canvas, not all of it


def test_follow_offsets_interpolate_and_smooth():
    keypoints3d = np.zeros((1, 30, 21, 3), np.float32)
    keypoints3d[0, :, :, 0] = np.linspace(-0.1, 0.1, 30)[:, None]
    keypoints3d[0, :, :, 2] = 0.6
    valid = np.ones((1, 30), bool)
    valid[0, 10:15] = False
    offsets = follow_offsets(keypoints3d, valid, 30.0, K, WIDTH, HEIGHT)
    assert np.isfinite(offsets).all() and offsets.shape == (30, 3)
    assert np.allclose(offsets[:, 2], offsets[0, 2])  # one distance for the whole clip
    assert np.abs(keypoints3d[0, 5:25, 0, 0] + offsets[5:25, 0]).max() < 0.01  # centred away from the ends


def test_variance_flags_uncertain_frame(tmp_path):
    path = tmp_path / "motion.npz"
    save_artifact(hand_artifact(variance=True), path)
    red_border = []
    for frame in (2, 6):
        out = tmp_path / f"still{frame}.png"
        result = stage.render_file(path, stage.RenderConfig(out=out, frame=frame, variance=True, backend="painter"))
        image = cv2.imread(str(out))[..., ::-1].astype(int)
        edge = image[1, 40:120]
        red_border.append(bool(((edge[:, 0] > 180) & (edge[:, 1] < 90)).all()))
    assert result.flagged == 1 and result.threshold_mm == pytest.approx(4.0, rel=1e-3)
    assert red_border == [False, True]


def test_the_video_check_compares_with_the_video_detect_read(tmp_path):
    """A later stage's `inputs` is the artifact file it read: the check must not take that for the video (it
    warned on every `handcli variance -i refined.npz` output), and must still catch another video."""
    from handcli.artifacts import make_meta
    from handcli.video import video_digest

    video, other = make_video(tmp_path / "clip.mp4"), make_video(tmp_path / "other.mp4", fps=10.0)
    detect = make_meta("detect", inputs={"video": str(video), "sha256": video_digest(video)})
    meta = make_meta("variance", inputs={"input": "refined.npz", "sha256": "0" * 64},
                     previous=make_meta("refine", previous=make_meta("estimate", previous=detect)))
    path = tmp_path / "motion.npz"
    save_artifact(hand_artifact(with_params=False).replace(meta=meta), path)
    warnings = []
    for clip in (video, other):
        notes: list[str] = []
        stage.render_file(path, stage.RenderConfig(out=tmp_path / "still.png", frame=0, video=clip,
                                                   backend="painter"), notes.append)
        warnings.append(any("is not the video this artifact was made from" in note for note in notes))
    assert warnings == [False, True]


def test_frames_beyond_the_calibration_are_marked_and_counted(tmp_path):
    """A frame whose error bars extrapolate (beyond_calibration) gets the warning caption even when its sd is
    not above the threshold, and the render counts such frames."""
    artifact = hand_artifact(variance=True)
    beyond = np.zeros(artifact.valid.shape, bool)
    beyond[0, 2] = True
    path = tmp_path / "motion.npz"
    save_artifact(artifact.replace(beyond_calibration=beyond), path)
    red_border = []
    for frame in (1, 2):
        out = tmp_path / f"still{frame}.png"
        result = stage.render_file(path, stage.RenderConfig(out=out, frame=frame, variance=True, backend="painter"))
        edge = cv2.imread(str(out))[..., ::-1].astype(int)[1, 40:120]
        red_border.append(bool(((edge[:, 0] > 180) & (edge[:, 1] < 90)).all()))
    assert red_border == [False, True]
    assert result.extrapolated == 1 and result.flagged == 1  # frame 6 is still the one above the threshold


def test_with_var_root_the_colours_show_the_articulation_and_the_flags_the_whole():
    """The whole hand's share (tr var_root), the same for every joint, is taken out of the colours, so a large
    depth doubt does not paint the hand one colour; the frame scores, and so the flags, still use it all."""
    artifact = hand_artifact(variance=True)
    frames = artifact.num_frames
    root = np.zeros((1, frames, 3, 3), np.float32)
    root[..., 2, 2] = 0.1 ** 2  # ±100 mm along the optical axis on every frame
    articulation = np.linspace(1e-3, 20e-3, 21) ** 2  # (21,) m², wrist to pinky tip
    var_joints = (0.1 ** 2 + articulation)[None, None].repeat(frames, 1).astype(np.float32)
    var_joints[0, frames // 2] += (150e-3) ** 2  # one frame far more uncertain as a whole
    root[0, frames // 2, 2, 2] += (150e-3) ** 2
    view = stage.variance_view(artifact.replace(var_joints=var_joints, var_root=root), None)
    colours = view.joint_colours(0, 0) / 255.0
    expected = stage.map_values(np.sqrt(articulation) * 1000, 0.0, view.vmax, view.lut)
    np.testing.assert_allclose(colours, expected, atol=3.01 / 255)  # a few colour-table steps (float32 maps)
    assert np.ptp(colours, axis=0).max() > 0.3  # the joints differ, not one colour
    assert view.vmax < 30.0  # the scale is the articulation's, not the 100 mm of the whole hand
    assert np.nanargmax(view.frame_scores) == frames // 2 and view.frame_scores[0] > 100.0


def test_skeleton_only_without_params(tmp_path):
    path = tmp_path / "keypoints.npz"
    save_artifact(hand_artifact(with_params=False), path)
    notes: list[str] = []
    out = tmp_path / "still.png"
    stage.render_file(path, stage.RenderConfig(out=out, frame=0, video=make_video(tmp_path / "clip.mp4"),
                                               backend="painter"), notes.append)
    assert any("skeleton only" in note for note in notes)
    assert cv2.imread(str(out)).shape == (HEIGHT, WIDTH, 3)


def test_side_by_side_doubles_width(tmp_path, scene):
    artifact_path, video = scene
    estimate = tmp_path / "estimate.npz"
    save_artifact(hand_artifact(with_params=False), estimate)
    out = tmp_path / "both.png"
    stage.render_file(artifact_path, stage.RenderConfig(out=out, video=video, frame=3, side_by_side=True,
                                                        compare=estimate, backend="painter"))
    assert cv2.imread(str(out)).shape == (HEIGHT, 2 * WIDTH, 3)


def test_left_and_right_colours_differ():
    colours = track_colours(np.array([True, False, True]))
    assert np.abs(colours[0] - colours[1]).max() > 0.3 and np.abs(colours[0] - colours[2]).max() > 0.05


# ---------------------------------------------------------------------------------------------- atomicity
def test_failure_mid_video_leaves_nothing(scene, tmp_path, monkeypatch):
    artifact_path, video = scene
    calls = {"n": 0}
    original = stage.PanelSource.draw

    def failing_draw(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise RuntimeError("simulated crash half-way")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(stage.PanelSource, "draw", failing_draw)
    out = tmp_path / "overlay.mp4"
    with pytest.raises(RuntimeError, match="half-way"):
        stage.render_file(artifact_path, stage.RenderConfig(out=out, video=video, backend="painter"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "motion.npz"]


def test_video_shorter_than_counted_leaves_nothing(scene, tmp_path, monkeypatch):
    """The fast frame count is checked again while streaming: a shortfall at the end writes nothing."""
    artifact_path, video = scene
    artifact = hand_artifact(num_frames=14)
    save_artifact(artifact, artifact_path)
    monkeypatch.setattr("handcli.video.count_frames", lambda info: 14)
    with pytest.raises(BadInput, match="decoded to 12 frames"):
        stage.render_file(artifact_path, stage.RenderConfig(out=tmp_path / "o.mp4", video=video, backend="painter"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "motion.npz"]


# ------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("case, message", [
    ("missing video", "no such file"),
    ("frame count", "frame count mismatch"),
    ("no K", "K: the input has no camera intrinsics"),
    ("frame range", "--frame 12 is out of range"),
    ("no variance", "run `handcli variance`"),
    ("png without --frame", "must be a video"),
    ("side-by-side source", "--compare"),
    ("image size", "image_size"),
    ("output is the video", "is the --video being drawn over"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, scene, case, message):
    artifact_path, video = scene
    out = tmp_path / "overlay.mp4"
    config = stage.RenderConfig(out=out, video=video, backend="painter")
    artifact = hand_artifact()
    if case == "missing video":
        config.video = tmp_path / "nope.mp4"
    elif case == "frame count":
        artifact = hand_artifact(num_frames=10)
    elif case == "no K":
        artifact = artifact.replace(K=None)
    elif case == "frame range":
        config.frame, config.out = 12, tmp_path / "still.png"
    elif case == "no variance":
        config.variance = True
    elif case == "png without --frame":
        config.out = tmp_path / "still.png"
    elif case == "side-by-side source":
        config.side_by_side, config.video = True, None
    elif case == "image size":
        artifact = artifact.replace(image_size=np.array([WIDTH * 2, HEIGHT]))
    elif case == "output is the video":
        config.out = video
    save_artifact(artifact, artifact_path)
    with pytest.raises(BadInput) as error:
        stage.render_file(artifact_path, config)
    assert message in error.value.message and "\n" not in error.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "motion.npz"]


def test_cli_bad_input_exit_code(scene, tmp_path):
    artifact_path, video = scene
    save_artifact(hand_artifact(num_frames=10), artifact_path)
    result = run_cli("render", "--input", artifact_path, "--video", video, "--out", tmp_path / "o.mp4")
    assert_one_line_error(result, 2, "frame count mismatch")
    assert not (tmp_path / "o.mp4").exists()


def test_cli_falls_back_for_real_without_egl(scene, tmp_path, monkeypatch):
    """A missing libEGL (glcontext's own override points at nothing): one notice, painter, still written."""
    artifact_path, video = scene
    monkeypatch.setenv("GLCONTEXT_LINUX_LIBEGL", str(tmp_path / "missing" / "libEGL.so.1"))
    out = tmp_path / "still.png"
    result = run_cli("render", "--input", artifact_path, "--video", video, "--out", out, "--frame", "4", "--skeleton")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "painter fallback" in lines[0] and "painter backend" in lines[1], lines
    assert cv2.imread(str(out)).shape == (HEIGHT, WIDTH, 3)
