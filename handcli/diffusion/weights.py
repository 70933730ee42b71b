"""The shipped weights file: backbone + schedule configuration + state dict, loadable with weights_only."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

import handcli
from handcli.diffusion.model import BackboneConfig, RefinerBackbone
from handcli.diffusion.schedule import ShiftSchedule
from handcli.errors import BadInput, NotBuilt

WEIGHTS_FORMAT = "handcli-refiner/1"


def default_weights_path() -> Path:
    return Path(handcli.__file__).resolve().parent.parent / "weights" / "refiner.pt"


def atomic_torch_save(payload: dict, path: Path) -> None:
    """torch.save to a temporary file in the target directory, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(payload, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; weights are meant to be read by anyone
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def save_weights(path: Path, backbone: RefinerBackbone, schedule: ShiftSchedule, info: dict | None = None) -> None:
    """Write the refiner (float32 state dict + configs + a small json-able `info` dict) atomically."""
    state = {k: v.detach().to("cpu", torch.float32).clone() for k, v in backbone.state_dict().items()}
    payload = {"format": WEIGHTS_FORMAT, "backbone": backbone.config.to_dict(),
               "schedule": {"num_steps": schedule.num_steps, "kappa": schedule.kappa, "power": schedule.power,
                            "eta_last": schedule.eta_last, "eta_first": schedule.eta_first},
               "state_dict": state,
               # plain json types only, so the file loads with weights_only=True
               "info": json.loads(json.dumps(info or {}, default=str))}
    atomic_torch_save(payload, path)


def load_weights(path: Path | None = None, device: str | torch.device = "cpu"
                 ) -> tuple[RefinerBackbone, ShiftSchedule, dict]:
    """Read a weights file; NotBuilt when the default file is absent, BadInput when a given file is unusable."""
    explicit = path is not None
    path = Path(path) if explicit else default_weights_path()
    if not path.is_file():
        if explicit:
            raise BadInput(f"refiner weights not found: {path}")
        raise NotBuilt(f"refiner weights not found at {path}; run `make weights` (or `handcli train`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt or foreign file
        raise BadInput(f"cannot read refiner weights {path}: {type(error).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        raise BadInput(f"{path} is not a handcli refiner weights file ({WEIGHTS_FORMAT})")
    try:
        schedule = ShiftSchedule(**payload["schedule"])
        backbone = RefinerBackbone(BackboneConfig(**payload["backbone"]), schedule)
        backbone.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        # a file written by another code version: unknown config fields or mismatched tensors
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadInput(f"refiner weights {path} do not match this handcli version ({first_line[:160]}); "
                       "retrain with `make weights` or use the weights shipped with this version") from None
    backbone.to(device).eval()
    return backbone, schedule, dict(payload.get("info", {}))
