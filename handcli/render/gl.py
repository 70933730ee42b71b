"""OpenGL backend: moderngl on a headless EGL context (Mesa llvmpipe on CPU), smooth Lambert shading,
depth test. Multisampling is available (`samples`) but off by default: on llvmpipe it triples the cost of a
frame, and the compositor's softened coverage (overlay.blend_layer) hides most of the stair steps.

Only the screen box the meshes can cover is rasterised: the framebuffer is sized to that box (grown in
steps, never shrunk) and the principal point is shifted into it, so a hand in a 1280x720 frame costs about
what the hand covers, not the whole frame.
"""

from __future__ import annotations

import numpy as np

from handcli.render.camera import gl_projection
from handcli.render.scene import AMBIENT, EMPTY_LAYER, LIGHT_DIRECTION, Layer, Mesh, VertexNormals, screen_box

VERTEX_SHADER = """
#version 330
uniform mat4 projection;
in vec3 in_position;
in vec3 in_normal;
in vec3 in_colour;
out vec3 v_position;
out vec3 v_normal;
out vec3 v_colour;
void main() {
    v_position = in_position;
    v_normal = in_normal;
    v_colour = in_colour;
    gl_Position = projection * vec4(in_position, 1.0);
}
"""

# two-sided Lambert: the normal is turned towards the viewer (the camera is at the origin)
FRAGMENT_SHADER = """
#version 330
uniform vec3 light_direction;
uniform float ambient;
in vec3 v_position;
in vec3 v_normal;
in vec3 v_colour;
out vec4 f_colour;
void main() {
    vec3 normal = normalize(v_normal);
    if (dot(normal, -v_position) < 0.0) normal = -normal;
    float diffuse = max(dot(normal, light_direction), 0.0);
    f_colour = vec4(v_colour * (ambient + (1.0 - ambient) * diffuse), 1.0);
}
"""

_GROW = 128  # framebuffer sizes are rounded up to this many pixels so a moving hand rarely reallocates


class GLRenderer:
    """Rasterise meshes with OpenGL 3.3 on a standalone EGL context. Raises on construction if no context
    can be made (the caller then falls back to the painter)."""

    name = "gl"

    def __init__(self, width: int, height: int, samples: int = 0, ambient: float = AMBIENT,
                 light_direction: np.ndarray = LIGHT_DIRECTION):
        """ambient in [0, 1] and unit light_direction (surface towards light, camera frame): scene.lambert's."""
        import moderngl

        self.width, self.height = int(width), int(height)
        self.ctx = moderngl.create_standalone_context(backend="egl")
        self.samples = min(samples, self.ctx.max_samples) if samples > 1 else 0
        self.program = self.ctx.program(vertex_shader=VERTEX_SHADER, fragment_shader=FRAGMENT_SHADER)
        self.program["light_direction"].value = tuple(float(x) for x in light_direction)
        self.program["ambient"].value = float(ambient)
        self.vertex_buffer = self.ctx.buffer(reserve=1 << 16, dynamic=True)
        self.index_buffer = self.ctx.buffer(reserve=1 << 16, dynamic=True)
        self.vertex_array = self.ctx.vertex_array(
            self.program, [(self.vertex_buffer, "3f 3f 3f", "in_position", "in_normal", "in_colour")],
            index_buffer=self.index_buffer, index_element_size=4)
        self.ctx.enable(moderngl.DEPTH_TEST)
        self.capacity = (0, 0)
        self._framebuffer_objects: list = []
        self._normals: dict[tuple[int, int, int], VertexNormals] = {}

    def _framebuffers(self, width: int, height: int):
        """(draw target, read target) of at least width x height."""
        if width > self.capacity[0] or height > self.capacity[1]:
            size = (max(-(-width // _GROW) * _GROW, self.capacity[0]),
                    max(-(-height // _GROW) * _GROW, self.capacity[1]))
            size = (min(size[0], max(self.width, width)), min(size[1], max(self.height, height)))
            self.release_framebuffers()
            colour, depth = self.ctx.renderbuffer(size, 4), self.ctx.depth_renderbuffer(size)
            self.resolved = self.ctx.framebuffer(colour, depth)
            self._framebuffer_objects = [self.resolved, colour, depth]
            # without multisampling the resolved buffer is drawn into directly
            self.multisampled = self.resolved
            if self.samples:
                colour = self.ctx.renderbuffer(size, 4, samples=self.samples)
                depth = self.ctx.depth_renderbuffer(size, samples=self.samples)
                self.multisampled = self.ctx.framebuffer(colour, depth)
                self._framebuffer_objects += [self.multisampled, colour, depth]
            self.capacity = size
        return self.multisampled, self.resolved

    def release_framebuffers(self) -> None:
        for gl_object in self._framebuffer_objects:
            gl_object.release()
        self._framebuffer_objects = []
        self.capacity = (0, 0)

    def normals_for(self, faces: np.ndarray, num_vertices: int) -> VertexNormals:
        key = (id(faces), len(faces), num_vertices)
        if key not in self._normals:
            self._normals[key] = VertexNormals(faces, num_vertices)
        return self._normals[key]

    def render(self, meshes: list[Mesh], K: np.ndarray) -> Layer:
        """Meshes in camera coordinates, intrinsics K (3, 3) -> the covered patch of the image."""
        meshes = [m for m in meshes if len(m.faces)]
        box = screen_box(meshes, K, self.width, self.height)
        if box is None:
            return EMPTY_LAYER
        x0, y0, x1, y1 = box
        width, height = x1 - x0, y1 - y0
        draw_target, read_target = self._framebuffers(width, height)
        shifted = np.array(K, np.float64)
        shifted[0, 2] -= x0
        shifted[1, 2] -= y0
        self.program["projection"].write(gl_projection(shifted, width, height).T.astype("f4").tobytes())

        vertex_data, index_data, offset = [], [], 0
        for mesh in meshes:
            vertices = np.asarray(mesh.vertices, np.float32)
            normals = self.normals_for(mesh.faces, len(vertices))(vertices)
            vertex_data.append(np.concatenate([vertices, normals, mesh.vertex_colours()], 1))
            index_data.append(np.asarray(mesh.faces, np.uint32) + offset)
            offset += len(vertices)
        vertex_bytes = np.concatenate(vertex_data).astype(np.float32).tobytes()
        index_bytes = np.concatenate(index_data).tobytes()
        if len(vertex_bytes) > self.vertex_buffer.size:
            self.vertex_buffer.orphan(2 * len(vertex_bytes))
        if len(index_bytes) > self.index_buffer.size:
            self.index_buffer.orphan(2 * len(index_bytes))
        self.vertex_buffer.write(vertex_bytes)
        self.index_buffer.write(index_bytes)

        viewport = (0, 0, width, height)
        draw_target.use()
        draw_target.viewport = viewport
        draw_target.clear(0.0, 0.0, 0.0, 0.0, depth=1.0, viewport=viewport)
        self.vertex_array.render(vertices=sum(len(i) for i in index_data) * 3)
        if draw_target is not read_target:
            self.ctx.copy_framebuffer(read_target, draw_target)
        data = read_target.read(viewport=viewport, components=4)
        rgba = np.frombuffer(data, np.uint8).reshape(height, width, 4)
        return Layer(rgba, x0, y0)

    def release(self) -> None:
        self.release_framebuffers()
        self.vertex_array.release()
        self.vertex_buffer.release()
        self.index_buffer.release()
        self.program.release()
        self.ctx.release()
