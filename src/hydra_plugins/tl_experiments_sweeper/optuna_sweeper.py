"""``hydra/sweeper=tl_optuna``: Optuna's TPE search as a Hydra sweeper, on today's Optuna.

It exists because hydra-optuna-sweeper (1.2, its last release) pins ``optuna<3``: Optuna
2.10 (2021) and, for its study database, SQLAlchemy 1.4. This one reads that plugin's keys
(``direction``, ``study_name``, ``storage``, ``n_trials``, ``n_jobs``, ``max_failure_rate``,
``sampler.seed``, ``params``) through Hydra's public plugin API (the ``Sweeper`` base and
the override parser that Hydra's example sweeper uses) and drives Optuna by ask and tell:

- ``params``, then the command line (a key's last override wins), in Hydra's grammar:
  ``interval(a, b)`` is a ``FloatDistribution`` (``tag(log, ...)`` log-uniform, ``tag(int,
  ...)`` integers: Hydra reads interval bounds as floats), ``range(a, b, s)`` an
  ``IntDistribution`` (stop excluded; float bounds: a stepped ``FloatDistribution``),
  ``choice(...)`` a ``CategoricalDistribution``; other overrides go to every job as given.
- The study is created or loaded (``storage``: a SQLAlchemy URL; none: in memory) with a
  seeded ``TPESampler``. Each start runs ``n_trials`` more trials, ``n_jobs`` per launcher
  batch; a job that raised or returned no finite number (train.py: None for a failed run)
  is told FAIL, and more failures than ``max_failure_rate`` of this start's trials stop it.
  A batch cut short (an error in the launcher, Ctrl-C) is told FAIL, not left RUNNING.
- The study's best (all its trials, from every start and process) is logged and written to
  ``optimization_results.yaml`` in the sweep folder, as the plugin did.
"""

# No `from __future__ import annotations`: Hydra executes plugin modules without entering
# them in sys.modules, where dataclasses cannot resolve string annotations. Optuna is
# imported where it is used: Hydra imports every plugin module at every start.
import contextlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Override, RangeSweep, Transformer
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.errors import HydraException
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)


@dataclass
class TPESamplerConf:
    seed: int | None = None  # each process working on one study needs its own


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.tl_experiments_sweeper.optuna_sweeper.OptunaSweeper"
    direction: str = "minimize"  # or maximize: what the task function returns
    study_name: str | None = None
    storage: str | None = None  # SQLAlchemy URL of the study's database; None: in memory
    n_trials: int = 20  # trials to run in this start, added to the study's earlier ones
    n_jobs: int = 2  # trials asked together and launched as one batch
    max_failure_rate: float = 0.0  # failed share of this start's trials so far that stops it
    sampler: TPESamplerConf = field(default_factory=TPESamplerConf)
    params: dict[str, str] | None = None  # key -> override grammar, e.g. interval(0, 1)


# Not "optuna": an installed hydra-optuna-sweeper registers that name.
ConfigStore.instance().store(
    group="hydra/sweeper", name="tl_optuna", node=OptunaSweeperConf, provider="tl_experiments"
)


@dataclass
class SearchSpace:
    """What each trial draws (``distributions``) and what every job gets as given (``fixed``)."""

    distributions: dict[str, Any] = field(default_factory=dict)  # key -> BaseDistribution
    fixed: list[str] = field(default_factory=list)  # overrides as written
    texts: dict[str, dict[Any, str]] = field(default_factory=dict)  # a choice as an override

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """One job's overrides: the fixed ones, then the trial's ``params``."""
        drawn = [f"{k}={self.texts.get(k, {}).get(v, repr(v))}" for k, v in params.items()]
        return [*self.fixed, *drawn]


def search_space(overrides: list[Override]) -> SearchSpace:
    """The distributions and fixed overrides of ``overrides``; a key's last override wins."""
    from optuna.distributions import CategoricalDistribution

    by_key = {o.get_key_element(): o for o in overrides}
    space = SearchSpace()
    for key, override in by_key.items():
        if not override.is_sweep_override():
            space.fixed.append(override.input_line or f"{key}={override.value()}")
            continue
        sweep = override.value()
        if isinstance(sweep, ChoiceSweep | RangeSweep):
            sweep.shuffle = False  # shuffle() means nothing to a sampler
        if override.is_choice_sweep():
            space.texts[key] = choice_texts(override)
            space.distributions[key] = CategoricalDistribution(list(space.texts[key]))
        elif override.is_range_sweep() or override.is_interval_sweep():
            space.distributions[key] = numeric_distribution(key, override)
        else:
            raise HydraException(
                f"The tl_optuna sweeper takes choice(), range() and interval(), not "
                f"{override.input_line or key}; write the sweep with one of those."
            )
    return space


def choice_texts(override: Override) -> dict[Any, str]:
    """Each choice and how an override writes it: plainly where Hydra reads that back as the
    same value (``from:6``), else in Hydra's escaped form (``a\\,b``)."""
    parser, key = OverridesParser.create(), override.get_key_element()
    values = override.sweep_iterator(transformer=Transformer.encode)
    texts = {}
    for value, escaped in zip(values, override.sweep_string_iterator(), strict=True):
        texts[value] = escaped
        with contextlib.suppress(HydraException):  # the plain form does not parse
            if parser.parse_override(f"{key}={value}").value() == value:
                texts[value] = str(value)
    return texts


def numeric_distribution(key: str, override: Override) -> Any:
    """``range()`` or ``interval()`` (``tag(log, ...)``, ``tag(int, ...)``) as a distribution;
    one Optuna cannot take (a log scale with a step, a low above its high) is one sentence."""
    try:
        return _numeric(key, override)
    except ValueError as error:
        raise HydraException(f"{override.input_line or key}: {error}") from error


def _numeric(key: str, override: Override) -> Any:
    from optuna.distributions import FloatDistribution, IntDistribution

    sweep = override.value()
    log_scale = "log" in sweep.tags
    if override.is_interval_sweep():
        if "int" in sweep.tags:
            return IntDistribution(int(sweep.start), int(sweep.end), log=log_scale)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log_scale)
    values = list(override.sweep_iterator())
    if not values:
        raise HydraException(f"{override.input_line or key}: the range is empty.")
    low, high, step = min(values), max(values), abs(sweep.step)
    if all(isinstance(v, int) for v in [*values, step]):
        return IntDistribution(low, high, log=log_scale, step=step)
    return FloatDistribution(low, high, log=log_scale, step=step)


def job_value(ret: JobReturn) -> tuple[float | None, str]:
    """The job's return value as a number, or None and why there is none."""
    try:
        value = ret.return_value  # raises the job's exception if it raised
    except Exception as error:
        return None, f"raised {type(error).__name__}: {error}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, f"returned {value!r}, not a number"
    return (number, "") if math.isfinite(number) else (None, f"returned {number}")


def _fail_untold(study: "optuna.Study", trials: "list[optuna.Trial]") -> None:
    """Tell FAIL to those of ``trials`` still RUNNING in the study (errors here would hide
    the one being raised, so they are suppressed)."""
    from optuna.trial import TrialState

    ours = {t.number for t in trials}
    with contextlib.suppress(Exception):
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number in ours:
                with contextlib.suppress(Exception):
                    study.tell(t.number, state=TrialState.FAIL)


class OptunaSweeper(Sweeper):
    """Optuna's TPE over ``params``, ``n_jobs`` trials per launcher batch (module doc)."""

    def __init__(
        self,
        direction: str = "minimize",
        study_name: str | None = None,
        storage: str | None = None,
        n_trials: int = 20,
        n_jobs: int = 2,
        max_failure_rate: float = 0.0,
        sampler: DictConfig | dict | None = None,
        params: DictConfig | dict | None = None,
    ) -> None:
        super().__init__()
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.seed = (sampler or {}).get("seed")
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Launcher | None = None
        self.job_idx = 0
        if self.direction not in ("minimize", "maximize"):
            raise HydraException(f"hydra.sweeper.direction={self.direction}: minimize or maximize.")
        if not 0.0 <= self.max_failure_rate <= 1.0 or self.n_jobs < 1:
            raise HydraException(
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate} must lie in [0, 1] and "
                f"hydra.sweeper.n_jobs={self.n_jobs} be at least 1."
            )

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        import optuna

        assert self.config is not None and self.launcher is not None
        loader = self.hydra_context.config_loader if self.hydra_context else None
        given = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        space = search_space(OverridesParser.create(config_loader=loader).parse_overrides(given))
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=optuna.samplers.TPESampler(seed=self.seed),
            direction=self.direction,
            load_if_exists=True,
        )
        if study.direction.name.lower() != self.direction:  # a loaded study keeps its own
            raise HydraException(
                f"Study {study.study_name} in {self.storage} is to "
                f"{study.direction.name.lower()}, not hydra.sweeper.direction={self.direction}."
            )
        log.info(f"Study {study.study_name} ({self.direction}) on {self.storage or 'memory'}")
        done = failed = 0
        while done < self.n_trials:
            batch = min(self.n_jobs, self.n_trials - done)
            trials: list = []
            try:
                for _ in range(batch):  # one by one: an interrupt between asks fails those asked
                    trials.append(study.ask(space.distributions))
                failed += self.run_batch(study, trials, space)
            except BaseException:  # Ctrl-C, a launcher or storage error: no trial left RUNNING
                _fail_untold(study, trials)
                raise
            done += batch
            if failed > self.max_failure_rate * done:
                raise HydraException(
                    f"{failed} of {done} trials failed, more than hydra.sweeper."
                    f"max_failure_rate={self.max_failure_rate} allows; the failed jobs' "
                    "error.json or log says why (or raise max_failure_rate to go on)."
                )
        self.save_best(study)

    def run_batch(
        self, study: "optuna.Study", trials: "list[optuna.Trial]", space: SearchSpace
    ) -> int:
        """Launch ``trials`` as one batch and tell each its value; the number that failed."""
        from optuna.trial import TrialState

        batch = [space.overrides(trial.params) for trial in trials]
        if self.hydra_context is not None:  # each job's config loads, before any job runs
            self.validate_batch_is_legal(batch)
        returns = list(self.launcher.launch(batch, initial_job_idx=self.job_idx))
        self.job_idx += len(returns)
        failed = 0
        for trial, ret in zip(trials, returns, strict=True):
            value, why = job_value(ret)
            if value is None:
                failed += 1
                log.warning(f"Trial {trial.number} failed: the job {why}")
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, value)
        return failed

    def save_best(self, study: "optuna.Study") -> None:
        """Log the study's best trial and write it to ``optimization_results.yaml``."""
        from optuna.trial import TrialState

        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        best = study.best_trial if finished else None
        results = {
            "name": "optuna",
            "best_params": best.params if best else None,
            "best_value": best.value if best else None,
        }
        if best:
            log.info(f"Best parameters: {best.params}")
            log.info(f"Best value: {best.value} (trial {best.number})")
        else:
            log.warning(f"No trial of study {study.study_name} has completed.")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
