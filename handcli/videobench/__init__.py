"""The video benchmark: real hand motion rendered as videos with exact camera-frame 3D ground truth, the
pipeline run on them, every stage scored (docs/video_bench.md).

One concern per module, in the order a clip is made and scored:

* `fpha`        motion source: FPHA mocap sequences, the split's seeded choice of sequences and windows
* `hand`        the open hand fitted to a window, scaled to a sampled adult hand length; its forearm
* `cameras`     the three camera situations: intrinsics, the placement of the motion, in-frame checks
* `appearance`  skin tones, lighting, exposure, motion blur: the per-clip look
* `backgrounds` real-footage backgrounds (hand-free crops) with a procedural fallback
* `render`      one clip's frames (sub-frame blur, compositing) into an H.264 file
* `clips`       the clip specifications of a split and the render cache (video + ground-truth npz)
* `pipeline`    detect / estimate / refine in-process, cached per clip and per variant
* `scoring`     the shared videoscore functions per clip, plus per-frame values and MediaPipe's own 2D error
* `aggregate`   per-situation pooling of the clip scores
* `report`      the table, the JSON dump and the docs section

Nothing here ships FPHA data: the motion is read from ../shared at run time and the renders stay in the
work directory (.bench-video/, git-ignored).
"""

# Bump when anything that changes the rendered pixels or the ground truth changes: it is part of every clip's
# render cache key, so old renders are then redone rather than reused.
# 4: backgrounds checked hand-free on every frame shown (backgrounds.plate_has_hand), not two.
# 5: the hand rendered with the skin keypoint convention (hand.realistic_shape), not FPHA's joint centres.
RENDER_VERSION = "videobench-render-5"
SITUATIONS = ("egocentric", "frontal", "topdown")
