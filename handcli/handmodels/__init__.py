"""Hand models behind one interface (`HandModel`): the open hand (default, shipped) and MANO (user-supplied).

See docs/hand_models.md for the conventions (rest frame, pose, left hands) and the open model's shape space.
"""

from __future__ import annotations

from pathlib import Path

from handcli.errors import BadInput
from handcli.handmodels.base import HandModel, HandOutput
from handcli.handmodels.kinematics import MANO_PARENTS

MANO_DEFAULT_DIR = Path(__file__).resolve().parents[2] / "weights" / "mano"
HAND_MODELS = ("open", "mano")

__all__ = ["HAND_MODELS", "HandModel", "HandOutput", "MANO_PARENTS", "available_hand_models", "hand_model_files",
           "load_hand_model"]


def _mano_dir(mano_dir: str | Path | None) -> Path:
    return Path(mano_dir) if mano_dir is not None else MANO_DEFAULT_DIR


def load_hand_model(name: str = "open", mano_dir: str | Path | None = None) -> HandModel:
    """`open` (weights/open_hand.npz) or `mano` (MANO_RIGHT.pkl / MANO_LEFT.pkl from mano_dir, else weights/mano/)."""
    if name == "open":
        from handcli.handmodels.open_hand import load_open_hand

        return load_open_hand()
    if name == "mano":
        from handcli.handmodels.mano import load_mano

        return load_mano(_mano_dir(mano_dir))
    raise BadInput(f"unknown hand model {name!r} (choose from {', '.join(HAND_MODELS)})")


def hand_model_files(name: str = "open", mano_dir: str | Path | None = None) -> dict[str, Path]:
    """The files `load_hand_model(name, mano_dir)` reads (those that may exist), named: what a cache key must
    cover so that a rebuilt open hand or a MANO file added or replaced invalidates the results made with it."""
    if name == "open":
        from handcli.handmodels.open_hand import OPEN_HAND_PATH

        return {"open_hand": OPEN_HAND_PATH}
    if name == "mano":
        from handcli.handmodels.mano import MANO_FILES

        folder = _mano_dir(mano_dir)
        return {f"mano_{'right' if right else 'left'}": folder / MANO_FILES[right] for right in (True, False)}
    return {}


def available_hand_models(mano_dir: str | Path | None = None) -> dict[str, str]:
    """name -> one-line status, for `handcli info`."""
    open_hand = hand_model_files("open")["open_hand"]
    status = {"open": f"ready ({open_hand})" if open_hand.is_file() else
              f"missing {open_hand} (run make hand-model)"}
    mano = hand_model_files("mano", mano_dir)
    right, left = mano["mano_right"], mano["mano_left"]
    if right.is_file():
        status["mano"] = f"found {right}" + (f" and {left.name}" if left.is_file() else " (left hands by mirroring)")
    else:
        status["mano"] = f"not installed (put {right.name} / {left.name} in {right.parent})"
    return status
