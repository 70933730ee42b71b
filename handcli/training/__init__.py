"""Training of the diffusion refiner on synthetic motion (`train_refiner(TrainConfig(...))`)."""

from handcli.training.config import LossWeights, TrainConfig
from handcli.training.train import train_refiner

__all__ = ["LossWeights", "TrainConfig", "train_refiner"]
