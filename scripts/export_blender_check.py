"""Manual check: Blender's own glTF importer reads an exported .glb and poses it like the hand model.

Blender's Python module (`pip install bpy`, ~820 MB, Python 3.11) is not a handcli dependency; install it in a
scratch venv and run this file with that venv's python. First write the reference vertices with handcli's
venv, then check:

    .venv/bin/python scripts/export_blender_check.py reference hands.npz hands.glb /tmp/reference.npz
    /tmp/bpyvenv/bin/python scripts/export_blender_check.py check hands.glb /tmp/reference.npz

`reference`: the hand model posed by the artifact's parameters (world-up frame, as the .glb) for a few frames.
`check`: imports the .glb with bpy.ops.import_scene.gltf, plays each animation to those frames, evaluates
the skinned meshes (Blender's armature deformation) and reports the largest distance to the reference.
"""

from __future__ import annotations

import sys

import numpy as np


def reference(artifact_path: str, glb_path: str, out: str) -> None:
    from handcli.artifacts import load_artifact
    from handcli.export import common
    from handcli.handmodels import load_hand_model

    artifact = load_artifact(artifact_path)
    model = load_hand_model(artifact.meta.get("hand_model") or "open")
    frames = np.unique(np.linspace(0, artifact.num_frames - 1, 4).round().astype(int))
    arrays = {"frames": frames, "fps": np.float64(artifact.fps)}
    for h in range(artifact.num_tracks):
        motion = common.track_motion(artifact, h)
        vertices = common.model_vertices(model, motion, artifact.betas[h], bool(artifact.is_right[h]), frames)
        arrays[f"track{h}"] = vertices @ common.FRAMES["world-up"].T
        arrays[f"valid{h}"] = artifact.valid[h, frames]
    np.savez(out, **arrays)
    print(f"wrote {out} ({len(frames)} frames, {artifact.num_tracks} track(s)) for {glb_path}")


def check(glb_path: str, reference_path: str) -> None:
    import bpy

    ref = np.load(reference_path)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = int(round(float(ref["fps"])))  # the importer turns glTF seconds into frames at this rate
    bpy.ops.import_scene.gltf(filepath=glb_path)
    skinned = (o for o in scene.objects if o.type == "MESH" and o.find_armature() is not None)
    meshes = sorted(skinned, key=lambda o: o.name)
    armatures = [o for o in scene.objects if o.type == "ARMATURE"]
    print(f"blender {bpy.app.version_string}: {len(meshes)} mesh(es) {[m.name for m in meshes]}, "
          f"{len(armatures)} armature(s), {len(bpy.data.actions)} action(s) {[a.name for a in bpy.data.actions]}")
    worst = 0.0
    for h, mesh in enumerate(meshes):
        armature = mesh.find_armature()
        action = next(a for a in bpy.data.actions if a.name.startswith(f"hand{h}_"))
        if armature.animation_data is None:
            armature.animation_data_create()
        armature.animation_data.action = action
        if hasattr(armature.animation_data, "action_slot") and action.slots:
            armature.animation_data.action_slot = action.slots[0]
        for k, frame in enumerate(ref["frames"]):
            if not ref[f"valid{h}"][k]:
                continue
            scene.frame_set(int(frame))
            depsgraph = bpy.context.evaluated_depsgraph_get()
            evaluated = mesh.evaluated_get(depsgraph)
            data = evaluated.to_mesh()
            matrix = np.array(evaluated.matrix_world)
            local = np.array([v.co[:] for v in data.vertices])
            evaluated.to_mesh_clear()
            world = local @ matrix[:3, :3].T + matrix[:3, 3]
            gltf_axes = world[:, [0, 2, 1]] * np.array([1.0, 1.0, -1.0])  # Blender z-up -> glTF y-up
            expected = ref[f"track{h}"][k]
            if len(gltf_axes) == len(expected):
                error = np.linalg.norm(gltf_axes - expected, axis=1).max()
            else:  # the importer may split vertices: nearest reference vertex instead
                error = np.sqrt(((gltf_axes[:, None] - expected[None]) ** 2).sum(-1).min(1)).max()
            worst = max(worst, error)
            print(f"  {mesh.name} frame {int(frame)}: {len(gltf_axes)} vertices, max distance {error * 1000:.4f} mm")
    print(f"largest distance to the hand model: {worst * 1000:.4f} mm")


if __name__ == "__main__":
    if sys.argv[1] == "reference":
        reference(*sys.argv[2:5])
    else:
        check(*sys.argv[2:4])
