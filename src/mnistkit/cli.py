"""The `mnistkit` command: a thin layer over the library. Each command maps to one library call."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mnistkit.config import COMPARE_MODELS, EMBEDDING_SAMPLE

app = typer.Typer(
    help="Train, evaluate, explain and serve small-image classifiers. MNIST is bundled: "
    "`mnistkit train` works offline out of the box.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # a docstring paragraph is rewrapped to the terminal, not broken where the source is
    add_completion=False,
)
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
OPTION_HELP = ("NAME=VALUE, a dataset option (e.g. split=letters for emnist, classes=cloud,sun for quickdraw); "
               "mnistkit datasets lists the datasets.")


def dataset_options(items: list[str] | None) -> dict:
    """``--option NAME=VALUE`` lines as a dataset's loader options (a value read as JSON where it parses)."""
    from mnistkit.errors import MnistkitError

    options: dict = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise MnistkitError(f"--option expects NAME=VALUE (e.g. split=letters), found '{item}'")
        try:
            options[name.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            options[name.strip()] = raw
    return options


def main() -> None:
    """Entry point: user errors print one line instead of a traceback."""
    from mnistkit.distributed import exit_process, from_env
    from mnistkit.errors import MnistkitError

    try:
        app(prog_name="mnistkit")
        code: int | str | None = 0
    except MnistkitError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        code = 2
    except SystemExit as done:
        code = done.code
    if from_env().distributed:
        if isinstance(code, str):
            err_console.print(code)
        exit_process(code if isinstance(code, int) else int(code is not None))
    sys.exit(code)


def run_table(title: str, columns: list[str], rows: list[list]) -> None:
    table = Table(title=title, title_justify="left")
    numeric = [all(str(row[i]).replace(",", "").replace(".", "").replace("%", "").isdigit() for row in rows)
               for i in range(len(columns))]
    for col, is_number in zip(columns, numeric):
        table.add_column(col, justify="right" if is_number else "left")
    for row in rows:
        table.add_row(*[str(v) for v in row])
    console.print(table)


@app.command()
def train(
    preset: Annotated[str | None, typer.Option(help="Named recipe: default, fast, best, or a tutorial's (lenet, ...). "
                                                    "See `mnistkit presets`.")] = None,
    config: Annotated[Path | None, typer.Option(help="JSON file of config fields (a run's config.json, or "
                                                     "`mnistkit tune`'s best config); its 'out' is ignored.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE for any config field, dotted for nested "
                                                   "ones, e.g. --set augment.rotate_degrees=5 --set ema_decay=0.999. "
                                                   "`mnistkit config` lists every field.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name (see `mnistkit models`).")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset name (see `mnistkit datasets`).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder holding the dataset's files.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the training split.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per optimizer step.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="sgd, adam or adamw.")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="L2 penalty on weights (not biases or norms).")] = None,
    schedule: Annotated[str | None, typer.Option(help="constant, step, cosine or onecycle.")] = None,
    label_smoothing: Annotated[float | None, typer.Option(help="Cross-entropy label smoothing in [0, 1).")] = None,
    val_size: Annotated[int | None, typer.Option(help="Training images held out for model selection.")] = None,
    budget_seconds: Annotated[float | None, typer.Option(help="Train for this many seconds (lr follows the clock).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed; the same seed on CPU gives identical results.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default: runs/MODEL-DATASET-TIME).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue an interrupted run in this directory.")] = None,
    test_every_epoch: Annotated[bool | None, typer.Option(help="Also report test accuracy after every epoch.")] = None,
    compile: Annotated[bool | None, typer.Option(help="torch.compile the model (helps on GPU).")] = None,
    amp: Annotated[bool | None, typer.Option(help="bf16 autocast for training (CUDA, or a CPU with native bf16).")] = None,
    report: Annotated[bool, typer.Option(help="Write report.html with all figures after training.")] = True,
    progress: Annotated[bool, typer.Option(help="Show progress bars and per-epoch lines.")] = True,
) -> None:
    """Train a model; writes weights, config, metrics (and a report) to a run directory.

    The config is built in this order: the preset, then --config, then the named options, then --set."""
    from mnistkit.config import build_config
    from mnistkit.train import train as run_training

    options = dict(model=model, dataset=dataset, data_dir=str(data_dir) if data_dir else None, epochs=epochs,
                   batch_size=batch_size, lr=lr, optimizer=optimizer, weight_decay=weight_decay, schedule=schedule,
                   label_smoothing=label_smoothing, val_size=val_size, budget_seconds=budget_seconds, seed=seed,
                   device=device, out=str(out) if out else None, test_every_epoch=test_every_epoch,
                   compile=compile, amp=amp, progress=progress)
    cfg = None if resume is not None else build_config(preset, config, options, set_)
    try:
        run = run_training(cfg, resume=resume)
    except KeyboardInterrupt:
        where = resume or (cfg.out if cfg else None) or "the run directory"
        err_console.print(f"\ninterrupted: the last finished epoch is saved; continue with "
                          f"`mnistkit train --resume {where}`")
        raise typer.Exit(130) from None
    from mnistkit.distributed import from_env

    if not from_env().main:  # under torchrun, one process reports
        return
    from mnistkit.runs import final_val_accuracy

    m = run.metrics  # test and val scored alike: with the TTA validation kept
    console.print(f"test accuracy [bold]{m['test_accuracy']:.4f}[/] (val {final_val_accuracy(m):.4f}, "
                  f"{m['train_seconds']:.1f}s training) -> {run.run_dir}")
    if report:
        from mnistkit.report import write_report

        write_report(run.run_dir, log=print if run.config.progress else (lambda *_: None), test_logits=run.test_logits)


@app.command("config")
def show_config(
    preset: Annotated[str | None, typer.Option(help="Start from this preset (default: `default`).")] = None,
    config: Annotated[Path | None, typer.Option(help="JSON file of config fields.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE, as for `mnistkit train`.")] = None,
) -> None:
    """Print the full training config a preset, file and --set lines give, as JSON (every field --set reaches)."""
    from mnistkit.config import build_config

    print(json.dumps(build_config(preset, config, None, set_).to_dict(), indent=2))


@app.command()
def presets() -> None:
    """List the named recipes and where each differs from the default one."""
    from mnistkit.config import PRESETS

    def shown(key: str, value) -> str:
        if key == "augment":  # only the warps that are on
            value = {k: v for k, v in value.items() if v} or "none"
        return f"{key}={json.dumps(value)}"

    run_table("Presets (differences from `default`, i.e. TrainConfig())", ["preset", "settings"],
              [[name, ", ".join(shown(k, v) for k, v in diff.items()) or "(TrainConfig() itself)"]
               for name, diff in PRESETS.items()])


@app.command()
def tune(
    preset: Annotated[str | None, typer.Option(help="Recipe the trials start from (default: the dataset's).")] = None,
    config: Annotated[Path | None, typer.Option(help="JSON file of config fields the trials start from.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE on the starting config, as for train.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset name (see `mnistkit datasets`).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder holding the dataset's files.")] = None,
    trials: Annotated[int, typer.Option(help="Finished trials the study should hold (earlier sessions count).")] = 20,
    workers: Annotated[int, typer.Option(help="Local worker processes sharing the study.")] = 1,
    space: Annotated[Path | None, typer.Option(help="JSON search space: {name: {float: [lo, hi], log: true} | "
                                                    "{int: [lo, hi]} | {choices: [...]}} (default: lr, weight "
                                                    "decay, epochs, label smoothing, model, augmentation).")] = None,
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL shared by all workers, e.g. "
                                                     "postgresql://user:pw@host/db (default: sqlite in OUT).")] = None,
    study: Annotated[str, typer.Option(help="Study name: the same name and storage resume or join a study.")] = "mnistkit",
    pruner: Annotated[str, typer.Option(
        help="median (stop a trial that trails the median at the same share of its lr schedule by more than two "
             "standard errors of the validation split) or none.")] = "median",
    seed: Annotated[int, typer.Option(help="Seed of the TPE sampler. Each trial draws from it and the trial's "
                                           "number, so workers sharing the study never repeat each other.")] = 0,
    out: Annotated[Path, typer.Option(help="Trial runs, results, plots and best_config.json go here.")] = Path("runs/tune"),
) -> None:
    """Search hyper-parameters with Optuna on validation accuracy (the test split is never scored).

    Every trial is a normal run directory. Re-running the same command resumes the study; running it
    on other machines with the same --storage and --study adds workers to it."""
    from mnistkit.config import build_config
    from mnistkit.tune import DEFAULT_SPACE, TuneConfig, read_space
    from mnistkit.tune import tune as run_study

    base = build_config(preset, config, {"dataset": dataset, "data_dir": str(data_dir) if data_dir else None}, set_)
    cfg = TuneConfig(base=base.to_dict(), trials=trials, workers=workers, storage=storage, study=study, out=str(out),
                     space=read_space(space) if space else dict(DEFAULT_SPACE), pruner=pruner, seed=seed)
    best = run_study(cfg)
    console.print((out / "results.md").read_text(), highlight=False)
    console.print(f"best: trial {best['trial']}, val accuracy [bold]{best['val_accuracy']:.4f}[/], {best['params']}")
    console.print(f"train it again: mnistkit train --config {out / 'best_config.json'}")


@app.command()
def evaluate(
    run_dir: Annotated[str, typer.Argument(help="A run directory written by `mnistkit train`, or a pretrained "
                                                "model's name (see `mnistkit models --pretrained`).")],
    split: Annotated[str, typer.Option(help="test or val; with --dataset, test or all.")] = "test",
    dataset: Annotated[str | None, typer.Option(help="Score on another labelled dataset instead, e.g. `folder` "
                                                        "with --data-dir holding 0/ 1/ ... 9/ of your own digits; "
                                                        "its classes are matched to the model's by name.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder holding the dataset's files: with --dataset, that "
                                                       "dataset's; without, the model's own dataset (where it moved, "
                                                       "or for a pretrained model).")] = None,
    mistakes: Annotated[int, typer.Option(help="How many of the hardest mistakes to list.")] = 10,
    option: Annotated[list[str] | None, typer.Option("--option", help=OPTION_HELP + " With --dataset only.")] = None,
) -> None:
    """Test accuracy, per-class precision/recall/F1, confusion matrix, hardest mistakes -> DIR/eval.json.

    With --dataset, the model is scored on data it never trained on, such as a folder of your own scans
    (`--split all` scores every image in it) -> `DIR/eval_<dataset>_<split>.json`."""
    from mnistkit.evaluate import evaluate_on_dataset, evaluate_run
    from mnistkit.pretrained import is_shipped
    from mnistkit.runs import eval_file

    if dataset is None:
        result = evaluate_run(run_dir, split=split, data_dir=data_dir)
        written = None if not Path(run_dir).is_dir() or is_shipped(run_dir) else Path(run_dir) / eval_file(split)
    else:
        result, written = evaluate_on_dataset(run_dir, dataset, data_dir, split=split,
                                              options=dataset_options(option))
    print_evaluation(result, f"{dataset} {split}" if dataset else split, mistakes)
    console.print(f"written {written}" if written else "not written: a shipped model's folder is never written to")


def print_evaluation(result, what: str, mistakes: int) -> None:
    classes = result.classes
    console.print(f"{what} accuracy [bold]{result.accuracy:.4f}[/]  (error rate {1 - result.accuracy:.2%}, "
                  f"balanced accuracy {result.balanced_accuracy:.4f}, loss {result.loss:.4f}, "
                  f"{sum(result.support)} images)")
    # A class with no images that nothing was called (another dataset's missing classes) has no scores to show.
    predicted = result.confusion.sum(0).tolist()
    run_table("Per class", ["class", "precision", "recall", "f1", "support"],
              [[c, f"{p:.4f}", f"{r:.4f}", f"{f:.4f}", s]
               for c, p, r, f, s, n in zip(classes, result.precision, result.recall, result.f1, result.support,
                                           predicted) if s or n])
    run_table("Confusion matrix (rows: true, columns: predicted)", ["true"] + list(classes),
              [[c] + row for c, row in zip(classes, result.confusion.tolist())])
    run_table("Hardest mistakes", ["index", "true", "predicted", "confidence", "top-3"],
              [[m.index, classes[m.label], classes[m.predicted], f"{m.confidence:.3f}",
                ", ".join(f"{classes[c]}:{p:.2f}" for c, p in m.top3)] for m in result.mistakes[:mistakes]])


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="PNG/JPEG/... pictures of any size, 28x28 .npy arrays, or "
                                                      "folders of them. (A run directory given first is used as "
                                                      "--model-from.)")],
    model_from: Annotated[str, typer.Option("--model-from", help="A pretrained model (see `mnistkit models "
                                                                 "--pretrained`) or a run directory.")] = "mnist",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document for machines.")] = False,
    explain: Annotated[Path | None, typer.Option("--explain", help="Also draw, into this PNG, what the model was given "
                                                                  "for each picture beside why it answered so "
                                                                  "(Integrated Gradients; the first 24 "
                                                                  "pictures).")] = None,
) -> None:
    """Predict the label of each picture, made a 28x28 input the way the model's training images were made.

    Each picture is turned upright and framed as the model's training images frame their subject, measured on them in
    training: MNIST's digits fit a 20x20 box centred by mass; Fashion-MNIST's clothes fill the 28x28, the box centred.

    A photo of 100 pixels a side or more is cleaned first: a desk or frame beside the sheet is cropped away,
    uneven lighting is evened out and the rules of lined paper are erased. Dark ink on light or light on dark.

    A picture unlike the training data is answered "not a digit (score S above T)": its energy score S
    is above the threshold T that refuses 1% of the validation digits (`ood_false_rejection`).
    With no --model-from, the pretrained MNIST model shipped with mnistkit answers: no training needed."""
    from mnistkit.predict import explain_predictions, load, predict_images
    from mnistkit.runs import WEIGHTS_FILE

    if images and (images[0] / WEIGHTS_FILE).is_file():  # the older form: mnistkit predict RUN_DIR IMAGE...
        model_from, images = str(images[0]), images[1:]
    if not images:
        raise typer.BadParameter("give at least one picture")
    model = load(model_from)
    results = predict_images(model, images)
    figure = explain_predictions(model, results, explain) if explain else None
    if as_json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        for r in results:
            if r.error:
                sys.stdout.flush()  # keep the order of lines when stdout and stderr share a pipe
                err_console.print(f"[red]error:[/] {r.error}", highlight=False, soft_wrap=True)
            else:
                top = "  ".join(f"{c}: {p:.3f}" for c, p in r.top3)
                answer = f"[yellow]{r.rejected}[/] (closest: {r.label})" if r.rejected else f"[bold]{r.label}[/]"
                console.print(f"{r.source}: {answer}   ({top})", highlight=False, soft_wrap=True)
        if figure:
            console.print(f"why: {figure}", highlight=False)
    if any(r.error for r in results):
        raise typer.Exit(1)


@app.command()
def models(
    pretrained: Annotated[bool, typer.Option("--pretrained", help="List the models shipped trained, with their "
                                                                  "accuracy and size.")] = False,
) -> None:
    """List the registered models with parameters and multiply-accumulates per image."""
    if pretrained:
        from mnistkit.pretrained import available, summary

        pct = lambda v: f"{100 * v:.2f}%" if v is not None else "not measured"  # noqa: E731
        rows = [[s["name"], s["model"], s["dataset"], pct(s["val_accuracy"]), pct(s["test_accuracy"]),
                 f"{s['bytes'] / 1024:.0f} KB", s["description"]] for s in map(summary, (p.name for p in available()))]
        run_table("Pretrained models (use with --model-from NAME, or mnistkit.load(NAME))",
                  ["name", "model", "dataset", "val acc", "test acc", "weights", "what"], rows)
        return
    from mnistkit.models import count_macs, count_parameters, create_model, list_models

    rows = []
    for entry in list_models():
        m = create_model(entry.name)
        rows.append([entry.name, entry.family, f"{count_parameters(m):,}", f"{count_macs(m):,}", entry.description])
    run_table("Models", ["name", "family", "parameters", "MACs/image", "description"], rows)


@app.command()
def summary(name: Annotated[str, typer.Argument(help="Model name (see `mnistkit models`).")]) -> None:
    """Print a model's layers with output shapes, parameters and multiply-accumulates."""
    from mnistkit.models import create_model, summarize

    rows = summarize(create_model(name))
    run_table(f"{name}: input 1x28x28", ["layer", "type", "output shape", "parameters", "MACs"],
              [[r.name, r.kind, "x".join(map(str, r.output_shape)), f"{r.parameters:,}", f"{r.macs:,}"]
               for r in rows])
    console.print(f"total: {sum(r.parameters for r in rows):,} parameters, {sum(r.macs for r in rows):,} MACs/image")


@app.command()
def datasets() -> None:
    """List the datasets, their classes, their options and where their files are expected.

    An option is set with `--set dataset_options.NAME=VALUE` for train, tune and compare, and with `--option
    NAME=VALUE` for show and evaluate --dataset."""
    from mnistkit.data.datasets import default_data_dir, list_datasets

    run_table("Datasets", ["name", "classes", "description", "options", "files", "expected in (or --data-dir)"],
              [[s.name, len(s.classes) or "from data", s.description, ", ".join(s.option_names()) or "-",
                ", ".join(s.files) or "ROOT/<class>/*.png",
                "(bundled)" if s.name == "mnist" else str(default_data_dir(s.name))] for s in list_datasets()])


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `mnistkit train`.")],
    sample: Annotated[int, typer.Option(help="Test images in the PCA/t-SNE embeddings.")] = EMBEDDING_SAMPLE,
) -> None:
    """Draw every figure of a run (curves, predictions, confusion, mistakes, filters, feature maps,
    embeddings) into DIR/figures and gather them in one self-contained DIR/report.html."""
    from mnistkit.report import write_report

    write_report(run_dir, sample=sample)


@app.command()
def show(
    dataset: Annotated[str, typer.Option(help="Dataset name (see `mnistkit datasets`).")] = "mnist",
    n: Annotated[int, typer.Option(help="How many images.")] = 20,
    split: Annotated[str, typer.Option(help="train or test.")] = "train",
    data_dir: Annotated[Path | None, typer.Option(help="Folder holding the dataset's files.")] = None,
    out: Annotated[Path | None, typer.Option(help="PNG to write (default: samples-DATASET.png).")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", help=OPTION_HELP)] = None,
) -> None:
    """Save a grid of sample images with their labels as a PNG."""
    from mnistkit.report import show_samples

    console.print(f"wrote {show_samples(dataset, n, out, data_dir, split, dataset_options(option))}")


@app.command()
def ensemble(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories trained on the same dataset.")],
    tta: Annotated[str, typer.Option(help="Test-time augmentation (average over 1-pixel shifts): auto (on only if "
                                          "it raises validation accuracy), on or off.")] = "auto",
    split: Annotated[str, typer.Option(help="test or val.")] = "test",
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON here.")] = None,
    select: Annotated[bool, typer.Option(help="Choose the members on validation (greedy forward selection: fewest "
                                              "errors, then log-loss) instead of averaging every run given.")] = False,
    budget_minutes: Annotated[float | None, typer.Option(help="With --select: the most minutes of training "
                                                              "(summed over members) the ensemble may cost.")] = None,
) -> None:
    """Average the predictions of several runs (with TTA if validation says so) and score them."""
    from mnistkit.ensemble import evaluate_ensemble, select_members
    from mnistkit.errors import MnistkitError
    from mnistkit.fileio import atomic_write_json

    choices = {"auto": None, "on": True, "off": False}
    if tta not in choices:
        raise MnistkitError(f"--tta must be auto, on or off, found '{tta}'")
    if budget_minutes is not None and not select:
        raise MnistkitError("--budget-minutes needs --select")
    if budget_minutes is not None and budget_minutes <= 0:
        raise MnistkitError(f"--budget-minutes must be positive, found {budget_minutes}")
    picked = None
    if select:
        given = len(run_dirs)
        picked = select_members(run_dirs, 60 * budget_minutes if budget_minutes is not None else float("inf"))
        minutes = [sum(picked.train_seconds[:k]) / 60 for k in range(1, len(picked.run_dirs) + 1)]
        run_table(f"Greedy selection on {picked.val_images:,} validation images",
                  ["added", "run", "training min (sum)", "val errors of the average", "kept"],
                  [[k + 1, d, f"{m:.1f}", e, "yes" if k < picked.keep else ""]
                   for k, (d, m, e) in enumerate(zip(picked.run_dirs, minutes, picked.val_errors))])
        run_dirs = picked.chosen
        console.print(f"chosen on validation: {len(run_dirs)} of {given} runs")
    found = evaluate_ensemble(run_dirs, tta=choices[tta], split=split)
    how = "chosen on validation" if found.tta_chosen_on_validation else "as asked"
    console.print(f"validation accuracy: {found.val_accuracy['plain']:.4f} plain, {found.val_accuracy['tta']:.4f} "
                  f"with TTA -> TTA {'on' if found.tta else 'off'} ({how})")
    for d, acc in zip(run_dirs, found.member_accuracy):
        console.print(f"{d}: {split} accuracy {acc:.4f}")
    console.print(f"{split} accuracy: {found.split_accuracy['plain']:.4f} plain, {found.split_accuracy['tta']:.4f} with TTA")
    console.print(f"ensemble of {len(run_dirs)}{' with TTA' if found.tta else ''}: {split} accuracy "
                  f"[bold]{found.result.accuracy:.4f}[/]")
    if out:
        selection = {"selection": picked.to_dict()} if picked else {}
        atomic_write_json(out, {"runs": [str(d) for d in run_dirs], "split": split, **selection, **found.to_dict()})


@app.command()
def compare(
    models: Annotated[str, typer.Option(help="Comma-separated model names.")] = ",".join(COMPARE_MODELS),
    epochs: Annotated[int | None, typer.Option(help="Same number of epochs for every model.")] = None,
    budget_seconds: Annotated[float, typer.Option(help="Or: the same seconds of training per run (default).")] = 45.0,
    seeds: Annotated[int, typer.Option(help="Runs per model, for the spread.")] = 3,
    dataset: Annotated[str, typer.Option(help="Dataset name.")] = "mnist",
    data_dir: Annotated[Path | None, typer.Option(help="Folder holding the dataset's files.")] = None,
    out: Annotated[Path, typer.Option(help="Where runs, compare.csv, compare.md and plots go.")] = Path("runs/compare"),
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train several architectures with their presets under one budget and seeds; one table, three plots."""
    from mnistkit.compare import CompareConfig
    from mnistkit.compare import compare as run_compare

    cfg = CompareConfig(models=[m.strip() for m in models.split(",") if m.strip()], epochs=epochs,
                        budget_seconds=budget_seconds, seeds=seeds, dataset=dataset,
                        data_dir=str(data_dir) if data_dir else None, out=str(out), progress=progress)
    run_compare(cfg)
    console.print((out / "compare.md").read_text(), highlight=False)
    console.print(f"wrote {out / 'compare.csv'}, {out / 'compare.md'} and plots in {out}")


@app.command()
def download(
    name: Annotated[str, typer.Argument(help="mnist, fashion-mnist, kmnist, k49 or quickdraw.")],
    data_dir: Annotated[Path | None, typer.Option(help="Where to put the files (default: the dataset's folder).")] = None,
    classes: Annotated[str | None, typer.Option(help="quickdraw: comma-separated classes.")] = None,
) -> None:
    """Fetch a dataset's files with checksums (needs internet; says which files to put where if offline)."""
    from mnistkit.data.datasets import default_data_dir
    from mnistkit.data.download import download as fetch_dataset

    directory = data_dir or default_data_dir(name)
    chosen = [c.strip() for c in classes.split(",")] if classes else None
    written = fetch_dataset(name, directory, classes=chosen)
    console.print(f"{len(written)} file(s) written to {directory}")


@app.command()
def serve(
    run_dir: Annotated[Path | None, typer.Argument(help="A run directory (default: --model-from).")] = None,
    model_from: Annotated[str, typer.Option("--model-from", help="A pretrained model or a run directory.")] = "mnist",
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    backend: Annotated[str, typer.Option(help="auto (time both at start-up, keep the faster), torch, or onnx "
                                              "(exports DIR/model.onnx if missing).")] = "auto",
    max_bytes: Annotated[int, typer.Option(help="Largest request body in bytes (413 above).")] = 2 * 1024 * 1024,
    max_pixels: Annotated[int, typer.Option(help="Largest picture, width x height, read from its header before "
                                                 "decoding (413 above).")] = 40_000_000,
    decode_workers: Annotated[int, typer.Option(help="Pictures decoded at once, in each process.")] = 2,
    max_pending: Annotated[int, typer.Option(help="Requests in progress at once, in each process; more get 503 + "
                                                  "Retry-After.")] = 256,
    timeout: Annotated[float, typer.Option(help="Seconds a request may take (503 after).")] = 10.0,
    workers: Annotated[int | None, typer.Option(help="Server processes, each with its own model and the limits "
                                                     "above (default: 2, or 1 on a one-core machine).")] = None,
) -> None:
    """Serve a draw-a-digit page at / and a prediction API at /api/predict, with bounded memory and time."""
    from mnistkit.serve.app import ServeLimits
    from mnistkit.serve.app import serve as run_server

    limits = ServeLimits(max_bytes=max_bytes, max_pixels=max_pixels, decode_workers=decode_workers,
                         max_pending=max_pending, timeout_seconds=timeout)
    console.print(f"open http://{host}:{port}/ to draw a digit; API: POST /api/predict, GET /api/model, GET /healthz")
    run_server(str(run_dir) if run_dir else model_from, host=host, port=port, backend=backend, limits=limits,
               workers=workers)


@app.command()
def export(
    run_dir: Annotated[str, typer.Argument(help="A run directory written by `mnistkit train`, or a pretrained "
                                                "model's name (see `mnistkit models --pretrained`).")],
    format: Annotated[str, typer.Option("--format", help="onnx, torchscript, or web (a static site that runs the "
                                                         "model in the browser).")] = "onnx",
    out: Annotated[Path | None, typer.Option(help="Output file, or folder for web (default: DIR/model.onnx, "
                                                  "DIR/model.torchscript.pt or DIR/web/; for a pretrained model, "
                                                  "NAME-model.onnx ... in the current directory).")] = None,
    ort_dir: Annotated[Path | None, typer.Option("--ort-dir", help="web: copy onnxruntime-web from this local "
                                                                   "'dist' folder (works offline) instead of "
                                                                   "loading it from its published URL.")] = None,
) -> None:
    """Export the model (ONNX is checked against PyTorch in onnxruntime on 1,000 test images).

    --format web writes index.html, static/, model.onnx and model.json: the drawing page of `serve`,
    with no server. Try it with `python -m http.server -d DIR`; publish DIR on any static host."""
    from mnistkit.export import export as run_export

    info = run_export(run_dir, format, out, ort_dir=ort_dir)
    extra = (f" (max |onnxruntime - PyTorch| on {info['checked_images']} {info['checked_on']}: "
             f"{info['max_abs_difference']:.2e})" if "max_abs_difference" in info else "")
    console.print(f"wrote {info['path']}{extra}")
