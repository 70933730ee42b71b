"""train stage: train the diffusion refiner from the synthetic motion generator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class TrainStageConfig:
    out: Path = Path("weights/refiner.pt")
    steps: int | None = None  # None: the TrainConfig default that reproduces the shipped weights
    seed: int = 0
    device: str = "auto"


def train(config: TrainStageConfig) -> Path:
    from handcli.device import resolve_device
    from handcli.training import TrainConfig, train_refiner

    options = dict(out=Path(config.out), seed=config.seed, device=str(resolve_device(config.device)))
    if config.steps is not None:
        options["steps"] = config.steps
    return train_refiner(TrainConfig(**options))
