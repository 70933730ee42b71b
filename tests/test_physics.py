"""Hand physics: mesh inertia against closed-form solids, RNEA against Pinocchio and energy balance,
finite differences against analytic trajectories, residuals and force Jacobians."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from handcli.errors import BadInput
from handcli.handmodels.kinematics import MANO_PARENTS, axis_angle_to_matrix, forward_kinematics
from handcli.physics import (HAND_DENSITY, NUM_DOF, PartInertia, PartMesh, angular_derivatives,
                             banded_force_jacobian, banded_force_variance, el_l1_loss,
                             el_nll_loss, el_residual_metric, euler_lagrange_residual, force_jacobian,
                             force_variance, generalized_derivatives, inverse_dynamics, mass_matrix, mesh_volume,
                             part_inertia, rotation_log, sequence_dynamics)

DTYPE = torch.float64
NUM_JOINTS = len(MANO_PARENTS)


# ---------------------------------------------------------------- meshes made here

def slab_box(width: float, depth: float, heights: np.ndarray):
    """Closed box split along z into len(heights)-1 slabs: vertices (4 (K+1), 3), faces, weights (V, K).

    Ring k's vertices weigh 0.6 on slab k and 0.4 on slab k-1, so every side triangle between rings k and
    k+1 is dominated by slab k, and each slab closed at its rings is exactly a box.
    """
    num_slabs = len(heights) - 1
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * np.array([width, depth]) / 2  # CCW seen from +z
    vertices = np.array([[x, y, z] for z in heights for x, y in corners])
    ring = lambda k, i: 4 * k + i % 4
    faces = []
    for k in range(num_slabs):
        for i in range(4):
            faces += [[ring(k, i), ring(k, i + 1), ring(k + 1, i + 1)],
                      [ring(k, i), ring(k + 1, i + 1), ring(k + 1, i)]]
    faces += [[ring(0, 0), ring(0, 2), ring(0, 1)], [ring(0, 0), ring(0, 3), ring(0, 2)]]
    top = num_slabs
    faces += [[ring(top, 0), ring(top, 1), ring(top, 2)], [ring(top, 0), ring(top, 2), ring(top, 3)]]
    weights = np.zeros((len(vertices), num_slabs))
    for k in range(num_slabs + 1):
        rows = slice(4 * k, 4 * k + 4)
        if k == 0 or k == num_slabs:
            weights[rows, min(k, num_slabs - 1)] = 1.0
        else:
            weights[rows, k], weights[rows, k - 1] = 0.6, 0.4
    return torch.tensor(vertices, dtype=DTYPE), torch.tensor(faces), torch.tensor(weights, dtype=DTYPE)


def icosphere(subdivisions: int, radius: float = 1.0):
    """Unit icosahedron refined `subdivisions` times and pushed onto the sphere: (V, 3), (F, 3), outward."""
    phi = (1 + 5**0.5) / 2
    vertices = [[-1, phi, 0], [1, phi, 0], [-1, -phi, 0], [1, -phi, 0], [0, -1, phi], [0, 1, phi], [0, -1, -phi],
                [0, 1, -phi], [phi, 0, -1], [phi, 0, 1], [-phi, 0, -1], [-phi, 0, 1]]
    faces = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
             [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5], [2, 4, 11],
             [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    vertices = [np.array(v, dtype=float) / np.linalg.norm(v) for v in vertices]
    for _ in range(subdivisions):
        midpoint_cache: dict[tuple[int, int], int] = {}

        def midpoint(a: int, b: int) -> int:
            key = (min(a, b), max(a, b))
            if key not in midpoint_cache:
                mid = vertices[a] + vertices[b]
                vertices.append(mid / np.linalg.norm(mid))
                midpoint_cache[key] = len(vertices) - 1
            return midpoint_cache[key]

        refined = []
        for a, b, c in faces:
            ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
            refined += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        faces = refined
    return torch.tensor(np.array(vertices) * radius, dtype=DTYPE), torch.tensor(faces)


def box_inertia(mass: float, sides: tuple[float, float, float]) -> torch.Tensor:
    a, b, c = sides
    return torch.diag(torch.tensor([b * b + c * c, a * a + c * c, a * a + b * b], dtype=DTYPE)) * mass / 12


def random_rotation(seed: int) -> torch.Tensor:
    return axis_angle_to_matrix(torch.randn(3, generator=torch.Generator().manual_seed(seed), dtype=DTYPE))


# ---------------------------------------------------------------- inertia

def test_box_slabs_match_closed_form_per_part_and_in_total():
    heights = np.cumsum([0.0, 0.02, 0.035, 0.01, 0.05])
    width, depth = 0.08, 0.03
    vertices, faces, weights = slab_box(width, depth, heights)
    rotation, shift = random_rotation(1), torch.tensor([0.1, -0.3, 0.5], dtype=DTYPE)
    moved = vertices @ rotation.T + shift
    result = part_inertia(moved, faces, weights, density=HAND_DENSITY)
    for k in range(len(heights) - 1):
        height = heights[k + 1] - heights[k]
        mass = HAND_DENSITY * width * depth * height
        com = rotation @ torch.tensor([0, 0, (heights[k] + heights[k + 1]) / 2], dtype=DTYPE) + shift
        inertia = rotation @ box_inertia(mass, (width, depth, height)) @ rotation.T
        torch.testing.assert_close(result.mass[k], torch.tensor(mass, dtype=DTYPE), rtol=1e-12, atol=0)
        torch.testing.assert_close(result.com[k], com, rtol=0, atol=1e-14)
        torch.testing.assert_close(result.inertia[k], inertia, rtol=0, atol=1e-14 * mass)
    total = HAND_DENSITY * mesh_volume(moved, faces)
    torch.testing.assert_close(result.mass.sum(), total, rtol=1e-12, atol=0)
    torch.testing.assert_close(total, torch.tensor(HAND_DENSITY * width * depth * heights[-1], dtype=DTYPE))


def test_sphere_matches_closed_form():
    radius = 0.05
    vertices, faces = icosphere(4, radius)  # 5120 triangles
    result = part_inertia(vertices, faces, torch.ones(len(vertices), 1, dtype=DTYPE))
    mass = HAND_DENSITY * 4 / 3 * math.pi * radius**3
    # an inscribed polyhedron is slightly smaller than the sphere: 0.3% at this resolution
    assert result.mass[0].item() == pytest.approx(mass, rel=4e-3)
    assert result.com[0].abs().max().item() < 1e-15
    torch.testing.assert_close(result.inertia[0], torch.eye(3, dtype=DTYPE) * 0.4 * mass * radius**2, rtol=8e-3,
                               atol=1e-12 * mass * radius**2)


def test_parts_add_up_to_the_whole_closed_mesh():
    """Bands of a sphere cut by skinning weights (jagged boundaries): caps cancel pairwise."""
    vertices, faces = icosphere(3, 0.04)
    vertices = vertices * torch.tensor([1.0, 1.3, 2.0], dtype=DTYPE) + torch.tensor([0.2, 0.1, 0.4], dtype=DTYPE)
    z = vertices[:, 2]
    centres = torch.linspace(z.min().item(), z.max().item(), 6, dtype=DTYPE)
    weights = torch.softmax(-((z[:, None] - centres) / 0.01) ** 2, -1)
    parts = part_inertia(vertices, faces, weights)
    whole = part_inertia(vertices, faces, torch.ones(len(vertices), 1, dtype=DTYPE))
    assert (parts.mass > 0).all()
    torch.testing.assert_close(parts.mass.sum(), HAND_DENSITY * mesh_volume(vertices, faces), rtol=1e-12, atol=0)
    torch.testing.assert_close(parts.mass.sum(), whole.mass[0], rtol=1e-12, atol=0)
    com = (parts.mass[:, None] * parts.com).sum(0) / parts.mass.sum()
    torch.testing.assert_close(com, whole.com[0], rtol=0, atol=1e-13)
    # parallel-axis theorem: the parts' inertias moved to the common centre add up to the whole's
    offset = parts.com - com
    shifted = parts.inertia + parts.mass[:, None, None] * (
        (offset * offset).sum(-1)[:, None, None] * torch.eye(3, dtype=DTYPE) - offset[:, :, None] * offset[:, None, :])
    scale = whole.inertia[0].abs().max().item()
    torch.testing.assert_close(shifted.sum(0), whole.inertia[0], rtol=1e-10, atol=1e-12 * scale)


def test_inward_orientation_and_batch_dims():
    vertices, faces, weights = slab_box(0.05, 0.02, np.array([0.0, 0.01, 0.03]))
    outward = part_inertia(vertices, faces, weights)
    inward = part_inertia(vertices, faces.flip(-1), weights)
    for a, b in zip(outward, inward):
        torch.testing.assert_close(a, b)
    mesh = PartMesh(faces, weights)
    batched = mesh.inertia(torch.stack([vertices, 2 * vertices]))
    torch.testing.assert_close(batched.mass[0], outward.mass)
    torch.testing.assert_close(batched.mass[1], 8 * outward.mass)  # volume scales with the cube of size


def test_inertia_is_differentiable_in_vertices():
    vertices, faces, weights = slab_box(0.05, 0.02, np.array([0.0, 0.01, 0.03]))
    mesh = PartMesh(faces, weights)
    probe = lambda v: torch.cat([f.flatten() for f in mesh.inertia(v)]) * torch.tensor(1e3, dtype=DTYPE)
    assert torch.autograd.gradcheck(probe, (vertices.clone().requires_grad_(),), eps=1e-7, atol=1e-6, fast_mode=True)


# ---------------------------------------------------------------- a random hand-like tree

def random_hand(seed: int = 0):
    """rest joints (16, 3) and PartInertia with positive definite inertia tensors (float64)."""
    gen = torch.Generator().manual_seed(seed)
    rest = torch.randn(NUM_JOINTS, 3, generator=gen, dtype=DTYPE) * 0.03
    mass = torch.rand(NUM_JOINTS, generator=gen, dtype=DTYPE) * 0.05 + 0.005
    com = rest + torch.randn(NUM_JOINTS, 3, generator=gen, dtype=DTYPE) * 0.01
    factor = torch.randn(NUM_JOINTS, 3, 3, generator=gen, dtype=DTYPE) * 0.005
    inertia = factor @ factor.transpose(-1, -2) + 1e-6 * torch.eye(3, dtype=DTYPE)
    return rest, PartInertia(mass, com, inertia)


def random_state(batch: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    rotations = axis_angle_to_matrix(torch.randn(batch, NUM_JOINTS, 3, generator=gen, dtype=DTYPE))
    velocity = torch.randn(batch, NUM_DOF, generator=gen, dtype=DTYPE)
    acceleration = torch.randn(batch, NUM_DOF, generator=gen, dtype=DTYPE) * 10
    return rotations, velocity, acceleration


# ---------------------------------------------------------------- dynamics against Pinocchio

def test_rnea_and_mass_matrix_match_pinocchio():
    pin = pytest.importorskip("pinocchio")
    rest, inertia = random_hand(3)
    gravity = np.array([0.5, 9.81, -1.0])
    model = pin.Model()
    model.gravity = pin.Motion(gravity, np.zeros(3))  # Pinocchio's Motion is (linear, angular)
    joint_ids: list[int] = []
    for j, parent in enumerate(MANO_PARENTS):
        if parent < 0:
            joint_id = model.addJoint(0, pin.JointModelFreeFlyer(), pin.SE3.Identity(), "wrist")
        else:
            placement = pin.SE3(np.eye(3), (rest[j] - rest[parent]).numpy())
            joint_id = model.addJoint(joint_ids[parent], pin.JointModelSpherical(), placement, f"joint{j}")
        body = pin.Inertia(inertia.mass[j].item(), (inertia.com[j] - rest[j]).numpy(), inertia.inertia[j].numpy())
        model.appendBodyToJoint(joint_id, body, pin.SE3.Identity())
        joint_ids.append(joint_id)
    data = model.createData()

    rotations, velocity, acceleration = random_state(6, seed=4)
    ours = inverse_dynamics(rotations, velocity, acceleration, rest, inertia, gravity=tuple(gravity))
    ours_mass = mass_matrix(rotations, rest, inertia)
    rng = np.random.default_rng(0)
    for b in range(len(rotations)):
        # FreeFlyer q = (position, quaternion xyzw), Spherical q = quaternion xyzw; the position is arbitrary
        q = np.concatenate([rng.normal(size=3)] + [pin.Quaternion(r.numpy()).coeffs() for r in rotations[b]])
        tau = pin.rnea(model, data, q, velocity[b].numpy(), acceleration[b].numpy())
        np.testing.assert_allclose(ours[b].numpy(), tau, rtol=1e-9, atol=1e-9 * np.abs(tau).max())
        upper = pin.crba(model, data, q)  # only the upper triangle is filled
        full = np.triu(upper) + np.triu(upper, 1).T
        np.testing.assert_allclose(ours_mass[b].numpy(), full, rtol=1e-9, atol=1e-9 * np.abs(full).max())


# ---------------------------------------------------------------- dynamics without an oracle

def test_static_hand_holds_its_weight():
    rest, inertia = random_hand(5)
    rotations, _, _ = random_state(3, seed=6)
    zero = torch.zeros(3, NUM_DOF, dtype=DTYPE)
    gravity = torch.tensor([0.0, 9.81, 0.0], dtype=DTYPE)
    tau = inverse_dynamics(rotations, zero, zero, rest, inertia, gravity=gravity)
    positions, transforms = forward_kinematics(rotations, rest)
    com_world = (transforms[:, :, :3, :3] @ inertia.com[..., None])[..., 0] + transforms[:, :, :3, 3]
    total_mass = inertia.mass.sum()
    wrist = rotations[:, 0]
    support = -total_mass * gravity  # world force that holds the hand still
    torch.testing.assert_close(tau[:, :3], (wrist.transpose(-1, -2) @ support[:, None])[..., 0])
    weight = (-inertia.mass[:, None] * gravity).expand_as(com_world)
    moment = torch.cross(com_world - positions[:, :1], weight, dim=-1).sum(1)
    torch.testing.assert_close(tau[:, 3:6], (wrist.transpose(-1, -2) @ moment[..., None])[..., 0])


def hand_trajectory(fps: float, frames: int, seed: int = 0):
    """Smooth non-planar motion: local rotations exp(a t) exp(b sin t) and a curved translation."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(NUM_JOINTS, 3, generator=gen, dtype=DTYPE)
    b = torch.randn(NUM_JOINTS, 3, generator=gen, dtype=DTYPE)
    time = torch.arange(frames, dtype=DTYPE) / fps
    rotations = axis_angle_to_matrix(a * time[:, None, None]) @ axis_angle_to_matrix(b * torch.sin(time)[:, None, None])
    transl = torch.stack([0.1 * torch.sin(2 * time), 0.05 * time**2, 0.3 + 0.02 * torch.cos(3 * time)], -1)
    return rotations, transl


def kinetic_energy_from_positions(rotations, transl, fps, rest, inertia):
    """Σ ½ m |ċ|² + ½ ω·Iω with centre-of-mass velocities from differentiated forward kinematics (no RNEA)."""
    _, transforms = forward_kinematics(rotations, rest)
    world_rot = transforms[..., :3, :3]
    com = (world_rot @ inertia.com[..., None])[..., 0] + transforms[..., :3, 3] + transl[:, None]
    com_velocity = (com[2:] - com[:-2]) * fps / 2
    spin = (world_rot[1:-1].transpose(-1, -2) @ (world_rot[2:] - world_rot[:-2]) * fps / 2)  # ≈ [ω_body]x
    omega = torch.stack([spin[..., 2, 1], spin[..., 0, 2], spin[..., 1, 0]], -1)
    # inertia about the COM in the part frame = mesh-frame inertia (parts are aligned with the mesh at rest)
    rotational = (omega * (inertia.inertia @ omega[..., None])[..., 0]).sum(-1)
    return 0.5 * (inertia.mass * (com_velocity**2).sum(-1) + rotational).sum(-1)  # (T-2,)


def test_mass_matrix_gives_the_kinetic_energy():
    rest, inertia = random_hand(7)
    fps = 2000.0
    rotations, transl = hand_trajectory(fps, 40)
    velocity, _ = generalized_derivatives(rotations, transl, fps)
    mass = mass_matrix(rotations, rest, inertia)
    energy = 0.5 * (velocity[..., None, :] @ mass @ velocity[..., :, None])[..., 0, 0]
    reference = kinetic_energy_from_positions(rotations, transl, fps, rest, inertia)
    torch.testing.assert_close(energy[1:-1], reference, rtol=1e-5, atol=0)
    eigenvalues = torch.linalg.eigvalsh(mass)
    assert (eigenvalues > 0).all()
    torch.testing.assert_close(mass, mass.transpose(-1, -2))


def test_power_balance_checks_coriolis_terms():
    """Without gravity, q̇ᵀ τ equals d/dt of the kinetic energy ½ q̇ᵀ M q̇."""
    rest, inertia = random_hand(8)
    fps = 2000.0
    rotations, transl = hand_trajectory(fps, 24, seed=2)
    velocity, acceleration = generalized_derivatives(rotations, transl, fps)
    tau = inverse_dynamics(rotations, velocity, acceleration, rest, inertia, gravity=None)
    power = (velocity * tau).sum(-1)
    mass = mass_matrix(rotations, rest, inertia)
    energy = 0.5 * (velocity[..., None, :] @ mass @ velocity[..., :, None])[..., 0, 0]
    energy_rate = (energy[2:] - energy[:-2]) * fps / 2
    torch.testing.assert_close(power[3:-3], energy_rate[2:-2], rtol=1e-4, atol=1e-6 * power.abs().max().item())
    # dropping the velocity-product terms breaks the balance: the check is sensitive to C(q, q̇)
    without_coriolis = (velocity * (mass @ acceleration[..., None])[..., 0]).sum(-1)
    assert not torch.allclose(without_coriolis[3:-3], energy_rate[2:-2], rtol=1e-2)


# ---------------------------------------------------------------- finite differences

def test_derivatives_are_exact_for_quadratic_motion_about_fixed_axes():
    fps, frames = 30.0, 7
    time = torch.arange(frames, dtype=DTYPE) / fps
    axis = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.8], dtype=DTYPE), dim=0)
    angle = 0.4 + 1.5 * time - 3.0 * time**2
    rotations = axis_angle_to_matrix(angle[:, None] * axis)
    omega, omega_dot = angular_derivatives(rotations, 1 / fps)
    torch.testing.assert_close(omega, (1.5 - 6.0 * time)[:, None] * axis)
    torch.testing.assert_close(omega_dot, (-6.0 * torch.ones_like(time))[:, None] * axis)


def test_angular_derivatives_converge_at_second_order():
    """R(t) = exp(t a) exp(t b): body rate ω = exp(-t b) a + b, ω̇ = -b × exp(-t b) a."""
    a = torch.tensor([0.7, -0.2, 0.4], dtype=DTYPE)
    b = torch.tensor([-0.3, 0.9, 0.5], dtype=DTYPE)
    errors = []
    for fps in (50.0, 100.0):
        time = torch.arange(int(fps) + 1, dtype=DTYPE) / fps  # one second
        rotations = axis_angle_to_matrix(a * time[:, None]) @ axis_angle_to_matrix(b * time[:, None])
        back = axis_angle_to_matrix(-b * time[:, None])
        omega_true = (back @ a) + b
        omega_dot_true = -torch.cross(b.expand_as(omega_true), back @ a, dim=-1)
        omega, omega_dot = angular_derivatives(rotations, 1 / fps)
        errors.append(((omega - omega_true)[1:-1].abs().max(), (omega_dot - omega_dot_true)[1:-1].abs().max()))
    for coarse, fine in zip(*errors):
        assert 3.5 < coarse / fine < 4.5  # halving h divides the error by 4


def test_rotation_log_inverts_exp_and_has_finite_gradients_at_identity():
    axis_angle = torch.tensor([[0.0, 0.0, 0.0], [1e-9, 0, 0], [0.3, -1.2, 0.5], [0, 0, 3.1]], dtype=DTYPE)
    torch.testing.assert_close(rotation_log(axis_angle_to_matrix(axis_angle)), axis_angle)
    probe = torch.zeros(3, dtype=DTYPE, requires_grad=True)
    (rotation_log(axis_angle_to_matrix(probe)) * torch.tensor([1.0, 2.0, 3.0], dtype=DTYPE)).sum().backward()
    torch.testing.assert_close(probe.grad, torch.tensor([1.0, 2.0, 3.0], dtype=DTYPE))


def test_sequence_dynamics_batches_and_takes_axis_angle():
    rest, inertia = random_hand(9)
    gen = torch.Generator().manual_seed(10)
    pose = torch.randn(2, 12, NUM_JOINTS, 3, generator=gen, dtype=DTYPE) * 0.3
    transl = torch.randn(2, 12, 3, generator=gen, dtype=DTYPE) * 0.01
    batched = sequence_dynamics(pose, transl, 30.0, rest.expand(2, -1, -1), inertia)
    assert batched.shape == (2, 12, NUM_DOF)
    for i in range(2):
        single = sequence_dynamics(axis_angle_to_matrix(pose[i]), transl[i], 30.0, rest, inertia)
        torch.testing.assert_close(batched[i], single)
    with pytest.raises(BadInput):
        sequence_dynamics(pose[:, :2], transl[:, :2], 30.0, rest, inertia)


# ---------------------------------------------------------------- residuals and Jacobians

def test_residual_losses_and_metric():
    gen = torch.Generator().manual_seed(11)
    forces = torch.randn(3, 8, NUM_DOF, generator=gen, dtype=DTYPE)
    pseudo = torch.randn(3, 8, NUM_DOF, generator=gen, dtype=DTYPE)
    residual = euler_lagrange_residual(forces, pseudo)
    torch.testing.assert_close(el_l1_loss(residual), (forces - pseudo).abs().sum() / 3)
    sigma = torch.tensor([0.5, 1.0, 2.0], dtype=DTYPE)
    expected = sum(((forces[i] - pseudo[i]) ** 2).sum() / (2 * sigma[i]) for i in range(3)) / 3
    torch.testing.assert_close(el_nll_loss(residual, sigma), expected)
    metric = el_residual_metric(forces, pseudo)
    assert metric.shape == (3,)
    torch.testing.assert_close(metric[1], (forces[1] - pseudo[1]).abs().sum(-1).mean())
    assert (el_residual_metric(forces, forces) == 0).all()


def test_jittered_motion_has_a_larger_residual_than_the_truth():
    rest, inertia = random_hand(12)
    rotations, transl = hand_trajectory(30.0, 16, seed=3)
    truth = sequence_dynamics(rotations, transl, 30.0, rest, inertia)
    noise = torch.randn(16, NUM_JOINTS, 3, generator=torch.Generator().manual_seed(13), dtype=DTYPE) * 0.05
    jittered = sequence_dynamics(axis_angle_to_matrix(noise) @ rotations, transl, 30.0, rest, inertia)
    assert el_residual_metric(jittered, truth) > 10 * el_residual_metric(truth, truth + 1e-6)


def test_force_jacobian_forward_reverse_and_finite_differences_agree():
    rest, inertia = random_hand(14)
    frames = 4
    transl = torch.zeros(frames, 3, dtype=DTYPE)
    force_fn = lambda pose: sequence_dynamics(pose, transl, 30.0, rest, inertia)
    # a static hand: every relative rotation is the identity, where a careless log has no gradient
    static = force_jacobian(force_fn, torch.zeros(frames, NUM_JOINTS, 3, dtype=DTYPE))
    assert torch.isfinite(static).all() and static.abs().max() > 0
    pose = torch.randn(frames, NUM_JOINTS, 3, generator=torch.Generator().manual_seed(15), dtype=DTYPE) * 0.2
    forward = force_jacobian(force_fn, pose)
    assert forward.shape == (frames * NUM_DOF, frames * NUM_JOINTS * 3)
    torch.testing.assert_close(forward, force_jacobian(force_fn, pose, forward_mode=False))
    step = torch.zeros_like(pose)
    step[2, 5, 1] = 1e-6
    numeric = (force_fn(pose + step) - force_fn(pose - step)).flatten() / 2e-6
    torch.testing.assert_close(forward[:, (2 * NUM_JOINTS + 5) * 3 + 1], numeric, rtol=1e-5, atol=1e-7)

    motion_variance = torch.rand(frames, NUM_JOINTS, 3, generator=torch.Generator().manual_seed(16), dtype=DTYPE)
    variance = force_variance(forward, motion_variance)
    torch.testing.assert_close(variance, (forward @ torch.diag(motion_variance.flatten()) @ forward.T).diagonal())
    # the banded Jacobian holds exactly the non-zero blocks of the dense one
    blocks = banded_force_jacobian(force_fn, pose)
    dense = forward.reshape(frames, NUM_DOF, frames, NUM_JOINTS * 3)
    for t in range(frames):
        first = min(max(t - 1, 0), frames - 3)
        torch.testing.assert_close(blocks[t], dense[t, :, first:first + 3])
        outside = torch.ones(frames, dtype=torch.bool)
        outside[first:first + 3] = False
        assert (dense[t][:, outside] == 0).all()
    torch.testing.assert_close(banded_force_variance(blocks, motion_variance), variance.reshape(frames, NUM_DOF))


def test_hand_physics_from_a_hand_model_of_box_slabs():
    """A HandModel whose 16 parts are box slabs: inertia from the shaped rest mesh, rest joints from the model."""
    base = pytest.importorskip("handcli.handmodels.base")
    heights = np.linspace(0.0, 0.16, NUM_JOINTS + 1)
    vertices, faces, weights = slab_box(0.08, 0.02, heights)
    num_vertices = len(vertices)
    shapedirs = torch.zeros(num_vertices, 3, 2, dtype=DTYPE)
    shapedirs[:, 0, 0] = vertices[:, 0]  # beta_0 widens the box along x
    joints = torch.tensor([[0.0, 0.0, z] for z in heights[:-1]], dtype=DTYPE)
    model = base.HandModel("slabs", v_template=vertices, shapedirs=shapedirs, joint_template=joints,
                           joint_shapedirs=torch.zeros(NUM_JOINTS, 3, 2, dtype=DTYPE), skinning_weights=weights,
                           faces=faces, tip_vertex_ids=[0, 1, 2, 3, 4], dtype=DTYPE)
    from handcli.physics import hand_physics
    betas = torch.tensor([[0.0, 0.0], [0.5, 0.0]], dtype=DTYPE)
    rest, inertia = hand_physics(model, betas)
    assert rest.shape == (2, NUM_JOINTS, 3) and inertia.mass.shape == (2, NUM_JOINTS)
    slab_mass = HAND_DENSITY * 0.08 * 0.02 * 0.01
    torch.testing.assert_close(inertia.mass[0], torch.full((NUM_JOINTS,), slab_mass, dtype=DTYPE))
    torch.testing.assert_close(inertia.mass[1], torch.full((NUM_JOINTS,), 1.5 * slab_mass, dtype=DTYPE))
    # a batch of shapes flows through the sequence dynamics, one shape per sequence
    pose = torch.zeros(2, 5, NUM_JOINTS, 3, dtype=DTYPE)
    forces = sequence_dynamics(pose, torch.zeros(2, 5, 3, dtype=DTYPE), 30.0, rest, inertia)
    torch.testing.assert_close(forces[:, :, 1], -9.81 * inertia.mass.sum(-1)[:, None].expand(2, 5))


def synthetic_skeleton21() -> torch.Tensor:
    """Rest joints in MANO21 order in MANO's rest frame: fingers along -x, palm facing -y, thumb towards +z."""
    joints = torch.zeros(21, 3, dtype=DTYPE)
    finger_bases = {1: (0.025, 17), 4: (0.005, 18), 10: (-0.013, 19), 7: (-0.03, 20)}  # base joint: (z, tip)
    for base, (z, tip) in finger_bases.items():
        x = -0.09
        for k, length in enumerate((0.045, 0.028, 0.022)):
            joints[base + k] = torch.tensor([x, 0.0, z], dtype=DTYPE)
            x -= length
        joints[tip] = torch.tensor([x, 0.0, z], dtype=DTYPE)
    direction = torch.nn.functional.normalize(torch.tensor([-1.0, -0.3, 1.0], dtype=DTYPE), dim=0)
    point = torch.tensor([-0.025, -0.01, 0.02], dtype=DTYPE)
    for k, length in enumerate((0.0, 0.04, 0.035, 0.03)):
        point = point + length * direction
        joints[(13, 14, 15, 16)[k]] = point
    return joints


def test_forces_from_keypoints_recover_the_motion_forces():
    """Keypoints of a known motion (fingers flexing in their rest plane, so the IK's twist choice is exact)
    give the same forces as the motion itself; the banded Jacobian through the IK matches the dense one."""
    pytest.importorskip("handcli.fitting")
    from handcli.handmodels.kinematics import MANO21_PARENTS, MANO21_TO_CANONICAL
    from handcli.physics import forces_from_keypoints

    rest21 = synthetic_skeleton21()
    _, inertia = random_hand(17)
    frames, fps = 12, 30.0
    time = torch.arange(frames, dtype=DTYPE) / fps
    pose = torch.zeros(frames, NUM_JOINTS, 3, dtype=DTYPE)
    pose[:, 0] = torch.stack([0.3 * torch.sin(time), 0.5 * time, 0.2 + 0.1 * torch.cos(2 * time)], -1)
    for joint in range(1, 13):  # the four fingers flex about the rest z axis
        pose[:, joint, 2] = -(0.4 + 0.3 * torch.sin(3 * time + joint))
    transl = torch.stack([0.05 * time, 0.02 * torch.sin(time), 0.4 + 0.01 * time], -1)
    rotations21 = torch.cat([axis_angle_to_matrix(pose), torch.eye(3, dtype=DTYPE).expand(frames, 5, 3, 3)], 1)
    positions, _ = forward_kinematics(rotations21, rest21, MANO21_PARENTS)
    keypoints = (positions + transl[:, None])[:, list(MANO21_TO_CANONICAL)]

    expected = sequence_dynamics(pose, transl, fps, rest21[:16], inertia)
    forces = forces_from_keypoints(torch.stack([keypoints, keypoints]), rest21.expand(2, 21, 3), inertia, fps)
    torch.testing.assert_close(forces, expected.expand(2, -1, -1), rtol=1e-9, atol=1e-9 * expected.abs().max().item())

    window = keypoints[:4]
    force_fn = lambda points: forces_from_keypoints(points[None], rest21, inertia, fps)[0]
    dense = force_jacobian(force_fn, window).reshape(4, NUM_DOF, 4, 63)
    blocks = banded_force_jacobian(force_fn, window)
    for t in range(4):
        first = min(max(t - 1, 0), 1)
        torch.testing.assert_close(blocks[t], dense[t, :, first:first + 3])
