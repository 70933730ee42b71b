"""Mass, centre of mass and inertia tensor of each hand part, from a skinned triangle mesh.

Each triangle goes to the part whose skinning weights dominate its three vertices. A part's triangles form
an open surface (it is cut where the neighbouring parts begin), so each of its boundary loops is closed by
a fan of triangles to the loop's centroid. The closed surface is then integrated exactly by signed
tetrahedra (divergence theorem): for a tetrahedron (0, a, b, c) with volume V = det[a, b, c] / 6,

    ∫ 1 dV = V,    ∫ x dV = V (a + b + c) / 4,    ∫ x xᵀ dV = V / 20 (a aᵀ + b bᵀ + c cᵀ + s sᵀ), s = a + b + c,

which is exact for any closed, consistently oriented triangle surface. Two parts that share a boundary loop
get the same cap with opposite orientations, so where parts meet along whole loops their volumes add up
to the volume of the whole mesh.

The topology (which triangles and caps belong to which part) depends only on `faces` and the skinning
weights, so `PartMesh` computes it once; `PartMesh.inertia(vertices)` is then plain differentiable torch.
"""

from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple

import numpy as np
import torch

from handcli.errors import BadInput

# Density of the hand segment, 1.16 g/cm^3: Dempster (1955), "Space requirements of the seated operator",
# WADC-TR-55-159, as tabulated in D. A. Winter, "Biomechanics and Motor Control of Human Movement",
# 4th ed. (2009), Table 4.1. PAD-Hand (§3.1) likewise takes a constant density from the literature.
HAND_DENSITY = 1.16e3  # kg/m^3


class PartInertia(NamedTuple):
    """Inertial properties of P rigid parts, all in the mesh frame the vertices were given in.

    mass: (..., P) kg; com: (..., P, 3) m; inertia: (..., P, 3, 3) kg m^2, about each part's own centre
    of mass, axes of the mesh frame.
    """

    mass: torch.Tensor
    com: torch.Tensor
    inertia: torch.Tensor

    def to(self, *args, **kwargs) -> "PartInertia":
        return PartInertia(*(field.to(*args, **kwargs) for field in self))


def boundary_loops(faces: np.ndarray) -> list[list[int]]:
    """Closed loops of boundary edges of a consistently oriented triangle set.

    faces: (F, 3) int. A directed edge (a, b) is on the boundary when no face holds (b, a). Each loop is
    returned as the vertex sequence of its edges in the faces' direction (a -> b -> ...).
    """
    directed: dict[tuple[int, int], int] = defaultdict(int)
    for a, b, c in faces.tolist():
        for edge in ((a, b), (b, c), (c, a)):
            directed[edge] += 1
    outgoing: dict[int, list[int]] = defaultdict(list)
    for (a, b), count in directed.items():
        # opposite half-edges cancel; what is left is the boundary chain, a union of cycles
        for _ in range(count - directed.get((b, a), 0)):
            outgoing[a].append(b)
    loops = []
    for start in sorted(outgoing):
        while outgoing[start]:
            loop = [start]
            vertex = outgoing[start].pop()
            # in-degree equals out-degree at every vertex of a cycle union, so the walk can only stop at start
            while vertex != start:
                loop.append(vertex)
                vertex = outgoing[vertex].pop()
            loops.append(loop)
    return loops


class PartMesh:
    """A triangle mesh split into P closed parts by skinning weights; computes `PartInertia` from vertices.

    faces: (F, 3) long, outward (counter-clockwise seen from outside) orientation;
    skinning_weights: (V, P). Inward-oriented meshes are detected and handled (the total volume sign).
    """

    def __init__(self, faces: torch.Tensor | np.ndarray, skinning_weights: torch.Tensor | np.ndarray):
        faces_np = np.asarray(torch.as_tensor(faces).cpu(), dtype=np.int64)
        weights_np = np.asarray(torch.as_tensor(skinning_weights).detach().cpu(), dtype=np.float64)
        if faces_np.ndim != 2 or faces_np.shape[1] != 3:
            raise BadInput(f"faces must be (F, 3), got {tuple(faces_np.shape)}")
        if weights_np.ndim != 2 or faces_np.size and faces_np.max() >= weights_np.shape[0]:
            raise BadInput("skinning_weights must be (V, P) with a row for every vertex the faces use")
        num_vertices, num_parts = weights_np.shape
        face_part = weights_np[faces_np].sum(1).argmax(-1)  # (F,)

        triangles, triangle_part, loop_rows, loop_cols = [], [], [], []
        num_loops = 0
        for part in range(num_parts):
            part_faces = faces_np[face_part == part]
            triangles.append(part_faces)
            triangle_part.append(np.full(len(part_faces), part))
            for loop in boundary_loops(part_faces):
                apex = num_vertices + num_loops  # index of the loop centroid in the extended vertex array
                ring = np.array(loop)
                # cap triangle (apex, b, a) for boundary edge a -> b: its edge b -> a pairs with the part's a -> b
                triangles.append(np.stack([np.full(len(ring), apex), np.roll(ring, -1), ring], 1))
                triangle_part.append(np.full(len(ring), part))
                loop_rows.append(np.full(len(ring), num_loops))
                loop_cols.append(ring)
                num_loops += 1

        self.num_vertices = num_vertices
        self.num_parts = num_parts
        self.num_loops = num_loops
        self.face_part = torch.as_tensor(face_part)
        self.triangles = torch.as_tensor(np.concatenate(triangles)).long()  # (N, 3) into [vertices; centroids]
        self.triangle_part = torch.as_tensor(np.concatenate(triangle_part)).long()  # (N,)
        # (L, V) averaging matrix: loop centroids = loop_average @ vertices
        loop_average = np.zeros((num_loops, num_vertices))
        if num_loops:
            rows, cols = np.concatenate(loop_rows), np.concatenate(loop_cols)
            np.add.at(loop_average, (rows, cols), 1.0)
            loop_average /= loop_average.sum(1, keepdims=True)
        self.loop_average = torch.as_tensor(loop_average)
        # (P, V) averaging matrix over each part's vertices: an origin near the part keeps float32 accurate
        part_average = np.zeros((num_parts, num_vertices))
        for part in range(num_parts):
            used = np.unique(faces_np[face_part == part])
            if len(used):
                part_average[part, used] = 1.0 / len(used)
        self.part_average = torch.as_tensor(part_average)

    def inertia(self, vertices: torch.Tensor, density: float = HAND_DENSITY) -> PartInertia:
        """vertices: (..., V, 3) metres -> PartInertia(mass (..., P), com (..., P, 3), inertia (..., P, 3, 3))."""
        if vertices.shape[-2:] != (self.num_vertices, 3):
            raise BadInput(f"vertices must be (..., {self.num_vertices}, 3), got {tuple(vertices.shape)}")
        dtype, device = vertices.dtype, vertices.device
        centroids = self.loop_average.to(dtype=dtype, device=device) @ vertices  # (..., L, 3)
        extended = torch.cat([vertices, centroids], -2)
        origins = self.part_average.to(dtype=dtype, device=device) @ vertices  # (..., P, 3)

        part = self.triangle_part.to(device)
        corners = extended[..., self.triangles.to(device), :] - origins[..., part, None, :]  # (..., N, 3, 3)
        a, b, c = corners.unbind(-2)
        volume = torch.linalg.det(corners) / 6  # (..., N) signed
        total = a + b + c
        first = volume[..., None] * total / 4
        outer = lambda u: u[..., :, None] * u[..., None, :]
        second = volume[..., None, None] / 20 * (outer(a) + outer(b) + outer(c) + outer(total))

        # per-part sums as a (P, N) incidence product keeps leading batch dims simple
        incidence = torch.zeros(self.num_parts, len(part), dtype=dtype, device=device)
        incidence[part, torch.arange(len(part), device=device)] = 1.0
        part_volume = volume @ incidence.T  # (..., P)
        part_first = (incidence @ first)  # (..., P, 3)
        part_second = torch.einsum("pn,...nij->...pij", incidence, second)  # (..., P, 3, 3)
        # an inward-oriented mesh gives negative volumes everywhere: flip all integrals together
        sign = torch.where(part_volume.sum(-1, keepdim=True) < 0, -1.0, 1.0).to(dtype)
        part_volume = part_volume * sign
        part_first = part_first * sign[..., None]
        part_second = part_second * sign[..., None, None]

        safe_volume = torch.where(part_volume.abs() > 0, part_volume, torch.ones_like(part_volume))
        com_offset = part_first / safe_volume[..., None]
        central = part_second - part_volume[..., None, None] * outer(com_offset)  # ∫ (x-c)(x-c)ᵀ dV
        eye = torch.eye(3, dtype=dtype, device=device)
        inertia = density * (central.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None] * eye - central)
        return PartInertia(density * part_volume, origins + com_offset, inertia)


def part_inertia(vertices: torch.Tensor, faces: torch.Tensor | np.ndarray,
                 skinning_weights: torch.Tensor | np.ndarray, density: float = HAND_DENSITY) -> PartInertia:
    """Per-part inertial properties of a skinned mesh (see module doc).

    vertices: (..., V, 3) metres; faces: (F, 3) long; skinning_weights: (V, P) (P = 16 for MANO);
    density: kg/m^3. Returns PartInertia(mass (..., P), com (..., P, 3), inertia (..., P, 3, 3)) in the
    vertices' frame, inertia about each part's centre of mass. Differentiable w.r.t. vertices.
    For repeated calls on one topology build a `PartMesh` once instead.
    """
    return PartMesh(faces, skinning_weights).inertia(vertices, density)


def mesh_volume(vertices: torch.Tensor, faces: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Signed volume of a closed triangle mesh: vertices (..., V, 3), faces (F, 3) -> (...,)."""
    faces_t = torch.as_tensor(np.asarray(faces), device=vertices.device).long()
    corners = vertices[..., faces_t, :]  # (..., F, 3, 3)
    corners = corners - vertices.mean(-2)[..., None, None, :]
    return torch.linalg.det(corners).sum(-1) / 6
