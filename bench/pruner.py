"""What `mnistkit tune`'s pruner buys: one search run twice, with the median pruner and without it.

    python bench/fashion_dev.py                       # the dev data, once
    python bench/pruner.py [--per-class 100|1000]     # appends two tables to BENCHMARKS.md

The same study (TPE seed, trials, workers, search space) on Fashion-MNIST 100 or 1,000 images per class, whose
validation splits (10% of the training images) hold 100 and 1,000 images. Per pruner: wall time (first trial's
start to last trial's end) and trial-minutes, trials completed and pruned, the trial the study chooses (the best
validation accuracy) and its accuracy on the dev holdout (the last 10,000 Fashion training images), which no
study sees: how good the chosen recipe really is. One TPE seed: a difference in time is a measurement, a difference
in the chosen trial an anecdote.

The unpruned study records every trial's validation accuracy at every judging point and where it ends, so the
second table replays pruning rules on those records: Optuna's median pruner (no margin) and mnistkit's (a margin of
`PRUNE_MARGIN_SE` standard errors), saying what each would have stopped, what that saved, which trial the study
would then choose, and its dev-holdout accuracy. A trial is judged against the trials that finished before it
started (with N workers, those numbered at most its own number minus N), as in the live study.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, append_section, markdown_table  # noqa: E402
from generic import DEV, build  # noqa: E402
from mnistkit.metrics import standard_error  # noqa: E402

WORK = ROOT / "runs" / "pruner"
# The default space without `model`: mknet-l trials would take most of the time whichever pruner runs.
SPACE = {"lr": {"float": [0.02, 0.4], "log": True}, "weight_decay": {"float": [1e-5, 2e-3], "log": True},
         "label_smoothing": {"float": [0.0, 0.2]}, "augment.rotate_degrees": {"float": [0.0, 15.0]},
         "augment.translate": {"float": [0.0, 0.15]}, "augment.hflip": {"choices": [0.0, 0.5]},
         "augment.erase": {"float": [0.0, 0.5]}}


def holdout_accuracy(run_dir: str) -> float:
    """A trial's accuracy on its data's test split, here the dev holdout (the last 10,000 Fashion training images):
    to judge the pruning rules only, never seen by a study."""
    from mnistkit.evaluate import evaluate_run

    return evaluate_run(run_dir, "test").accuracy


def study(pruner: str, data_dir: Path, work: Path, trials: int, workers: int, seed: int, reuse: bool) -> list:
    out = work / pruner
    if not reuse:
        shutil.rmtree(out, ignore_errors=True)  # a fresh study: a resumed one would add no trials
    out.mkdir(parents=True, exist_ok=True)
    (out / "space.json").write_text(json.dumps(SPACE))
    cmd = [sys.executable, "-m", "mnistkit", "tune", "--dataset", "idx", "--data-dir", str(data_dir), "--trials",
           str(trials), "--workers", str(workers), "--space", str(out / "space.json"), "--pruner", pruner, "--seed",
           str(seed), "--out", str(out)]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)
    recorded = study_trials(out / "study.db")
    wall = max(t.datetime_complete for t in recorded) - min(t.datetime_start for t in recorded)
    states = [t.state.name.lower() for t in recorded]
    best = max((t for t in recorded if t.value is not None), key=lambda t: t.value)  # the first of a tie, as Optuna
    return [pruner, f"{wall.total_seconds() / 60:.1f}", f"{sum(t.duration.total_seconds() for t in recorded) / 60:.1f}",
            states.count("complete"), states.count("pruned"), best.number, f"{best.value:.4f}",
            f"{holdout_accuracy(best.user_attrs['run_dir']):.4f}"]


def study_trials(db: Path) -> list:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name="mnistkit", storage=f"sqlite:///{db}").trials


def val_images(trial) -> int:
    return json.loads((Path(trial.user_attrs["run_dir"]) / "metrics.json").read_text())["val_images"]


def replay(trials: list, margin_se: float, workers: int) -> dict[int, int]:
    """Trial number -> the judging point (in 5% steps) where ``trails_the_median`` would have stopped it."""
    from mnistkit.tune import trails_the_median, unpruned_trials, values_at

    completed, stopped = [], {}
    for trial in sorted(trials, key=lambda t: t.number):
        visible = [t for t in completed if t.number <= trial.number - workers]
        best, images = -1.0, val_images(trial)
        for step in sorted(trial.intermediate_values):
            best = max(best, trial.intermediate_values[step])
            if (step >= 5 and len(visible) >= unpruned_trials(len(trials))  # tune judges from a quarter on
                    and trails_the_median(best, values_at(visible, step), images, margin_se)):
                stopped[trial.number] = step
                break
        if trial.number not in stopped:
            completed.append(trial)
    return stopped


def replay_rows(trials: list, workers: int) -> list[list]:
    from mnistkit.tune import PRUNE_MARGIN_SE

    final = {t.number: t.value for t in trials}
    holdout = {t.number: holdout_accuracy(t.user_attrs["run_dir"]) for t in trials}
    best = max(final.values())
    near = best - standard_error(best, val_images(trials[0]))
    rows = []
    for name, margin in (("no pruning", None), ("Optuna's median (no margin)", 0.0),
                         (f"mnistkit's median ({PRUNE_MARGIN_SE:g} SE margin)", PRUNE_MARGIN_SE)):
        stopped = {} if margin is None else replay(trials, margin, workers)
        saved = sum(1 - step / 20 for step in stopped.values()) / len(trials)
        chosen = max((n for n in final if n not in stopped), key=lambda n: (final[n], -n))  # the first of a tie
        rows.append([name, ", ".join(f"{n} at {step * 5}%" for n, step in sorted(stopped.items())) or "none",
                     f"{saved:.0%}", ", ".join(f"{final[n]:.3f}" for n in sorted(stopped)) or "-",
                     sum(final[n] >= near for n in stopped), f"{chosen} ({final[chosen]:.4f})", f"{holdout[chosen]:.4f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, choices=(100, 1000), default=100)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true",
                        help="keep the studies already in runs/pruner/N-per-class (tune resumes them: a finished one "
                             "runs no trial again), e.g. to run one pruner's study anew after deleting it")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    if not DEV.exists():
        raise SystemExit(f"{DEV} is missing: run `python bench/fashion_dev.py` first")
    dataset = f"Fashion, {args.per_class} per class (idx)"
    _, data_dir, _ = build()[dataset]
    work = WORK / f"{args.per_class}-per-class"
    rows = [study(pruner, data_dir, work, args.trials, args.workers, args.seed, args.reuse)
            for pruner in ("median", "none")]
    table = markdown_table(["pruner", "wall min", "trial min (sum)", "completed", "pruned", "chosen trial",
                            "its val", "its dev-holdout acc"], rows)
    recorded = [t for t in study_trials(work / "none" / "study.db") if t.value is not None]
    replayed = markdown_table(["rule", "trials stopped (at share of schedule)", "trial work saved",
                               "their final val", "of them within 1 SE of the best val", "chosen trial (val)",
                               "its dev-holdout acc"], replay_rows(recorded, args.workers))
    print(table, replayed, sep="\n\n")
    command = (f"python bench/pruner.py --per-class {args.per_class} --trials {args.trials} --workers {args.workers} "
               f"--seed {args.seed}" + (" --reuse" if args.reuse else ""))
    if not args.no_append:
        append_section(f"`mnistkit tune` with and without its pruner: {dataset}, {args.trials} trials, "
                       f"{args.workers} workers", command, table,
                       "Both studies try the same trials: TPE draws its first ten at random, each trial from the "
                       "study's seed and its own number. Search space: the default without `model` (the generic "
                       "recipe's mknet-m in every trial).")
        append_section(f"Pruning rules replayed on the unpruned study's records: {dataset}", command, replayed,
                       f"{len(recorded)} trials, {val_images(recorded[0])} validation images.")


if __name__ == "__main__":
    main()
