"""Fallback backend without OpenGL: the painter's algorithm with OpenCV.

Triangles are flat-shaded (Lambert + ambient on the face normal), back faces of outward-wound meshes are
skipped, the rest sorted far to near by mean depth and filled in that order with `cv2.fillConvexPoly` at 1/16-pixel precision, so nearer triangles paint over
farther ones. Mean-depth sorting is exact for non-intersecting, non-cyclic overlaps, which is what one or
two hand meshes give; there is no anti-aliasing.
"""

from __future__ import annotations

import cv2
import numpy as np

from handcli.render.camera import NEAR, project
from handcli.render.scene import (AMBIENT, EMPTY_LAYER, LIGHT_DIRECTION, Layer, Mesh, face_normals, lambert,
                                  screen_box)

_SUBPIXEL_BITS = 4


class PainterRenderer:
    """Depth-sorted flat-shaded triangles with OpenCV; same interface as `GLRenderer`."""

    name = "painter"

    def __init__(self, width: int, height: int, ambient: float = AMBIENT, light_direction: np.ndarray = LIGHT_DIRECTION):
        self.width, self.height = int(width), int(height)
        self.ambient, self.light_direction = float(ambient), np.asarray(light_direction, np.float64)

    def render(self, meshes: list[Mesh], K: np.ndarray) -> Layer:
        """Meshes in camera coordinates, intrinsics K (3, 3) -> the covered patch of the image."""
        meshes = [m for m in meshes if len(m.faces)]
        box = screen_box(meshes, K, self.width, self.height)
        if box is None:
            return EMPTY_LAYER
        x0, y0, x1, y1 = box
        corners, depth, colours = [], [], []
        for mesh in meshes:
            vertices = np.asarray(mesh.vertices, np.float64)
            faces = np.asarray(mesh.faces)
            triangles = vertices[faces]  # (F, 3, 3)
            # triangles reaching behind the near plane are dropped (the GL backend clips them instead)
            in_front = (triangles[..., 2] > NEAR).all(1) & np.isfinite(triangles).all((1, 2))
            faces, triangles = faces[in_front], triangles[in_front]
            centres = triangles.mean(1)
            normals = face_normals(vertices, faces)
            if mesh.outward:  # back faces of a closed mesh are always covered: skipping halves the work
                front = np.einsum("ij,ij->i", normals, centres) < 0
                faces, triangles, centres, normals = faces[front], triangles[front], centres[front], normals[front]
            shade = lambert(normals, centres, self.ambient, self.light_direction)
            pixels, _ = project(triangles, K)
            corners.append(pixels)
            depth.append(centres[:, 2])
            colours.append(mesh.vertex_colours()[faces].mean(1) * shade[:, None])
        corners = np.concatenate(corners)
        if len(corners) == 0:
            return EMPTY_LAYER
        order = np.argsort(-np.concatenate(depth), kind="stable")
        scale = 1 << _SUBPIXEL_BITS
        points = np.round((corners[order] - [x0, y0]) * scale).astype(np.int32)  # (F, 3, 2) fixed point
        rgba = np.concatenate([np.concatenate(colours)[order] * 255, np.full((len(order), 1), 255.0)], 1)
        rgba = np.clip(np.round(rgba), 0, 255).astype(np.uint8).tolist()
        layer = np.zeros((y1 - y0, x1 - x0, 4), np.uint8)
        for triangle, colour in zip(points, rgba):
            cv2.fillConvexPoly(layer, triangle, colour, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
        return Layer(layer, x0, y0)

    def release(self) -> None:
        pass
