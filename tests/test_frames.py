"""Folders of frames as input (handcli.frames): order, rate, content-keyed cache, bad folders exit 2."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest

from handcli.artifacts import load_artifact
from handcli.frames import folder_digest, frame_files, natural_key
from handcli.render.synthetic import render_synthetic_video
from handcli.video import iter_frames, probe_video
from tests.conftest import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def hand_frames(tmp_path_factory):
    """12 frames of the synthetic hand clip as frame1.png .. frame12.jpg (mixed formats, unpadded numbers)."""
    root = tmp_path_factory.mktemp("frames")
    clip = root / "clip.mp4"
    render_synthetic_video(clip, 12, 320, 240)
    folder = root / "frames"
    folder.mkdir()
    for i, frame in enumerate(iter_frames(probe_video(clip)), start=1):
        iio.imwrite(folder / f"frame{i}.{'png' if i % 2 else 'jpg'}", frame)
    (folder / "notes.txt").write_text("not a frame")
    return folder


def test_frames_are_read_in_natural_order_at_the_given_rate(hand_frames):
    assert [p.name for p in frame_files(hand_frames)][:3] == ["frame1.png", "frame2.jpg", "frame3.png"]
    assert sorted(["f10", "f2", "f1"], key=natural_key) == ["f1", "f2", "f10"]
    info = probe_video(hand_frames, 25.0)
    assert (info.width, info.height, info.fps, info.fps_known) == (320, 240, 25.0, True)
    assert not probe_video(hand_frames).fps_known
    frames = list(iter_frames(info))
    assert len(frames) == 12 and frames[0].shape == (240, 320, 3) and frames[0].dtype == np.uint8


def test_run_on_a_folder_is_cached_by_the_frames_content(hand_frames, tmp_path):
    out, work = tmp_path / "hands.npz", tmp_path / "work"
    first = run_cli("run", hand_frames, "--out", out, "--work-dir", work, "--no-variance")
    assert first.returncode == 0, first.stderr
    assert "assuming 30 fps (pass --fps)" in first.stderr
    hands = load_artifact(out)
    assert hands.num_frames == 12 and hands.num_tracks == 1 and hands.fps == 30.0
    rated = run_cli("run", hand_frames, "--out", out, "--work-dir", work, "--no-variance", "--fps", "25")
    assert rated.returncode == 0 and "detect: computed" in rated.stderr and load_artifact(out).fps == 25.0
    before = folder_digest(hand_frames)
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in frame_files(hand_frames):
        (copy / path.name).write_bytes(path.read_bytes())
    assert folder_digest(copy) == before  # the key is the content, not the folder's name
    iio.imwrite(copy / "frame5.png", np.zeros((240, 320, 3), np.uint8))
    assert folder_digest(copy) != before


@pytest.mark.parametrize("make, message", [
    (lambda folder: None, "folder holds no frames"),
    (lambda folder: (folder / "a1.png").write_bytes(b"not a png"), "not a readable image"),
    (lambda folder: [iio.imwrite(folder / "a1.png", np.zeros((32, 32, 3), np.uint8)),
                     iio.imwrite(folder / "a2.png", np.zeros((32, 48, 3), np.uint8))], "differs from the first"),
])
def test_bad_folders_are_one_line_exit_2(tmp_path, make, message):
    folder = tmp_path / "frames"
    folder.mkdir()
    make(folder)
    for command in ("detect", "run"):
        out = tmp_path / f"{command}.npz"
        assert_one_line_error(run_cli(command, folder, "--out", out), 2, message)
        assert not out.exists()


def test_fps_is_refused_for_a_video_file_and_checked(tmp_path, hand_frames):
    clip = hand_frames.parent / "clip.mp4"
    assert_one_line_error(run_cli("detect", clip, "--out", tmp_path / "d.npz", "--fps", "25"), 2, "--fps")
    assert_one_line_error(run_cli("detect", hand_frames, "--out", tmp_path / "d.npz", "--fps", "0"), 2, "--fps")


def test_frames_of_any_8_bit_mode_become_upright_rgb(tmp_path):
    from PIL import Image

    from handcli.frames import read_frame

    Image.fromarray(np.full((8, 8, 2), [100, 255], np.uint8), "LA").save(tmp_path / "grey_alpha.png")
    Image.fromarray(np.ones((8, 8), bool)).convert("1").save(tmp_path / "one_bit.png")
    Image.new("CMYK", (8, 8), (0, 0, 0, 255)).save(tmp_path / "cmyk.jpg")  # black in print colours
    Image.fromarray((np.ones((8, 8)) * 40000).astype(np.uint16)).save(tmp_path / "sixteen.png")
    upright = Image.fromarray(np.zeros((8, 16, 3), np.uint8))
    exif = upright.getexif()
    exif[0x0112] = 6  # stored on its side, like a phone photo
    upright.save(tmp_path / "rotated.jpg", exif=exif)
    expected = {"grey_alpha.png": ((8, 8), 100), "one_bit.png": ((8, 8), 255), "cmyk.jpg": ((8, 8), 0),
                "sixteen.png": ((8, 8), 40000 >> 8), "rotated.jpg": ((16, 8), 0)}
    for name, (size, value) in expected.items():
        frame = read_frame(tmp_path / name)
        assert frame.shape == (*size, 3) and frame.dtype == np.uint8, name
        assert abs(int(frame[0, 0, 0]) - value) <= 2, (name, frame[0, 0])


def test_an_overlay_over_a_folder_plays_at_the_folder_rate(hand_frames, tmp_path):
    from handcli.video import probe_video as probe

    overlay = tmp_path / "overlay.mp4"
    result = run_cli("run", hand_frames, "--fps", "10", "--out", tmp_path / "hands.npz", "--no-variance",
                     "--render", overlay, "--work-dir", tmp_path / "work")
    assert result.returncode == 0, result.stderr
    assert probe(overlay).fps == 10.0
