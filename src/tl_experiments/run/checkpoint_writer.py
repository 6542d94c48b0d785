"""Lightning's checkpoint writer, minus two in-memory copies for files on local disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from tl_experiments.atomic import write_atomic

__all__ = ["LocalFileCheckpointIO"]


class LocalFileCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that saves a local path with ``torch.save`` straight to a temp
    file, then renames it (atomic, as Lightning's writer is).

    Lightning pickles every checkpoint into a ``BytesIO`` and copies it out to write it
    through fsspec, which remote filesystems need: two extra copies of a checkpoint that
    holds the weights and AdamW's two moments (40 MB for lite0), written in every epoch that
    improves. URLs (``s3://...``) and ``storage_options`` keep Lightning's own path.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        write_atomic(Path(path), lambda tmp: torch.save(checkpoint, tmp))
