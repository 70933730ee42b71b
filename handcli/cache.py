"""The stage cache of `handcli run`: content-addressed artifacts in a work directory, guarded by a lock.

A cached artifact's key hashes what determines it: the stage name, the digest of its input (the video file or
the upstream artifact), the stage configuration, the code version (a digest of handcli's own source files) and
the digests of the weights and hand-model files it uses. Change any of them and the key changes; change nothing and the cached file
is reused. A cached file that fails validation is reported, deleted and recomputed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Callable

from handcli import __version__
from handcli.artifacts import Artifact, file_digest, load_artifact, save_artifact
from handcli.errors import BadInput

PACKAGE_DIR = Path(__file__).resolve().parent
CACHE_KEY_FIELD = "cache_key"  # meta field: the full key an entry was stored under, checked when it is read


@lru_cache(maxsize=1)
def code_version() -> str:
    """handcli's version plus a digest of every source file of the package (so a code edit invalidates)."""
    digest = hashlib.sha256(__version__.encode())
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE_DIR)).encode())
        digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


# libraries whose version can change a stage's result: the decoder, the detector, the numerics
LIBRARIES = ("numpy", "torch", "mediapipe", "imageio-ffmpeg")


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """{library: version} for LIBRARIES, plus the ffmpeg binary actually used (IMAGEIO_FFMPEG_EXE can swap it)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "missing"
    try:
        import imageio_ffmpeg

        versions["ffmpeg"] = imageio_ffmpeg.get_ffmpeg_version()
    except Exception:  # no binary: detect will say so; the key only needs to differ from a working one's
        versions["ffmpeg"] = "missing"
    return versions


def stage_key(stage: str, input_digest: str, config: dict, weights: dict[str, str] | None = None) -> str:
    """Hex key of one stage's result; `weights` maps weight-file names to their digests."""
    payload = json.dumps({"stage": stage, "input": input_digest, "config": config, "code": code_version(),
                          "weights": weights or {}, "libraries": library_versions()}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class WorkDir:
    """A cache directory held under an exclusive lock for the lifetime of the `with` block."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_handle = None

    def __enter__(self) -> "WorkDir":
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise BadInput(f"work dir {self.path} is in use by another handcli process (pid {owner}); "
                           "wait for it or pass a different --work-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle
        return self

    def __exit__(self, *exc) -> bool:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle.fileno(), fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None
        return False

    def artifact_path(self, stage: str, key: str) -> Path:
        return self.path / f"{stage}-{key[:20]}.npz"

    def cached(self, stage: str, key: str, compute: Callable[[], Artifact], *, force: bool = False,
               notify: Callable[[str], None] = lambda message: None) -> tuple[Artifact, Path, bool]:
        """The artifact for (stage, key): loaded when a valid copy exists, else computed and stored.
        Returns (artifact, its path, whether it came from the cache)."""
        path = self.artifact_path(stage, key)
        if path.exists() and not force:
            try:
                cached = load_artifact(path)
                recorded = cached.meta.get(CACHE_KEY_FIELD)
                if recorded != key:  # another entry copied over this one, or one from before keys were recorded
                    raise BadInput(f"it records the key {str(recorded)[:20]}, not {key[:20]}")
                return cached, path, True
            except BadInput as error:
                notify(f"cached {stage} artifact {path.name} is corrupt ({error.message}); recomputing")
                path.unlink(missing_ok=True)
        result = compute()
        save_artifact(result.replace(meta={**result.meta, CACHE_KEY_FIELD: key}), path)
        # hand on what the cache holds (float32, JSON meta), not the in-memory result (float64 fps, K, ...):
        # otherwise later stages would see different inputs in a fresh run and in a resumed one
        return load_artifact(path), path, False


def weights_digests(paths: dict[str, Path]) -> dict[str, str]:
    """{name: sha256} for the weight files that exist (a missing file digests as 'missing')."""
    return {name: file_digest(p) if Path(p).exists() else "missing" for name, p in paths.items()}
