"""TrainConfig: everything that determines a training run (the defaults reproduce weights/refiner.pt)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class LossWeights:
    data: float = 1.0
    velocity: float = 1.0
    acceleration: float = 1.0
    bone: float = 0.5
    state: float = 0.05  # DIP L_state
    kinetic: float = 0.05  # DIP least-kinetic constraint (reaching / releasing)
    stability: float = 0.05  # DIP stability (stable grasp)
    physics: float = 0.005  # PAD-Hand L_EL (virtual observable), or the L1 penalty when deterministic


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 32
    window: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 200
    grad_clip: float = 1.0
    seed: int = 0
    out: Path = Path("weights/refiner.pt")
    device: str = "cpu"
    threads: int = 1  # measured: on a busy 2-core machine 2 threads oversubscribe (0.37 s vs 2.1 s a step)
    checkpoint_every: int = 250
    log_every: int = 100
    progress: bool = True
    # backbone
    width: int = 96
    layers: int = 3
    heads: int = 4
    ff_width: int = 192
    # diffusion (kappa in model units of 0.1 m)
    num_steps: int = 4
    # kappa = 1 (10 cm): large against the estimator's errors, so every step but the first must infer the
    # motion from y (with kappa = 0.1, x^n for n < N is nearly the truth and the model learns to copy it;
    # measured: no better than its smoothed-input baseline after 1,250 steps)
    kappa: float = 1.0
    # x^1 carries kappa sqrt(eta_1) = 0.1 mm of noise, and the backbone keeps x^n's own estimate of the motion
    # by the schedule's skip weights (model.skip_base), so the last steps refine instead of re-deriving
    eta_first: float = 1e-6
    # training draws n = 1..N with these relative weights: n = N (x^N = y + noise) is the estimation task the
    # output depends on most; n = 1 (x^1 ~ the truth) teaches little
    step_weights: tuple = (0.05, 0.15, 0.2, 0.6)
    # data
    prob_2d: float = 0.5
    rotate: bool = True
    pool_size: int = 512  # clean tracks kept in memory, `pool_refresh` of them replaced every step
    pool_refresh: int = 2
    speed: tuple = (1.0, 2.2)  # random playback-speed factor of generated motion
    # handcli.datagen.CorruptionConfig overrides. The generator's depth drift spans slow, large offsets
    # (AR coefficient up to 0.98, up to 12 % of the depth) that no filter can tell from motion; they dominated
    # the loss. Training centres the drift on what is identifiable and on the documented dev protocol
    # (~3.5 % of the depth, AR 0.7) while keeping a range; batches without 2D are also rotated after
    # corruption (data.py), and the drift direction is widened.
    # The image fit's measured errors (#12: a slow whole-hand rotation error, a larger slow articulation error;
    # scripts/estimate_errors.py) were tried here as "rotation_drift_deg": (1.5, 10), "rotation_drift_rho":
    # (0.8, 0.97), "bias": (0.001, 0.012): video tuning split root-relative 45.2 -> 45.0 mm, ACCEL 3.80 -> 3.30,
    # but FPHA subject 4 MPJPE 11.73 -> 11.88 mm, past the <= 11.83 regression target (the drift alone: 11.93);
    # not adopted (docs/results.md).
    corruption: dict = field(default_factory=lambda: {"depth_drift": (0.01, 0.06), "depth_drift_rho": (0.5, 0.9),
                                                       "depth_drift_direction_noise": 0.5})
    # physics virtual observable: evaluated on x^0 of a reverse chain for this many windows of each batch
    physics_windows: int = 4
    physics_every: int = 2  # inverse dynamics through the IK costs about one training step for 8 windows
    physics_scale: float = 1.0  # c in sigma_n = Sigma_n / c
    # recorded in the weights: samples = 1 returns the first clean estimate f(y, y, N) instead of the mean
    # path through all N steps (chosen by measurement on the FPHA tuning split, docs/method.md)
    direct_estimate: bool = True
    losses: LossWeights = field(default_factory=LossWeights)
    # ablation switches
    no_physics: bool = False
    deterministic_physics: bool = False  # L1 residual penalty on x_hat instead of the virtual observable
    no_dip: bool = False
    no_masks: bool = False

    def __post_init__(self):
        self.out = Path(self.out)
        self.speed = tuple(self.speed)
        self.step_weights = tuple(self.step_weights)
        if isinstance(self.losses, dict):
            self.losses = LossWeights(**self.losses)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["out"] = str(self.out)
        return values
