"""``metrics.json``, typed: what a run writes (``run/record.py``, ``train.py``,
``analysis/``) and the report reads (``report/collect.py``). Field meanings:
docs/run_folder.md. Plain Python, no imports of the project: the report loads it without
Hydra or torch.
"""

from __future__ import annotations

from typing import Any, TypedDict

__all__ = ["RunRecord"]


class RunRecord(TypedDict, total=False):
    """One finished run. Accuracies are fractions; ``None`` where a value was not measured;
    a key a newer version added is absent from older runs' files."""

    status: str  # "ok"
    model: str
    arch: str
    strategy: str
    data: str
    samples_per_class: int | None
    img_size: int
    seed: int
    num_classes: int
    train_size: int
    val_size: int
    test_size: int
    trainable_params: int
    total_params: int
    train_seconds: float
    epochs: int
    best_val_acc: float | None
    val_acc: float | None
    train_acc: float | None
    train_val_gap: float | None
    test_acc: float | None
    test_f1_macro: float | None
    feature_cache: bool
    epoch_seconds: float | None
    step_seconds: float | None
    checkpoint_bytes: int | None
    peak_memory_mb: dict[str, float | None]
    settings: dict[str, Any]  # the resolved config as dotted keys
    weights: dict[str, Any] | None
    skipped_images: dict[str, int]
    history: list[dict[str, Any]]  # one row per epoch
    # The analysis (analysis.enabled): docs/shift.md.
    analysis_seconds: float
    drift: dict[str, float] | None
    cka: dict[str, float] | None
    shift_acc: dict[str, float] | None
    imagenet_agreement: float | None
    wise_ft: dict[str, Any] | None
    analysis_interrupted: bool
    # Where and when it ran.
    gpu_slot: int | None
    pid: int
    started_at: float
    cpu_seconds: float  # the job's CPU time, all threads (train.py)
    # A tuned run (tune.enabled, tuning/run.py): the search and the setting it selected.
    tuning: dict[str, Any]
    selected: dict[str, Any]
    analysis_pending: bool  # analysis.defer: the analysis runs in a later pass
    finished_at: float
