"""Time the hand physics on 1,000 frames (CPU): RNEA, sequence forces, their gradient, M(q), a force Jacobian.

    .venv/bin/python scripts/bench_physics.py [--frames 1000] [--repeats 20] [--threads N]

Uses a random hand-sized tree (rest joints and inertias of the right magnitude); timings do not depend on
the values. Prints the best and median wall time of each call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from handcli.handmodels.kinematics import MANO_PARENTS, axis_angle_to_matrix
from handcli.physics import (PartInertia, banded_force_jacobian, force_jacobian, inverse_dynamics, mass_matrix,
                             sequence_dynamics)


def time_ms(fn, repeats: int) -> tuple[float, float]:
    """(best, median) wall time in ms; the best is the figure least inflated by other processes."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times), 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    frames, joints = args.frames, len(MANO_PARENTS)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {frames} frames, "
          f"load average before: {os.getloadavg()[0]:.2f}")
    for dtype in (torch.float32, torch.float64):
        gen = torch.Generator().manual_seed(0)
        rest = torch.randn(joints, 3, generator=gen, dtype=dtype) * 0.03
        inertia = PartInertia(torch.full((joints,), 0.02, dtype=dtype), rest + 0.005,
                              torch.eye(3, dtype=dtype).expand(joints, 3, 3) * 2e-6)
        pose = torch.randn(frames, joints, 3, generator=gen, dtype=dtype) * 0.3
        transl = torch.randn(frames, 3, generator=gen, dtype=dtype) * 0.01
        rotations = axis_angle_to_matrix(pose)
        velocity = torch.randn(frames, 6 + 3 * (joints - 1), generator=gen, dtype=dtype)
        acceleration = torch.randn_like(velocity)

        def backward():
            leaf = pose.clone().requires_grad_()
            sequence_dynamics(leaf, transl, 30.0, rest, inertia).square().sum().backward()

        window = pose[:16]
        timings = {
            "inverse_dynamics (RNEA), 1000 states":
                lambda: inverse_dynamics(rotations, velocity, acceleration, rest, inertia),
            "sequence_dynamics (finite differences + RNEA)":
                lambda: sequence_dynamics(pose, transl, 30.0, rest, inertia),
            "sequence_dynamics forward + backward": backward,
            "mass_matrix M(q), 1000 states": lambda: mass_matrix(rotations, rest, inertia),
            "force_jacobian, one 16-frame window (816 x 768)": lambda: force_jacobian(
                lambda p: sequence_dynamics(p, transl[:16], 30.0, rest, inertia), window),
            "banded_force_jacobian, one 16-frame window": lambda: banded_force_jacobian(
                lambda p: sequence_dynamics(p, transl[:16], 30.0, rest, inertia), window),
            "banded_force_jacobian, all frames": lambda: banded_force_jacobian(
                lambda p: sequence_dynamics(p, transl, 30.0, rest, inertia), pose),
        }
        for name, fn in timings.items():
            repeats = 2 if "all frames" in name else 3 if "mass" in name or "jacobian" in name else args.repeats
            best, median = time_ms(fn, repeats)
            print(f"{str(dtype).removeprefix('torch.'):8s} {name:50s} best {best:8.1f} ms  median {median:8.1f} ms")
    print(f"load average after: {os.getloadavg()[0]:.2f} (2 cores; other processes inflate the figures)")


if __name__ == "__main__":
    main()
