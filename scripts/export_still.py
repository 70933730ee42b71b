"""Draw an exported .glb the way a glTF viewer does, headless: read the file back (pygltflib for the container,
accessors decoded here), evaluate the animation at one keyframe, skin the meshes with the file's joints,
weights and inverse bind matrices, and rasterise them with handcli's renderer (EGL, or the painter).
Nothing is taken from the exporter's arrays; with --artifact, that artifact's keypoints3d at the same frame
are drawn on top as white dots so the pose can be compared by eye.

    python scripts/export_still.py hands.glb --frame 40 --out docs/images/export_gltf.png [--artifact hands.npz]

Two panels: the view from the original camera (the glTF file's origin, looking down -z, y up) and the same
hands turned 60° about the vertical axis through their centre.
"""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

COMPONENTS = {5126: np.float32, 5121: np.uint8, 5123: np.uint16, 5125: np.uint32}
WIDTH = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}
GL_TO_CV = np.diag([1.0, -1.0, -1.0])  # glTF camera axes (y up, looking down -z) -> OpenCV (y down, +z)


def load(path: Path) -> tuple[dict, bytes]:
    from pygltflib import GLTF2

    gltf = GLTF2().load(str(path))
    document = json.loads(gltf.to_json())
    if path.suffix == ".glb":
        return document, gltf.binary_blob()
    blob = base64.b64decode(document["buffers"][0]["uri"].split(",", 1)[1])
    return document, blob


def accessor(document: dict, blob: bytes, index: int) -> np.ndarray:
    acc = document["accessors"][index]
    view = document["bufferViews"][acc["bufferView"]]
    dtype = np.dtype(COMPONENTS[acc["componentType"]])
    width = WIDTH[acc["type"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    data = np.frombuffer(blob, dtype, acc["count"] * width, start).reshape(acc["count"], width).astype(np.float64)
    return data.reshape(-1, 4, 4).transpose(0, 2, 1) if acc["type"] == "MAT4" else data


def node_globals(document: dict, blob: bytes, key: int) -> dict[int, np.ndarray]:
    """Every node's global 4x4 with all animations sampled at keyframe `key`."""
    overrides: dict[int, dict] = {}
    for animation in document.get("animations", []):
        for channel in animation["channels"]:
            sampler = animation["samplers"][channel["sampler"]]
            values = accessor(document, blob, sampler["output"])
            target = overrides.setdefault(channel["target"]["node"], {})
            target[channel["target"]["path"]] = values[min(key, len(values) - 1)]
    out: dict[int, np.ndarray] = {}

    def visit(n: int, parent: np.ndarray) -> None:
        node, animated = document["nodes"][n], overrides.get(n, {})
        local = np.eye(4)
        rotation = Rotation.from_quat(animated.get("rotation", node.get("rotation", [0, 0, 0, 1]))).as_matrix()
        local[:3, :3] = rotation @ np.diag(animated.get("scale", node.get("scale", [1, 1, 1])))
        local[:3, 3] = animated.get("translation", node.get("translation", [0, 0, 0]))
        out[n] = parent @ local
        for child in node.get("children", []):
            visit(child, out[n])

    for root in document["scenes"][document.get("scene", 0)]["nodes"]:
        visit(root, np.eye(4))
    return out


def skinned_meshes(document: dict, blob: bytes, key: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """[(vertices (V, 3), faces (F, 3), colours (V, 3) sRGB)] for every skinned mesh node at keyframe `key`."""
    globals_ = node_globals(document, blob, key)
    meshes = []
    for node in document["nodes"]:
        if "mesh" not in node or "skin" not in node:
            continue
        skin = document["skins"][node["skin"]]
        inverse_bind = accessor(document, blob, skin["inverseBindMatrices"])
        joint_matrices = np.stack([globals_[j] @ inverse_bind[k] for k, j in enumerate(skin["joints"])])
        primitive = document["meshes"][node["mesh"]]["primitives"][0]
        attributes = primitive["attributes"]
        positions = accessor(document, blob, attributes["POSITION"])
        points = np.concatenate([positions, np.ones((len(positions), 1))], 1)
        posed = np.zeros_like(points)
        k = 0
        while f"JOINTS_{k}" in attributes:
            joints = accessor(document, blob, attributes[f"JOINTS_{k}"]).astype(int)
            weights = accessor(document, blob, attributes[f"WEIGHTS_{k}"])
            for slot in range(4):
                posed += weights[:, slot, None] * np.einsum("vij,vj->vi", joint_matrices[joints[:, slot]], points)
            k += 1
        faces = accessor(document, blob, primitive["indices"]).astype(np.int64).reshape(-1, 3)
        material = document["materials"][primitive["material"]]["pbrMetallicRoughness"]
        base = np.asarray(material.get("baseColorFactor", [1, 1, 1, 1])[:3])
        if "COLOR_0" in attributes:
            linear = accessor(document, blob, attributes["COLOR_0"])[:, :3] * base
        else:
            linear = np.tile(base, (len(points), 1))
        colours = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * np.power(linear, 1 / 2.4) - 0.055)
        if np.ptp(posed[:, :3], axis=0).max() > 1e-6:  # scale 0: the hand is hidden on this frame
            meshes.append((posed[:, :3], faces, colours))
    return meshes


def draw(meshes, K: np.ndarray, width: int, height: int, turn_degrees: float, overlay: np.ndarray | None,
         label: str) -> np.ndarray:
    from handcli.render.backends import make_renderer
    from handcli.render.overlay import blend_layer, draw_text
    from handcli.render.scene import Mesh

    image = np.full((height, width, 3), 70, np.uint8)
    image[:] = np.linspace(105, 45, height, dtype=np.uint8)[:, None, None]
    centre = np.concatenate([m[0] for m in meshes]).mean(0)
    turn = Rotation.from_euler("y", turn_degrees, degrees=True).as_matrix()

    def to_camera(points_gl: np.ndarray) -> np.ndarray:
        return ((points_gl - centre) @ turn.T + centre) @ GL_TO_CV.T

    renderer = make_renderer(width, height, "auto", samples=4)
    scene = [Mesh(to_camera(v).astype(np.float32), f.astype(np.int32), c.astype(np.float32), outward=True)
             for v, f, c in meshes]
    blend_layer(image, renderer.render(scene, K), 1.0)
    if overlay is not None:
        for points in overlay:
            camera = to_camera(points @ GL_TO_CV.T)  # the artifact's camera-frame keypoints, same view
            pixels = camera[:, :2] / camera[:, 2:] * K[0, 0] + K[:2, 2]
            for x, y in pixels:
                cv2.circle(image, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1, cv2.LINE_AA)
    draw_text(image, label, (12, 28))
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("glb", type=Path)
    parser.add_argument("--frame", type=int, default=0, help="keyframe to draw")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--artifact", type=Path, help="draw this artifact's keypoints3d on top (white dots)")
    parser.add_argument("--size", default="640x480")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    document, blob = load(args.glb)
    meshes = skinned_meshes(document, blob, args.frame)
    if not meshes:
        raise SystemExit(f"no visible skinned mesh at keyframe {args.frame}")
    overlay = None
    if args.artifact is not None:
        from handcli.artifacts import load_artifact

        art = load_artifact(args.artifact)
        overlay = [art.keypoints3d[h, args.frame].astype(np.float64) for h in range(art.num_tracks)
                   if art.valid[h, args.frame]]
    # a camera that frames the hands: focal length from the image size, hands kept in view by their depth
    points = np.concatenate([m[0] for m in meshes]) @ GL_TO_CV.T
    depth = float(np.median(points[:, 2]))
    spread = np.abs(points[:, :2] - np.median(points[:, :2], 0)).max() + 0.03
    focal = 0.42 * min(width, height) * depth / spread
    centre = np.median(points[:, :2] / points[:, 2:], 0)
    K = np.array([[focal, 0, width / 2 - focal * centre[0]], [0, focal, height / 2 - focal * centre[1]], [0, 0, 1]])
    panels = [draw(meshes, K, width, height, 0.0, overlay, f"{args.glb.name}, keyframe {args.frame}: camera view"),
              draw(meshes, K, width, height, 60.0, overlay, "turned 60 deg about the vertical")]
    image = np.concatenate(panels, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
