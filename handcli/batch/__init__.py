"""`handcli batch`: many videos through the whole chain, resumable, on this machine or on a Ray cluster.

inputs     INPUTS (files, folders, globs) -> the videos and the artifact each one gets (DIR/<name>.npz)
manifest   DIR/batch_manifest.json: every video's status, content key, timings and error (atomic updates)
engines    running one video (`run_one`, the unit of work) and the local / Ray engines that schedule them
See docs/batch.md.
"""

from handcli.batch.engines import BatchConfig, BatchResult, run_batch

__all__ = ["BatchConfig", "BatchResult", "run_batch"]
