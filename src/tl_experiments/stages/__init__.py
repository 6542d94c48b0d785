"""A timm model's stages: what a strategy freezes, trains and schedules.

Stages come from timm's ``group_matcher(coarse=True)`` (``groups.py``), so every strategy
works on any timm architecture. Both ``models/`` and ``strategies/`` read them; this
package imports neither.
"""

from tl_experiments.stages.stage import (
    Stage,
    batch_norms,
    get_stages,
    select_stages,
    stage_summary,
)

__all__ = ["Stage", "batch_norms", "get_stages", "select_stages", "stage_summary"]
