"""Physics-aware conditional shift diffusion over 3D keypoint windows (PAD-Hand, with DIP and UniHand ideas).

`load_refiner().refine(...)` is the inference API; handcli.training trains the backbone.
"""

from handcli.diffusion.refiner import RefineResult, Refiner, load_refiner

__all__ = ["Refiner", "RefineResult", "load_refiner"]
