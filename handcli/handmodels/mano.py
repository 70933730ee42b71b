"""Real MANO from the user's own MANO_RIGHT.pkl / MANO_LEFT.pkl (never shipped; MANO's licence applies).

The official files are Python-2 pickles holding chumpy objects, and chumpy does not import on Python 3.11
with current numpy. `load_mano_pickle` therefore unpickles with a whitelist: numpy arrays, scipy sparse
matrices, and chumpy classes mapped to `_ChumpyStandIn`, which only keeps the pickled state and can turn
it back into the array (a plain `Ch` keeps its value under 'x'; reorderings keep their input under 'a').
Anything else in the file is refused.

The model follows smplx's MANO layer with `flat_hand_mean=True` (our zero pose is the flat hand);
`hands_mean` is kept so poses from tools that use MANO's mean pose can be converted: ours = theirs + mean.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from handcli.errors import BadInput
from handcli.handmodels.base import HandModel
from handcli.handmodels.kinematics import MANO_PARENTS, MANO_TIP_VERTICES

MANO_FILES = {True: "MANO_RIGHT.pkl", False: "MANO_LEFT.pkl"}
REQUIRED_KEYS = ("v_template", "shapedirs", "J_regressor", "weights", "kintree_table", "f")


class _ChumpyStandIn:
    """Holds a chumpy object's pickled state; `value()` recomputes the numpy array it stands for."""

    chumpy_class = "Ch"

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {"x": state}

    def value(self) -> np.ndarray:
        state, kind = self.state, self.chumpy_class
        if kind == "Concatenate":
            parts = [as_array(state[name]) for name in state.get("dterms", [])]
            return np.concatenate(parts, axis=state.get("axis", 0))
        if "a" in state:  # reorderings: Reshape, transpose, Select
            inner = as_array(state["a"])
            if kind == "Reshape":
                return inner.reshape(state["newshape"])
            if kind == "transpose":
                return np.transpose(inner, state.get("axes"))
            if kind == "Select":
                picked = inner.ravel()[np.asarray(state["idxs"])]
                return picked.reshape(state["preferred_shape"]) if "preferred_shape" in state else picked
            raise BadInput(f"MANO file holds an unsupported chumpy object ({kind})")
        if "x" in state:
            return as_array(state["x"])
        raise BadInput(f"MANO file holds a chumpy object ({kind}) without a value")


def _stand_in_class(name: str) -> type:
    return type(f"Chumpy{name}", (_ChumpyStandIn,), {"chumpy_class": name})


def as_array(value) -> np.ndarray:
    """numpy array from an ndarray, a chumpy stand-in or a scipy sparse matrix (densified)."""
    if isinstance(value, _ChumpyStandIn):
        return value.value()
    if hasattr(value, "toarray"):
        return value.toarray()
    return np.asarray(value)


class _MANOUnpickler(pickle.Unpickler):
    """Resolves only numpy, scipy.sparse and chumpy globals (chumpy to stand-ins)."""

    _numpy = {
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }
    _sparse_names = {"csc_matrix", "csr_matrix", "coo_matrix"}
    # Python-2 pickles build objects via copy_reg and store chumpy's bookkeeping sets; Python-3 protocol-2
    # pickles spell byte strings as _codecs.encode(text, 'latin1')
    _plain = {("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"), ("_codecs", "encode")} | {
        (module, name) for module in ("__builtin__", "builtins") for name in ("object", "set", "frozenset")}

    def find_class(self, module: str, name: str):
        if module.split(".")[0] == "chumpy":
            return _stand_in_class(name)
        if (module, name) in self._numpy:
            return super().find_class(module, name)
        if module.startswith("scipy.sparse") and name in self._sparse_names:
            import scipy.sparse

            return getattr(scipy.sparse, name)
        if (module, name) in self._plain:
            return super().find_class(module, name)
        raise BadInput(f"MANO file refers to {module}.{name}, which a MANO model never contains; refusing to load it")


def load_mano_pickle(path: str | Path) -> dict[str, np.ndarray]:
    """Read an official MANO pickle into plain numpy arrays (sparse J_regressor densified)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = _MANOUnpickler(handle, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError) as error:
        raise BadInput(f"cannot read MANO file {path}: {error}") from None
    if not isinstance(raw, dict) or any(key not in raw for key in REQUIRED_KEYS):
        raise BadInput(f"{path} is not a MANO model file (needs keys {', '.join(REQUIRED_KEYS)})")
    return {key: as_array(value) for key, value in raw.items() if not isinstance(value, (str, bytes))}


def mano_arrays(data: dict[str, np.ndarray], num_betas: int = 10) -> dict[str, np.ndarray]:
    """smplx-compatible arrays from a loaded MANO dict, shapes checked."""
    v_template = data["v_template"].astype(np.float64)
    num_vertices = v_template.shape[0]
    shapedirs = data["shapedirs"].reshape(num_vertices, 3, -1)[..., :num_betas].astype(np.float64)
    j_regressor = data["J_regressor"].astype(np.float64)
    posedirs = data.get("posedirs")
    posedirs = np.zeros((num_vertices, 3, 135)) if posedirs is None else posedirs.reshape(num_vertices, 3, -1)
    parents = tuple(int(p) for p in data["kintree_table"][0])
    if j_regressor.shape != (16, num_vertices) or data["weights"].shape != (num_vertices, 16):
        raise BadInput("MANO file has unexpected array shapes (need a 16-joint hand model)")
    if parents[1:] != MANO_PARENTS[1:]:
        raise BadInput("MANO file has an unexpected kinematic tree")
    return {
        "v_template": v_template,
        "shapedirs": shapedirs,
        "posedirs": posedirs.reshape(num_vertices * 3, -1).T,  # (135, V*3), smplx's layout
        "joint_template": j_regressor @ v_template,
        "joint_shapedirs": np.einsum("jv,vdk->jdk", j_regressor, shapedirs),
        "skinning_weights": data["weights"].astype(np.float64),
        "faces": data["f"].astype(np.int64),
        "hands_mean": data.get("hands_mean", np.zeros(45)).reshape(15, 3),
        "hands_components": data.get("hands_components", np.zeros((0, 45))),
    }


def _side_model(path: Path, name: str, dtype) -> HandModel:
    arrays = mano_arrays(load_mano_pickle(path))
    hands_components = arrays.pop("hands_components")
    model = HandModel(name, tip_vertex_ids=MANO_TIP_VERTICES, dtype=dtype, **arrays)
    # (45, 45) MANO's PCA pose basis, for importers of PCA poses
    model.register_buffer("hands_components", torch.as_tensor(hands_components, dtype=dtype))
    return model


def load_mano(mano_dir: str | Path, dtype: torch.dtype = torch.float32) -> HandModel:
    """MANO from a folder holding MANO_RIGHT.pkl (required) and MANO_LEFT.pkl (optional; else mirroring)."""
    mano_dir = Path(mano_dir)
    right_path, left_path = mano_dir / MANO_FILES[True], mano_dir / MANO_FILES[False]
    if not right_path.is_file():
        raise BadInput(f"no {MANO_FILES[True]} in {mano_dir}: download MANO from https://mano.is.tue.mpg.de and put "
                       f"{MANO_FILES[True]} (and {MANO_FILES[False]}) there")
    model = _side_model(right_path, "mano", dtype)
    if left_path.is_file():
        model.left_model = _side_model(left_path, "mano_left", dtype)
    return model
