"""What a backend draws (`Mesh`) and what it returns (`Layer`), plus the geometry both backends share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from handcli.render.camera import NEAR, project

# the default lighting; renderers take other values per instance (the video benchmark varies them)
AMBIENT = 0.35
# headlight from slightly above the camera (y is down), pointing from the surface towards the light
LIGHT_DIRECTION = np.array([0.25, -0.45, -1.0]) / np.linalg.norm([0.25, -0.45, -1.0])


@dataclass
class Mesh:
    """One triangle mesh in camera coordinates.

    vertices (V, 3) metres; faces (F, 3) vertex ids; colours (V, 3) or (3,) RGB in [0, 1]. `outward`: the
    faces wind counter-clockwise seen from outside (right-hand rule normals point out), so a backend may
    skip triangles facing away from the camera (the painter does; GL draws both sides).
    """

    vertices: np.ndarray
    faces: np.ndarray
    colours: np.ndarray
    outward: bool = False

    def vertex_colours(self) -> np.ndarray:
        """(V, 3) float32."""
        colours = np.asarray(self.colours, np.float32)
        if colours.ndim == 1:
            return np.broadcast_to(colours, (len(self.vertices), 3))
        return colours


@dataclass
class Layer:
    """A rendered RGBA patch: rgba (h, w, 4) uint8 whose top-left pixel is image pixel (x0, y0). Alpha is
    coverage (255 inside the mesh, partial on anti-aliased edges, 0 outside)."""

    rgba: np.ndarray
    x0: int = 0
    y0: int = 0

    @property
    def empty(self) -> bool:
        return self.rgba.size == 0


EMPTY_LAYER = Layer(np.zeros((0, 0, 4), np.uint8))


def screen_box(meshes: list[Mesh], K: np.ndarray, width: int, height: int, margin: int = 2
               ) -> tuple[int, int, int, int] | None:
    """Pixel box (x0, y0, x1, y1), x1/y1 exclusive, that holds everything the meshes can cover; None if
    nothing is in view. Geometry crossing the near plane can reach anywhere, so it gets the whole image."""
    points = np.concatenate([m.vertices for m in meshes]) if meshes else np.zeros((0, 3))
    points = points[np.isfinite(points).all(1)]
    if len(points) == 0:
        return None
    if (points[:, 2] <= NEAR).any():
        return (0, 0, width, height) if (points[:, 2] > NEAR).any() else None
    pixels, _ = project(points, K)
    x0 = max(int(np.floor(pixels[:, 0].min())) - margin, 0)
    y0 = max(int(np.floor(pixels[:, 1].min())) - margin, 0)
    x1 = min(int(np.ceil(pixels[:, 0].max())) + margin + 1, width)
    y1 = min(int(np.ceil(pixels[:, 1].max())) + margin + 1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3), (F, 3) -> unnormalised face normals (F, 3) (length = twice the triangle's area)."""
    corners = vertices[faces]
    return np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])


class VertexNormals:
    """Area-weighted vertex normals for one fixed topology; the vertex-face incidence is built once so each
    frame costs one sparse product. faces (F, 3); call with vertices (V, 3) -> unit normals (V, 3)."""

    def __init__(self, faces: np.ndarray, num_vertices: int):
        from scipy.sparse import csr_matrix

        faces = np.asarray(faces)
        rows = faces.reshape(-1)
        cols = np.repeat(np.arange(len(faces)), 3)
        self.faces = faces
        self.incidence = csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                                    shape=(num_vertices, len(faces)))

    def __call__(self, vertices: np.ndarray) -> np.ndarray:
        normals = self.incidence @ face_normals(vertices, self.faces)
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        return (normals / np.maximum(length, 1e-12)).astype(np.float32)


def lambert(normals: np.ndarray, positions: np.ndarray, ambient: float = AMBIENT,
            light_direction: np.ndarray = LIGHT_DIRECTION) -> np.ndarray:
    """Lambert + ambient intensity (N,) in [ambient, 1] for normals (N, 3) at positions (N, 3); the light
    shines from unit `light_direction` (surface towards light).

    Normals are turned to face the viewer first: meshes are drawn two-sided, so a mirrored (left) hand or
    a mesh with inconsistent winding is lit the same way.
    """
    towards_viewer = np.einsum("ij,ij->i", normals, -positions) >= 0
    facing = np.where(towards_viewer[:, None], normals, -normals)
    length = np.linalg.norm(facing, axis=1)
    diffuse = np.clip(facing @ np.asarray(light_direction) / np.maximum(length, 1e-12), 0, 1)
    return ambient + (1 - ambient) * diffuse
