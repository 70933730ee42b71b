"""Joints x time heat map of the joint-level variance (PAD-Hand Fig. 1): one panel per track, colours the
variance normalised to [0, 1] over the file's valid frames (low -> high), frames the input did not observe
marked above each panel."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from handcli.artifacts import atomic_path

JOINT_NAMES = ("wrist", "thumb CMC", "thumb MCP", "thumb IP", "thumb tip", "index MCP", "index PIP", "index DIP",
               "index tip", "middle MCP", "middle PIP", "middle DIP", "middle tip", "ring MCP", "ring PIP",
               "ring DIP", "ring tip", "pinky MCP", "pinky PIP", "pinky DIP", "pinky tip")


def normalised(var_joints: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Min-max normalisation over valid frames: (H, T, 21) -> ((H, T, 21) in [0, 1], NaN where not valid;
    low, high in m²)."""
    values = np.where(valid[..., None], np.asarray(var_joints, np.float64), np.nan)
    low, high = (float(np.nanmin(values)), float(np.nanmax(values))) if valid.any() else (0.0, 1.0)
    return (values - low) / max(high - low, 1e-30), low, high


def save_heatmap(path: Path, var_joints: np.ndarray, valid: np.ndarray, fps: float,
                 observed: np.ndarray | None = None, is_right: np.ndarray | None = None,
                 ray_sd_mm: np.ndarray | None = None, what: str = "joint variance") -> Path:
    """Write the heat map PNG.

    var_joints: (H, T, 21) m², the per-joint variance to colour; valid: (H, T) frames to show; observed: (H, T)
    frames the input observed (the others are marked as infilled) or None; is_right: (H,) for the panel
    titles; ray_sd_mm: (H, T) the whole hand's standard deviation along the camera ray (from var_root), drawn
    as a curve above each track's panel (how unsure its depth is), or None; what: the coloured quantity's name
    in the panel titles.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    tracks, frames = valid.shape
    image, low, high = normalised(var_joints, valid)
    rows = tracks * (2 if ray_sd_mm is not None else 1)
    ratios = [1, 3.4] * tracks if ray_sd_mm is not None else [1] * tracks
    figure, grid = plt.subplots(rows, 1, figsize=(min(4 + frames / 40, 16), 1.2 + (4.4 if ray_sd_mm is not None
                                                                                     else 3.4) * tracks),
                                squeeze=False, constrained_layout=True, gridspec_kw={"height_ratios": ratios})
    axes = grid[1::2] if ray_sd_mm is not None else grid
    if ray_sd_mm is not None:
        for h, axis in enumerate(grid[0::2, 0]):
            times = (np.arange(frames) + 0.5) / fps
            axis.plot(times, np.where(valid[h], ray_sd_mm[h], np.nan), color="tab:red", linewidth=1.2)
            axis.set_xlim(0, frames / fps)
            axis.set_ylim(bottom=0)
            axis.set_ylabel("depth sd\n(mm)", fontsize=7)
            axis.tick_params(labelsize=6, labelbottom=False)
    cmap = matplotlib.colormaps["viridis"].copy()
    cmap.set_bad("#d9d9d9")
    seconds = frames / fps
    for h, axis in enumerate(axes[:, 0]):
        shown = axis.imshow(image[h].T, aspect="auto", cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest",
                            extent=(0, seconds, 20.5, -0.5))
        axis.set_yticks(range(21), JOINT_NAMES, fontsize=6)
        axis.set_xlabel("time (s)")
        side = "" if is_right is None else (" (right)" if is_right[h] else " (left)")
        axis.set_title(f"track {h}{side}: {what}", fontsize=9, loc="left")
        if observed is not None:
            missing = valid[h] & ~observed[h]
            times = (np.flatnonzero(missing) + 0.5) / fps
            axis.plot(times, np.full(len(times), -0.5), "|", color="red", markersize=6, clip_on=False,
                      label="not observed (infilled)")
            if len(times):
                axis.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    bar = figure.colorbar(shown, ax=grid[:, 0].tolist(), fraction=0.03, pad=0.01)  # all rows: times line up
    bar.set_label("normalised variance (low → high)")
    bar.set_ticks([0, 1], labels=[f"low\nσ {np.sqrt(max(low, 0)) * 1000:.1f} mm",
                                  f"high\nσ {np.sqrt(max(high, 0)) * 1000:.1f} mm"])
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=130, format="png")
    plt.close(figure)
    return path
