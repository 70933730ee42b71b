"""The hand model behind importers: keypoints for formats that carry MANO parameters but no joints.

MANO is used when the user's MANO files are found (`load_hand_model("mano")`), otherwise the bundled open
hand. The open hand shares MANO's joint order, rest frame and parameter conventions but not its shape space
or its origin: its rest wrist is the origin, MANO's sits a few centimetres away (J0(betas)). So with the open
hand the imported keypoints are the right pose and motion, but the whole track is offset by that constant
vector and the hand has the open model's mean shape (MANO betas mean nothing to it). The MANO parameters are
kept unchanged in the artifact, so a real MANO downstream reproduces the source exactly.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from handcli.errors import HandcliError

CHUNK = 8192  # frames per forward pass: bounded memory on long clips


@lru_cache(maxsize=1)
def import_hand_model():
    """(model, name): 'mano' if the user's MANO files load, else 'open'."""
    from handcli.handmodels import load_hand_model

    try:
        return load_hand_model("mano", None), "mano"
    except (HandcliError, OSError, ValueError):
        return load_hand_model("open", None), "open"


def _num_betas(model) -> int:
    return int(getattr(model, "num_betas", 10))


def keypoints_from_params(global_orient: np.ndarray, hand_pose: np.ndarray, betas: np.ndarray, transl: np.ndarray,
                          is_right: np.ndarray) -> tuple[np.ndarray, str]:
    """Pose the hand model: (M,3), (M,15,3), (M,10), (M,3), (M,) bool -> (keypoints3d (M,21,3), model name).

    Parameters follow the artifact convention (left hands: mirrored parameters, transl in the camera frame).
    """
    import torch

    model, name = import_hand_model()
    nb = _num_betas(model)
    if name == "mano":
        shape = np.zeros((betas.shape[0], nb))
        shape[:, :min(nb, betas.shape[1])] = betas[:, :nb]
    else:
        shape = np.zeros((betas.shape[0], nb))  # MANO betas are meaningless in the open hand's shape space
    pose_keypoints = getattr(model, "keypoints", None)
    out = np.empty((global_orient.shape[0], 21, 3))
    with torch.no_grad():
        for start in range(0, global_orient.shape[0], CHUNK):
            part = slice(start, start + CHUNK)
            args = [torch.as_tensor(a[part], dtype=torch.float32) for a in (global_orient, hand_pose, shape, transl)]
            side = torch.as_tensor(is_right[part], dtype=torch.bool)
            if pose_keypoints is not None:
                joints = pose_keypoints(*args, is_right=side)
            else:
                joints = model(*args, is_right=side).joints
            out[part] = joints.double().numpy()
    return out, name


def rest_finger_directions() -> np.ndarray:
    """Unit vectors wrist -> thumb CMC and the four MCPs of the right hand at rest, (5, 3), model frame."""
    zeros = np.zeros((1, 3))
    joints, _ = keypoints_from_params(zeros, np.zeros((1, 15, 3)), np.zeros((1, 10)), zeros, np.ones(1, bool))
    directions = joints[0, [1, 5, 9, 13, 17]] - joints[0, 0]
    return directions / np.linalg.norm(directions, axis=-1, keepdims=True)


def hands_mean(is_right: bool) -> np.ndarray:
    """MANO's mean hand pose (15, 3) for that side in the artifact convention; needs the real MANO."""
    from handcli.errors import BadInput

    model, name = import_hand_model()
    mean = getattr(model, "hands_mean", None)
    if name != "mano" or mean is None:
        raise BadInput("the file's hand_pose is relative to MANO's mean pose (flat_hand_mean=False); converting "
                       "it needs MANO_RIGHT.pkl (see docs/hand_models.md)")
    mean = mean.detach().double().numpy().reshape(15, 3)
    left = getattr(model, "left_model", None)
    if is_right:
        return mean
    if left is not None:
        return left.hands_mean.detach().double().numpy().reshape(15, 3)
    return mean * np.array([1.0, -1.0, -1.0])
