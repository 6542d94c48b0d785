"""Successive halving over a strategy's grid (``strategy.search``), selected on validation.

Every candidate trains to the first rung (``rung_epochs``); at each rung the best
``1/reduction`` of the candidates still running (at least one) go on, resumed from where
they stopped, and the rest stop there; when one is left it trains to the last epoch. With a
grid of 3, ``reduction`` 3 and the first rung at a quarter of the epochs, the search costs
``3 x 1/4 + 3/4 = 1.5`` runs' epochs instead of 3 for the exhaustive grid.

The record and the rule are Optuna's (a study, its trials' intermediate values, and its
``SuccessiveHalvingPruner``). Optuna's pruner is asynchronous (ASHA): it judges a trial
against the trials that reached the same rung before it. Here every candidate reaches a
rung before any is judged, and they are judged best first, which is an ordering ASHA could
have met; for the grids here (fewer than ``2 x reduction`` candidates at a rung) its rule
then keeps exactly the best one, ties included, as synchronous successive halving does.

A rung compares each candidate's validation accuracy of the rung's epoch, the value the
survivor resumes from (Optuna's own use: ``trial.report(value, step)`` each epoch). Not its best
so far: a one-epoch blip of a candidate that is back at chance at the rung (scratch on 76
face images: 64% at epoch 2, 50% from epoch 3 on) would outrank one about to leave chance.
Replayed on the recorded curves of five datasets, the rung's accuracy selects as well as the
best so far or better everywhere (docs/results.md, "Other rung statistics").

Ties at a rung go to the setting later in the file's order (``TIE``): the shipped search
lists are ascending, so that is the larger step, which a decaying schedule (cosine to 0)
holds back mid-run more often than the smaller one; and exactly one setting goes on, so a
tie costs no more than a clear rung (Optuna's pruner would keep both: 2 runs' epochs
instead of 1.5). Among several settings that reach the last epoch (the exhaustive
reference) the best validation accuracy of any epoch is what counts (the checkpoint a run
keeps), and equal ones go to the first in the file's order, Optuna's ``best_trial``, as
``scripts/check_selection.py``'s reference reads them.

Only validation accuracies are ever passed in: the caller tests the selected candidate
once, after the search (``tl_experiments.tuning.run``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tl_experiments.errors import UserError

__all__ = ["Candidate", "SearchResult", "grid", "rungs", "successive_halving"]

TrainTo = Callable[[int, int], Sequence[float]]  # (candidate, epochs) -> val acc per epoch

# Added per place in the grid to the value a rung compares (module doc): far below the
# smallest difference of two accuracies (one image of a split of a million is 1e-6).
TIE = 1e-9


def grid(search: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
    """Every combination of the search space's values, in the order the file lists them."""
    keys = [k for k, _ in search]
    return [
        dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(v for _, v in search))
    ]


def rungs(epochs: int, first: int, reduction: int) -> list[int]:
    """The epochs at which candidates are compared: ``first * reduction**k`` below ``epochs``."""
    out, step = [], max(1, first)
    while step < epochs:
        out.append(step)
        step *= reduction
    return out


@dataclass
class Candidate:
    """One setting of the grid and what the search saw of it (validation only)."""

    params: dict[str, Any]
    val_acc: list[float] = field(default_factory=list)  # per epoch trained
    stopped_at: int | None = None  # epochs trained when the search stopped it early

    @property
    def best_val(self) -> float:
        return max(self.val_acc) if self.val_acc else float("nan")


@dataclass
class SearchResult:
    candidates: list[Candidate]
    selected: int  # index into candidates

    @property
    def n_stopped(self) -> int:
        return sum(c.stopped_at is not None for c in self.candidates)


def successive_halving(
    params: list[dict[str, Any]],
    epochs: int,
    first_rung: int,
    reduction: int,
    train_to: TrainTo,
    exhaustive: bool = False,
) -> SearchResult:
    """Search ``params``; ``train_to(i, n)`` trains candidate ``i`` on to ``n`` epochs in all
    (resuming it) and returns its validation accuracy of every epoch so far.

    ``exhaustive`` trains every candidate to ``epochs`` (the reference grid) and selects the
    best final validation accuracy, as the halving's last step does.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = (
        optuna.pruners.NopPruner()
        if exhaustive
        else optuna.pruners.SuccessiveHalvingPruner(
            min_resource=max(1, first_rung), reduction_factor=reduction, min_early_stopping_rate=0
        )
    )
    study = optuna.create_study(direction="maximize", pruner=pruner)
    cands = [Candidate(dict(p)) for p in params]
    choices = {k: list(dict.fromkeys(p[k] for p in params)) for k in params[0]}
    trials = [_ask(study, p, choices) for p in params]
    alive = list(range(len(cands)))
    for stop in [*([] if exhaustive else rungs(epochs, first_rung, reduction)), epochs]:
        if len(alive) == 1 and stop < epochs:
            continue  # nothing left to compare: the last one goes straight to the end
        for i in alive:
            curve = train_to(i, stop)
            if stop < epochs and len(curve) < stop:  # it cannot be resumed from a rung
                raise UserError(
                    f"A setting stopped after {len(curve)} epochs, before the rung at epoch "
                    f"{stop} where successive halving compares and resumes the settings: drop "
                    "trainer.early_stopping_patience, or search with tune.exhaustive=true."
                )
            _advance(cands[i], trials[i], curve, i * TIE)
        if stop == epochs:
            break
        alive = _judge(study, cands, trials, alive, stop)
    for i in alive:
        study.tell(trials[i], cands[i].best_val)
    return SearchResult(cands, study.best_trial.number)


def _judge(study, cands: list[Candidate], trials: list, alive: list[int], stop: int) -> list[int]:
    """Optuna's pruner at the rung ``stop``, best first (module doc): who goes on."""
    import optuna

    for i in sorted(alive, key=lambda i: (-_at_rung(cands[i]), -i)):
        if trials[i].should_prune():  # Optuna's pruner stops a NaN at the rung
            study.tell(trials[i], state=optuna.trial.TrialState.PRUNED)
            cands[i].stopped_at = stop
    alive = [i for i in alive if cands[i].stopped_at is None]
    if not alive:
        raise UserError(
            f"No setting had a validation accuracy at epoch {stop}, where successive "
            "halving compares them: validate every epoch (trainer.check_val_every_n_epoch"
            "=1) with a validation split (data.val_fraction > 0)."
        )
    return alive


def _ask(study, params: dict[str, Any], choices: dict[str, list]):
    study.enqueue_trial(params)
    trial = study.ask()
    for key in params:
        trial.suggest_categorical(key, choices[key])  # returns the enqueued value
    return trial


def _at_rung(cand: Candidate) -> float:
    """What a rung ranks a candidate on: its last accuracy, a missing one (NaN) last."""
    value = cand.val_acc[-1]
    return value if value == value else float("-inf")


def _advance(cand: Candidate, trial, val_acc: Sequence[float], tie: float) -> None:
    """Record the new epochs' validation accuracy (plus the candidate's ``tie`` share,
    ``TIE``) as the trial's values: a rung compares them at its epoch (module doc)."""
    new = [float(v) for v in val_acc]
    for epoch in range(len(cand.val_acc), len(new)):
        trial.report(new[epoch] + tie, step=epoch + 1)
    cand.val_acc = new
