"""Each strategy at its best on the user's data: successive halving over the strategy's own
grid (``strategy.search``), selected on validation, tested once (``tune.enabled``)."""

from tl_experiments.tuning.halving import Candidate, SearchResult, grid, rungs, successive_halving
from tl_experiments.tuning.run import (
    TuningSteps,
    candidate_name,
    search_space,
    tuned_run,
    tuning_applies,
    with_params,
)

__all__ = [
    "Candidate",
    "SearchResult",
    "TuningSteps",
    "candidate_name",
    "grid",
    "rungs",
    "search_space",
    "successive_halving",
    "tuned_run",
    "tuning_applies",
    "with_params",
]
