"""Regenerate the bundled demo clip samples/synthetic_hand.mp4 and its ground truth samples/synthetic_hand_gt.npz
(the open hand model rendered over a plain wall; see handcli/render/synthetic.py)."""

from pathlib import Path

from handcli.artifacts import save_artifact
from handcli.render.synthetic import render_synthetic_video

SAMPLES = Path(__file__).resolve().parents[1] / "samples"

if __name__ == "__main__":
    truth = render_synthetic_video(SAMPLES / "synthetic_hand.mp4", num_frames=90, seed=0)
    save_artifact(truth, SAMPLES / "synthetic_hand_gt.npz")
    print(f"wrote {SAMPLES / 'synthetic_hand.mp4'} and its ground truth")
