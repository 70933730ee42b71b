"""Pooling clip scores per camera situation (and over all clips).

Means are pooled so that a situation's number is what videoscore.score would give on all its frames at once:
each clip's mean weighted by what it averaged over (counts from scoring.counts):
* coverage by the clip's frames with ground truth;
* mpjpe, rootrel, pa, px (and MediaPipe's own px) by its scored frames (every rendered frame has all 21
  joints, so frame weights are joint weights);
* accel by its consecutive covered frame triplets.
A clip with nothing scored (weight 0, metric NaN) adds nothing. Medians (depth_pct, rot_deg, and the signed
depth error) are taken over the situation's pooled per-frame values, not over clip medians: a median of
medians would weight a 90-frame clip like a 120-frame one and is not the situation's median.
"""

from __future__ import annotations

import numpy as np

WEIGHT_OF = {"coverage": "truth_frames", "mpjpe": "scored_frames", "rootrel": "scored_frames",
             "pa": "scored_frames", "px": "scored_frames", "accel": "triplets"}
MEDIAN_OF = {"depth_pct": "depth_pct", "rot_deg": "rot_deg", "depth_signed_pct": "depth_signed_pct"}


def pool_stage(rows: list[dict]) -> dict:
    """rows: one stage's per-clip dicts (scoring.score_clip[stage]) -> pooled metrics + totals."""
    out: dict = {"clips": len(rows), "frames": int(sum(r["counts"]["truth_frames"] for r in rows))}
    for metric, weight_key in WEIGHT_OF.items():
        pairs = [(r[metric], r["counts"][weight_key]) for r in rows
                 if metric in r and r["counts"][weight_key] > 0 and np.isfinite(r[metric])]
        total = sum(w for _, w in pairs)
        if metric == "coverage":  # a clip with zero coverage still counts its frames
            pairs = [(r["coverage"], r["counts"]["truth_frames"]) for r in rows]
            total = sum(w for _, w in pairs)
        out[metric] = float(sum(v * w for v, w in pairs) / total) if total else float("nan")
    for metric, key in MEDIAN_OF.items():
        values = [r["frames"][key] for r in rows if "frames" in r]
        values = np.concatenate(values) if values else np.zeros(0)
        out[metric] = float(np.median(values)) if len(values) else float("nan")
    return out


def aggregate(clips: list[dict], stages: tuple[str, ...]) -> dict[str, dict[str, dict]]:
    """clips: [{"situation": str, "scores": scoring.score_clip output}] -> {situation or "all": {stage:
    pooled}}, situations in first-seen order, "all" last."""
    groups: dict[str, list[dict]] = {}
    for clip in clips:
        groups.setdefault(clip["situation"], []).append(clip)
    groups["all"] = list(clips)
    return {name: {stage: pool_stage([c["scores"][stage] for c in members]) for stage in stages}
            for name, members in groups.items()}
