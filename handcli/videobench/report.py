"""What a run prints and writes: the per-situation table, the size statistics of the clips, the JSON dump of
per-clip rows for error analysis, and the marked section of docs/results.md."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from handcli.artifacts import atomic_path

ROW_STAGES = ("mediapipe2d", "detect", "estimate", "gaussian(2)", "refine")
COLUMNS = (("coverage", "coverage", "{:.3f}"), ("mpjpe", "MPJPE mm", "{:.1f}"), ("rootrel", "root-rel mm", "{:.1f}"),
           ("pa", "PA mm", "{:.2f}"), ("px", "2D px", "{:.1f}"), ("depth_pct", "depth %", "{:.1f}"),
           ("depth_signed_pct", "signed depth %", "{:+.1f}"), ("rot_deg", "rot °", "{:.1f}"),
           ("accel", "ACCEL mm/f²", "{:.2f}"))
# parameters copied into every JSON row (the nested camera / appearance records stay in the GT files)
PARAM_KEYS = ("clip", "situation", "sequence", "frames", "width", "height", "fov_deg", "focal", "distance",
              "facing", "perturb_deg", "hand_length", "hand_px", "hand_px_2d", "hand_frac", "depth_min", "depth_max",
              "skin_tone", "skin_name", "blur", "shutter", "ambient", "gain", "noise_sigma", "background")


def _cell(value, fmt: str) -> str:
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else fmt.format(value)


def table(pooled: dict[str, dict[str, dict]]) -> str:
    """Markdown table: one row per situation x stage. `mediapipe2d` is MediaPipe's own 2D keypoints (only
    coverage and 2D px apply)."""
    header = "| situation | stage | clips | frames | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    lines = [header, "|" + " --- |" * (4 + len(COLUMNS))]
    for situation, stages in pooled.items():
        for stage in ROW_STAGES:
            if stage not in stages:
                continue
            row = stages[stage]
            cells = [_cell(row.get(key), fmt) for key, _, fmt in COLUMNS]
            lines.append(f"| {situation} | {stage} | {row['clips']} | {row['frames']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def size_summary(params: list[dict]) -> str:
    """Per situation: the ranges of distance, field of view and on-screen hand size, resolutions, skin tones
    and blurred clips (the benchmark's coverage of conditions)."""
    lines = ["| situation | clips | distance m | fov ° | hand length mm | hand px (apparent) | hand px (2D chain) | "
             "hand / frame | resolutions | skin tones | blurred |", "|" + " --- |" * 11]
    groups: dict[str, list[dict]] = {}
    for p in params:
        groups.setdefault(p["situation"], []).append(p)
    groups["all"] = list(params)
    span = lambda key, scale=1.0, fmt="{:.2f}": (f"{fmt.format(min(p[key] for p in members) * scale)}–"
                                                 f"{fmt.format(max(p[key] for p in members) * scale)}")
    for name, members in groups.items():
        resolutions = sorted({f"{p['width']}x{p['height']}" for p in members}, key=lambda r: int(r.split("x")[0]))
        tones = sorted({p["skin_tone"] for p in members})
        lines.append(f"| {name} | {len(members)} | {span('distance')} | {span('fov_deg', fmt='{:.0f}')} | "
                     f"{span('hand_length', 1000, '{:.0f}')} | {span('hand_px', fmt='{:.0f}')} | "
                     f"{span('hand_px_2d', fmt='{:.0f}')} | {span('hand_frac')} | {', '.join(resolutions)} | "
                     f"{len(tones)} of 7 ({','.join(str(t) for t in tones)}) | {sum(bool(p['blur']) for p in members)} |")
    return "\n".join(lines)


def json_rows(clips: list[dict]) -> list[dict]:
    """Flat rows, one per clip x stage: the clip's parameters and every metric of that stage."""
    rows = []
    for clip in clips:
        params = {k: clip["params"].get(k) for k in PARAM_KEYS}
        for stage, metrics in clip["scores"].items():
            row = {**params, "stage": stage}
            row.update({k: v for k, v in metrics.items() if k not in ("counts", "frames")})
            row.update(metrics.get("counts", {}))
            rows.append(row)
    return rows


def write_json(path: str | Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1, default=_plain))


def _plain(value):
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def begin_marker(split: str, tag: str) -> str:
    return f"<!-- video-bench:{split}:{tag} -->"


END_MARKER = "<!-- /video-bench -->"


def write_docs_section(path: str | Path, split: str, tag: str, body: str) -> None:
    """Replace this split/tag's marked section of `path` with `body` (a new titled section when absent)."""
    replace_marked_section(path, begin_marker(split, tag), END_MARKER, body,
                           heading=f"## Video benchmark: {split} split, `{tag}`")


def replace_marked_section(path: str | Path, begin: str, end: str, body: str, heading: str | None = None) -> None:
    """Replace the text between `begin` and the next `end` marker in `path` with `body`, atomically; append
    the markers (under `heading`, if given) when `begin` is not there yet."""
    path = Path(path)
    text = path.read_text() if path.is_file() else ""
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + (f"\n\n{heading}" if heading else "") + f"\n\n{block}\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
