"""`mnistkit tune`: a hyper-parameter search with Optuna, on validation accuracy only.

Each trial is an ordinary run directory (OUT/trial-NNNN) trained from the base config with the
trial's sampled values on top. The TPE sampler proposes values; a median pruner stops trials whose
validation accuracy falls behind earlier trials at the same share of their schedule, past its first
quarter, by more than the validation split can measure. The test split is never scored during a
study. Trials run in worker processes that share one Optuna storage (SQLite in OUT by default, or
any database URL Optuna supports), so an interrupted study resumes where it stopped and workers on
other machines can join it. Finished trials with a heartbeat older than the grace period are failed
and retried, so a killed worker loses no trial.

Output in OUT: results.csv and results.md (one row per trial), history.png and importances.png
(Optuna's plots), and best_config.json, which `mnistkit train --config` trains again.
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnistkit.config import TrainConfig, merge, merge_by_hand, read_config_file
from mnistkit.errors import MnistkitError
from mnistkit.fileio import atomic_write_json, atomic_write_text
from mnistkit.metrics import standard_error
from mnistkit.runs import read_json
from mnistkit.train import train

# name -> how to sample it: {"float": [low, high], "log": bool} | {"int": [low, high]} | {"choices": [...]}.
# Dotted names reach nested fields, as with `--set`.
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "lr": {"float": [0.02, 0.4], "log": True},
    "weight_decay": {"float": [1e-5, 2e-3], "log": True},
    "epochs": {"int": [5, 30]},
    "label_smoothing": {"float": [0.0, 0.2]},
    "model": {"choices": ["mknet-s", "mknet-m", "mknet-l"]},
    "augment.rotate_degrees": {"float": [0.0, 15.0]},
    "augment.translate": {"float": [0.0, 0.15]},
    "augment.scale": {"float": [0.0, 0.15]},
    "augment.hflip": {"choices": [0.0, 0.5]},
    "augment.erase": {"float": [0.0, 0.5]},
}
PRUNERS = ("median", "none")
# A trial is pruned only when it trails the median by more than this many standard errors of the gap between two
# accuracies measured on the validation split: 10 points on 100 images at 85% accuracy, 0.4 points on 5,000 at 99%.
PRUNE_MARGIN_SE = 2.0


@dataclass
class TuneConfig:
    """A study: what to start from, what to search, how many trials, where they are stored."""

    base: dict[str, Any]  # TrainConfig fields every trial starts from
    trials: int = 20  # the study's total, counting trials finished in earlier sessions
    workers: int = 1  # local worker processes
    storage: str | None = None  # an Optuna storage URL; default sqlite:///OUT/study.db
    study: str = "mnistkit"
    out: str = "runs/tune"
    space: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(DEFAULT_SPACE))
    pruner: str = "median"
    seed: int = 0
    enqueue: list[dict[str, Any]] = field(default_factory=list)  # values the first trials try, in order
    heartbeat_seconds: int = 10

    def __post_init__(self) -> None:
        if self.trials < 1 or self.workers < 1:
            raise MnistkitError(f"tune: trials and workers must be >= 1, found {self.trials} and {self.workers}")
        if self.pruner not in PRUNERS:
            raise MnistkitError(f"tune: pruner must be one of {PRUNERS}, found '{self.pruner}'")
        for name, spec in self.space.items():
            check_param(name, spec)
        TrainConfig.from_dict(merge(self.base, {"out": None}))  # a bad base fails now, not in every trial

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.out).resolve() / 'study.db'}"


def check_param(name: str, spec: dict[str, Any]) -> None:
    kinds = [k for k in ("float", "int", "choices") if k in spec]
    if len(kinds) != 1 or (kinds[0] != "choices" and len(spec[kinds[0]]) != 2):
        raise MnistkitError(f"tune: search space entry '{name}' must have one of float: [low, high], "
                            f"int: [low, high] or choices: [...], found {spec}")


def read_space(path: str | Path) -> dict[str, dict[str, Any]]:
    space = read_config_file(path)
    for name, spec in space.items():
        check_param(name, spec)
    return space


def sample(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    values = {}
    for name, spec in space.items():
        if "float" in spec:
            values[name] = trial.suggest_float(name, *spec["float"], log=spec.get("log", False))
        elif "int" in spec:
            values[name] = trial.suggest_int(name, *spec["int"], log=spec.get("log", False))
        else:
            values[name] = trial.suggest_categorical(name, spec["choices"])
    return values


def nested(values: dict[str, Any]) -> dict[str, Any]:
    """{'augment.erase': 0.2} -> {'augment': {'erase': 0.2}}."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        *parents, leaf = name.split(".")
        target = out
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return out


def trial_dir(cfg: TuneConfig, number: int) -> Path:
    return Path(cfg.out) / f"trial-{number:04d}"


def judging_point(progress: float) -> int:
    """The step at which a trial's validation accuracy is reported: its share of the lr schedule done, in steps
    of 5%, so that trials with different epochs or budgets meet at the same points."""
    return int(progress * 20 + 1e-9)


def unpruned_trials(trials: int) -> int:
    """Trials that finish before the pruner judges others: a quarter of the study, at most Optuna's default of 5,
    so that a median, not one trial's luck, decides which trials stop."""
    return min(5, max(1, trials // 4))


def make_study(cfg: TuneConfig, heartbeat: bool = True, attempts: int = 5):
    """The study in its storage, created by whichever worker comes first. Workers started together on
    several machines can race to create the tables, so a failed first contact is retried briefly."""
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            return open_study(cfg, heartbeat)
        except sqlalchemy.exc.SQLAlchemyError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def open_study(cfg: TuneConfig, heartbeat: bool):
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2) if heartbeat else None
        storage = optuna.storages.RDBStorage(
            cfg.storage_url, heartbeat_interval=cfg.heartbeat_seconds if heartbeat else None,
            grace_period=3 * cfg.heartbeat_seconds if heartbeat else None, heartbeat_stale_trial_callback=retry)
    pruner = median_pruner(unpruned_trials(cfg.trials)) if cfg.pruner == "median" else optuna.pruners.NopPruner()
    sampler = optuna.samplers.TPESampler(seed=cfg.seed)
    return optuna.create_study(study_name=cfg.study, storage=storage, direction="maximize", sampler=sampler,
                               pruner=pruner, load_if_exists=True)


def pruning_threshold(others: list[float], val_images: int | None, margin_se: float = PRUNE_MARGIN_SE) -> float | None:
    """The validation accuracy below which a trial is stopped: the median of ``others`` (finished trials at the same
    judging point) less ``margin_se`` standard errors of the gap between two accuracies measured on ``val_images``
    images; the bare median where the split's size is not known (Optuna's rule); None with nothing to compare.
    Optuna's median pruner has no margin: on a small validation split it stopped a trial that would have tied for
    the best (BENCHMARKS.md, `bench/pruner.py`)."""
    if not others:
        return None
    median = statistics.median(others)
    if not val_images:
        return median
    # The gap between two accuracies on the same number of images has sqrt(2) times the error of one.
    return median - margin_se * math.sqrt(2) * standard_error(median, val_images)


def trails_the_median(best_so_far: float, others: list[float], val_images: int | None,
                      margin_se: float = PRUNE_MARGIN_SE) -> bool:
    """Whether a trial whose best validation accuracy so far is ``best_so_far`` falls under the `pruning_threshold`."""
    threshold = pruning_threshold(others, val_images, margin_se)
    return threshold is not None and best_so_far < threshold


def completed_trials(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def values_at(trials: list, step: int) -> list[float]:
    """The validation accuracy each of ``trials`` reported at judging point ``step`` (those that reached it)."""
    return [t.intermediate_values[step] for t in trials if step in t.intermediate_values]


def pruning_note(best_so_far: float, others: list[float], val_images: int | None) -> str:
    """Why a trial was stopped, in numbers: its best so far against the threshold and what the threshold is made of."""
    threshold, median = pruning_threshold(others, val_images), statistics.median(others)
    split = f"{val_images:,} validation images" if val_images else "a validation split of unknown size: no margin"
    return (f"best val so far {best_so_far:.4f} < {threshold:.4f}: the median of {len(others)} finished trials at "
            f"this point, {median:.4f}, less a margin of {median - threshold:.4f} for {split}")


def median_pruner(startup_trials: int):
    """An Optuna pruner: a trial is stopped where it `trails_the_median` of the completed trials at the same
    judging point, once ``startup_trials`` have completed. Trials carry their validation split's size as the
    user attribute ``val_images``."""
    import optuna

    class MedianPrunerWithMargin(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            step, completed = trial.last_step, completed_trials(study)
            if step is None or len(completed) < startup_trials:
                return False
            return trails_the_median(max(trial.intermediate_values.values()), values_at(completed, step),
                                     trial.user_attrs.get("val_images"))

    return MedianPrunerWithMargin()


def seed_trial(trial, seed: int) -> None:
    """Give ``trial`` a sampler of its own, seeded by ``seed`` and its number. Every worker of a study opens it with
    the same ``--seed``, and TPE draws its first trials at random: with one seeded sampler per worker, two workers
    (local processes or other machines) drew the same values, trial for trial. A study's trials stay reproducible."""
    import optuna

    trial.study.sampler = optuna.samplers.TPESampler(seed=(seed * 1_000_003 + trial.number) % 2**32)


def objective(cfg: TuneConfig, trial) -> float:
    import optuna

    seed_trial(trial, cfg.seed)
    values = sample(trial, cfg.space)
    out = trial_dir(cfg, trial.number)
    trial.set_user_attr("run_dir", str(out))
    config = TrainConfig.from_dict(merge(merge_by_hand(cfg.base, nested(values)), {
        "out": str(out), "progress": False, "recipe_note": f"trial {trial.number} of study '{cfg.study}'"}))

    reported: dict[int, float] = {}  # judging point -> validation accuracy

    def report(row: dict) -> None:
        # Trials are compared at the same share of their lr schedule, not the same epoch: `epochs` is searched, and
        # epoch 3 is the end of a short schedule but the warm-up of a long one. None is judged in its first quarter.
        at = judging_point(row["progress"])
        if at in reported:
            return
        if not reported:
            trial.set_user_attr("val_images", row["val_images"])  # what the pruner's margin is measured against
        reported[at] = row["val_accuracy"]
        trial.set_user_attr("epochs_run", row["epoch"])  # at the judging points only: a storage write each
        trial.report(row["val_accuracy"], at)
        if row["progress"] >= 0.25 and trial.should_prune():
            # Read again after the pruner's decision: a trial that completed in between could move the median.
            note = pruning_note(max(reported.values()), values_at(completed_trials(trial.study), at), row["val_images"])
            print(f"trial {trial.number}: pruned after epoch {row['epoch']} ({at * 5}% of its schedule): {note}",
                  flush=True)
            raise optuna.TrialPruned()

    run = train(config, on_epoch=report, score_test=False)
    trial.set_user_attr("epochs_run", run.metrics["epochs"])
    value = run.metrics["val_accuracy"]
    print(f"trial {trial.number}: val {value:.4f} in {run.metrics['train_seconds']:.0f}s  {values}", flush=True)
    return value


def finished_trials(study) -> int:
    from optuna.trial import TrialState

    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.get_trials(deepcopy=False))


def work(cfg: TuneConfig, n_trials: int, threads: int) -> None:
    """One worker: join the study and run up to ``n_trials`` trials (a retried failed trial counts as one)."""
    import optuna
    import torch
    from optuna.trial import TrialState

    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = make_study(cfg)
    # Workers on other machines add trials too: stop once the study holds enough finished ones.
    enough = optuna.study.MaxTrialsCallback(cfg.trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
    study.optimize(lambda trial: objective(cfg, trial), n_trials=n_trials, gc_after_trial=False, callbacks=[enough])


def shares_of(remaining: int, workers: int) -> list[int]:
    workers = max(1, min(workers, remaining))
    return [remaining // workers + (i < remaining % workers) for i in range(workers)] if remaining > 0 else []


def tune(cfg: TuneConfig) -> dict[str, Any]:
    """Run the study until it holds ``cfg.trials`` finished trials, then write its results. Returns the
    best trial's number, value, params and run directory."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    study = make_study(cfg, heartbeat=False)
    if cfg.enqueue and not study.trials:
        for values in cfg.enqueue:
            study.enqueue_trial(values)
    shares = shares_of(cfg.trials - finished_trials(study), cfg.workers)
    if shares:
        threads = max(1, (os.cpu_count() or 1) // len(shares))
        if len(shares) == 1:
            work(cfg, shares[0], threads)
        else:
            context = multiprocessing.get_context("spawn")  # a fresh interpreter each: no forked torch threads
            processes = [context.Process(target=work, args=(cfg, share, threads), name=f"mnistkit-tune-{i}")
                         for i, share in enumerate(shares)]
            for p in processes:
                p.start()
            for p in processes:
                p.join()
    settle(cfg, threads=os.cpu_count() or 1)
    return write_results(make_study(cfg, heartbeat=False), cfg)


def settle(cfg: TuneConfig, threads: int) -> None:
    """Wait until no trial is left running: trials of live workers finish; those of dead ones (no
    heartbeat for the grace period) are failed and retried here once, so none is lost."""
    import optuna
    from optuna.trial import TrialState

    while True:
        study = make_study(cfg)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # queues each retry as a waiting trial
        states = [t.state for t in study.get_trials(deepcopy=False)]
        if TrialState.WAITING in states:
            work(cfg, states.count(TrialState.WAITING), threads)
        elif TrialState.RUNNING in states:
            time.sleep(cfg.heartbeat_seconds)
        else:
            return


def results_rows(study, cfg: TuneConfig) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        row = {"trial": t.number, "state": t.state.name.lower(),
               "val_accuracy": t.value if t.value is not None else
               (max(t.intermediate_values.values()) if t.intermediate_values else None),
               "epochs_run": t.user_attrs.get("epochs_run", 0),
               "seconds": round(t.duration.total_seconds(), 1) if t.duration else None}
        row.update({name: t.params.get(name) for name in cfg.space})
        row["run_dir"] = t.user_attrs.get("run_dir", "")
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no trials\n"
    columns = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_plots(study, out: Path) -> list[Path]:
    """Optuna's optimisation history and parameter importances (the latter needs 2+ finished trials)."""
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    written = []
    for name, draw in (("history.png", ovm.plot_optimization_history), ("importances.png", ovm.plot_param_importances)):
        try:
            axes = draw(study)
        except (ValueError, RuntimeError, ZeroDivisionError):  # too few finished trials for this plot
            continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        figure.savefig(out / name, dpi=110, bbox_inches="tight")
        plt.close(figure)
        written.append(out / name)
    return written


def write_results(study, cfg: TuneConfig) -> dict[str, Any]:
    out = Path(cfg.out)
    rows = results_rows(study, cfg)
    table = io.StringIO()
    if rows:
        writer = csv.DictWriter(table, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(out / "results.csv", table.getvalue())
    atomic_write_text(out / "results.md", markdown(rows))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        write_plots(study, out)
    try:
        best = study.best_trial
    except ValueError:
        raise MnistkitError(f"tune: study '{cfg.study}' has no finished trial yet") from None
    run_dir = Path(best.user_attrs["run_dir"])
    config = read_json(run_dir / "config.json")
    config.pop("out", None)
    config.update(progress=True, recipe_note=f"best of study '{cfg.study}': trial {best.number}, "
                                              f"val accuracy {best.value:.4f}, params {json.dumps(best.params)}")
    atomic_write_json(out / "best_config.json", config)
    return {"trial": best.number, "val_accuracy": best.value, "params": best.params, "run_dir": str(run_dir),
            "finished": finished_trials(study), "trials": len(rows)}
