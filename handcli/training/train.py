"""The refiner's training loop: synthetic batches, shift-diffusion L_data + DIP + physics terms, AdamW,
periodic atomic checkpoints and resume."""

from __future__ import annotations

import json
import math
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from handcli.diffusion.conditions import build_conditions
from handcli.diffusion.model import BackboneConfig, RefinerBackbone
from handcli.diffusion.sampling import reverse_steps, sample
from handcli.diffusion.schedule import ShiftSchedule
from handcli.diffusion.weights import atomic_torch_save, save_weights
from handcli.training import losses as L
from handcli.training.config import TrainConfig
from handcli.training.data import Batch, SyntheticBatches


def checkpoint_path(out: Path) -> Path:
    return Path(out).with_suffix(".ckpt")


def build_model(config: TrainConfig) -> tuple[RefinerBackbone, ShiftSchedule]:
    schedule = ShiftSchedule(num_steps=config.num_steps, kappa=config.kappa, eta_first=config.eta_first)
    backbone = RefinerBackbone(BackboneConfig(window=config.window, width=config.width, layers=config.layers,
                                              heads=config.heads, ff_width=config.ff_width,
                                              num_steps=config.num_steps), schedule)
    return backbone, schedule


def _tensor(array, device, dtype=torch.float32):
    return None if array is None else torch.as_tensor(array, dtype=dtype, device=device)


def batch_conditions(batch: Batch, device: torch.device, no_masks: bool = False):
    """Model-space conditions and clean targets of a batch: (Conditions, clean (B, W, 21, 3) model units)."""
    conditions = build_conditions(_tensor(batch.observed, device), _tensor(batch.valid, device, torch.bool),
                                  _tensor(batch.is_right, device, torch.bool), _tensor(batch.keypoints2d, device),
                                  None, _tensor(batch.K, device), _tensor(batch.track_bones, device))
    if no_masks:  # ablation: interpolated frames look like observations
        conditions.mask3d = torch.ones_like(conditions.mask3d)
    return conditions, conditions.to_model(_tensor(batch.clean, device))


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to 5 %."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = min(1.0, (step - config.warmup) / max(1, config.steps - config.warmup))
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def training_losses(backbone: RefinerBackbone, schedule: ShiftSchedule, batch: Batch, config: TrainConfig,
                    physics, generator: torch.Generator, use_physics: bool = True) -> dict[str, torch.Tensor]:
    """All loss terms of one batch (unweighted) plus 'total' (weighted)."""
    device = next(backbone.parameters()).device
    conditions, clean = batch_conditions(batch, device, config.no_masks)
    size = clean.shape[0]
    weights = torch.as_tensor(config.step_weights, dtype=torch.float64)
    if len(weights) != schedule.num_steps:
        weights = torch.ones(schedule.num_steps, dtype=torch.float64)
    steps = (torch.multinomial(weights, size, replacement=True, generator=generator) + 1).to(device)
    noise = torch.randn(clean.shape, generator=generator).to(device)
    noisy = schedule.q_sample(clean, conditions.keypoints3d, steps, noise)
    predicted, logits = backbone(noisy, conditions, steps)
    terms = {"data": L.data_loss(predicted, clean), "velocity": L.velocity_loss(predicted, clean),
             "acceleration": L.acceleration_loss(predicted, clean), "bone": L.bone_loss(predicted, clean)}
    if not config.no_dip:
        labels = torch.as_tensor(batch.motion_state, device=device)
        terms["state"] = L.state_loss(logits, labels)
        terms["kinetic"] = L.kinetic_loss(predicted, labels)
        terms["stability"] = L.stability_loss(predicted, labels)
    if physics is not None and use_physics:
        terms["physics"] = physics_loss(backbone, schedule, physics, conditions, clean, noisy, steps, predicted,
                                        config, generator)
    weights = config.losses
    terms["total"] = sum(getattr(weights, name) * value for name, value in terms.items())
    return terms


def physics_loss(backbone, schedule, physics, conditions, clean, noisy, steps, predicted, config, generator):
    """PAD-Hand eq. 10 on a few windows: x^0 from the reverse chain started at the training x^n (no gradient
    through the earlier steps; the last step x^0 = f(x^1, y, 1) carries it), residual vs the ground truth's
    forces, scaled by the step's variance. With `deterministic_physics`: eq. 8's L1 penalty on x_hat."""
    count = min(config.physics_windows, clean.shape[0])
    part = slice(0, count)
    sub = type(conditions)(*(getattr(conditions, f.name)[part] for f in fields(conditions)))
    clean_metres = sub.to_metres(clean[part])
    if config.deterministic_physics:
        return physics.l1(sub.to_metres(predicted[part]), clean_metres)
    step = int(steps[0])  # one chain length per batch keeps it batched
    state = noisy[part]
    if step > 1:
        with torch.no_grad():
            state, _ = reverse_steps(backbone, schedule, state, sub, step, generator, stop_at=1)
    ones = torch.ones(count, dtype=torch.long, device=state.device)
    x0, _ = backbone(state, sub, ones)
    variance = float(schedule.etas[step]) / config.physics_scale  # relative to kappa^2
    return physics.nll(sub.to_metres(x0), clean_metres, variance)


@torch.no_grad()
def validation_error(backbone: RefinerBackbone, schedule: ShiftSchedule, batch: Batch) -> dict[str, float]:
    """Full reverse sampling on a fixed synthetic batch: MPJPE (mm, all frames) of x^0, of the input and of
    the smoothed input (the backbone's baseline, i.e. the classic Gaussian filter)."""
    device = next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()
    conditions, clean = batch_conditions(batch, device)
    refined, _ = sample(backbone, schedule, conditions, stochastic=False)
    backbone.train(was_training)
    to_mm = 1000 * 0.1
    return {"val_mpjpe_mm": float((refined - clean).norm(dim=-1).mean() * to_mm),
            "val_input_mm": float((conditions.keypoints3d - clean).norm(dim=-1).mean() * to_mm),
            "val_gaussian_mm": float((conditions.baseline - clean).norm(dim=-1).mean() * to_mm)}


def _rng_state(rng: np.random.Generator) -> str:
    return json.dumps(rng.bit_generator.state)


def train_refiner(config: TrainConfig, datagen=None, physics=None) -> Path:
    """Train the refiner; write `config.out` (weights) and return its path.

    Checkpoints go to `<out>.ckpt` every `checkpoint_every` steps (atomic) and a run resumes from it when the
    configuration matches. `datagen` overrides the synthetic generator module (tests); `physics` overrides the
    physics term (default: handcli.physics via physics_term.build_physics_term).
    """
    from handcli.training.physics_term import build_physics_term

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    backbone, schedule = build_model(config)
    backbone.to(device).train()
    optimizer = torch.optim.AdamW(backbone.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    physics_note = "off (no_physics)"
    if physics is None and not config.no_physics:
        physics, physics_note = build_physics_term(config)
        if physics is None:  # training on without it would make a different model without saying so
            from handcli.errors import NotBuilt

            raise NotBuilt(f"the Euler-Lagrange physics term is {physics_note}; build it (make hand-model) or "
                           "train with no_physics=True")
    elif physics is not None:
        physics_note = "supplied"
    source = SyntheticBatches(config.batch_size, config.window, rng, datagen=datagen, rotate=config.rotate,
                              prob_2d=config.prob_2d, corruption=config.corruption, pool_size=config.pool_size,
                              refresh=config.pool_refresh, speed=config.speed)
    validation = SyntheticBatches(64, config.window, np.random.default_rng(12345), datagen=datagen,
                                  rotate=config.rotate, prob_2d=0.0, corruption=config.corruption,
                                  pool_size=min(32, config.pool_size), refresh=0, speed=config.speed).next()

    start_step, elapsed = 0, 0.0
    ckpt = checkpoint_path(config.out)
    comparable = {k: v for k, v in config.to_dict().items()
                  if k not in ("steps", "progress", "log_every", "direct_estimate")}
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if state.get("config") == json.dumps(comparable, sort_keys=True):
            backbone.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            rng.bit_generator.state = json.loads(state["numpy_rng"])
            generator.set_state(state["torch_rng"])
            start_step, elapsed = int(state["step"]), float(state["elapsed"])
            print(f"resuming from {ckpt} at step {start_step}")
        else:
            print(f"ignoring {ckpt}: it was written with a different configuration")

    def save_checkpoint(step: int, seconds: float) -> None:
        atomic_torch_save({"model": backbone.state_dict(), "optimizer": optimizer.state_dict(),
                           "numpy_rng": _rng_state(rng), "torch_rng": generator.get_state(), "step": step,
                           "elapsed": seconds, "config": json.dumps(comparable, sort_keys=True)}, ckpt)

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    history: dict[str, float] = {}
    running: dict[str, float] = {}
    started = time.perf_counter() - elapsed
    columns = (TextColumn("training refiner"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not config.progress) as progress:
        task = progress.add_task("train", total=config.steps, completed=start_step, status="")
        for step in range(start_step, config.steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step)
            terms = training_losses(backbone, schedule, source.next(), config, physics, generator,
                                    use_physics=step % config.physics_every == 0)
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            torch.nn.utils.clip_grad_norm_(backbone.parameters(), config.grad_clip)
            optimizer.step()
            for name, value in terms.items():
                total, count = running.get(name, (0.0, 0))
                running[name] = (total + float(value.detach()), count + 1)
            done = step + 1
            if done % config.log_every == 0 or done == config.steps:
                history = {name: total / count for name, (total, count) in running.items()}
                running = {}
                if done % (config.log_every * 5) == 0 or done == config.steps:
                    history.update(validation_error(backbone, schedule, validation))
                status = " ".join(f"{k}={v:.3f}" for k, v in history.items())
                progress.update(task, status=f"loss={history['total']:.3f}")
                if not config.progress or not progress.console.is_terminal:
                    print(f"step {done} {time.perf_counter() - started:.0f}s {status}", flush=True)
            progress.update(task, completed=done)
            if done % config.checkpoint_every == 0 and done < config.steps:
                save_checkpoint(done, time.perf_counter() - started)
    seconds = time.perf_counter() - started
    info = {"train_config": config.to_dict(), "train_seconds": round(seconds, 1), "final": history,
            "physics": physics_note, "torch": str(torch.__version__), "direct": config.direct_estimate}
    save_weights(config.out, backbone, schedule, info)
    save_checkpoint(config.steps, seconds)
    return config.out
