"""`mnistkit compare`: train several architectures the same way and put them in one table and plots.

Each model trains with its own preset (the recipe it is known for) but under the same budget: the
same number of epochs, or the same seconds of training with the lr schedule following the clock.
Several seeds give a spread. Runs land in OUT/MODEL-seedK and are reused if already finished, so an
interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from mnistkit import plots
from mnistkit.config import COMPARE_MODELS, PRESETS, make_config, validation_split_for
from mnistkit.fileio import atomic_write_text
from mnistkit.models import get_model_entry
from mnistkit.runs import METRICS_FILE, load_run, read_history, read_json
from mnistkit.timing import inference_speed
from mnistkit.train import train

COLUMNS = ["model", "parameters", "macs_per_image", "epochs", "train_seconds", "train_images_per_s", "infer_ms_batch1",
           "val_accuracy_mean", "val_accuracy_std", "test_accuracy_mean", "test_accuracy_std", "seeds"]


@dataclass
class CompareConfig:
    models: list[str] = field(default_factory=lambda: list(COMPARE_MODELS))
    epochs: int | None = None  # same epochs for every model (overrides the presets')
    budget_seconds: float | None = 45.0  # or the same seconds of training for every model
    seeds: int = 3
    dataset: str = "mnist"
    data_dir: str | None = None
    out: str = "runs/compare"
    progress: bool = True


def preset_for(model: str) -> str:
    """A model's own recipe if it has one, else mnistkit's default recipe."""
    return model if model in PRESETS else "default"


def run_one(cfg: CompareConfig, model: str, seed: int) -> dict:
    run_dir = Path(cfg.out) / f"{model}-seed{seed}"
    if (run_dir / METRICS_FILE).exists():  # finished earlier: reuse
        metrics = read_json(run_dir / METRICS_FILE)
    else:
        budget = {"budget_seconds": cfg.budget_seconds, "epochs": 1000} if cfg.epochs is None else {"epochs": cfg.epochs}
        config = make_config(preset_for(model), model=model, seed=seed, dataset=cfg.dataset, data_dir=cfg.data_dir,
                             out=str(run_dir), progress=cfg.progress, **budget, **validation_split_for(cfg.dataset))
        metrics = train(config).metrics
    history = read_history(run_dir)
    return {"run_dir": str(run_dir), "history": history, **metrics}


def images_trained(run: dict) -> int:
    """Images a finished run trained on: its optimizer steps times its global batch. Counted from the steps, not
    the epochs, since a time budget can end the first epoch part-way (a large dataset, a short budget)."""
    return run["history"][-1]["step"] * run["global_batch"] if run["history"] else 0


def summarize_model(model: str, runs: list[dict]) -> dict:
    spread = lambda values: statistics.stdev(values) if len(values) > 1 else 0.0  # noqa: E731
    val = [r["val_accuracy"] for r in runs]
    test = [r["test_accuracy"] for r in runs]
    seconds = statistics.mean(r["train_seconds"] for r in runs)
    images = statistics.mean(images_trained(r) for r in runs)
    speed = inference_speed(load_run(runs[0]["run_dir"]).model, "cpu", seconds=1.0)
    return {
        "model": model, "parameters": runs[0]["parameters"], "macs_per_image": runs[0]["macs_per_image"],
        "epochs": statistics.mean(images_trained(r) / r["train_images"] for r in runs), "train_seconds": seconds,
        "train_images_per_s": images / seconds if seconds else 0.0, "infer_ms_batch1": speed["infer_batch1_ms"],
        "val_accuracy_mean": statistics.mean(val), "val_accuracy_std": spread(val),
        "test_accuracy_mean": statistics.mean(test), "test_accuracy_std": spread(test), "seeds": len(runs),
    }


def markdown(rows: list[dict], cfg: CompareConfig) -> str:
    budget = f"{cfg.epochs} epochs each" if cfg.epochs is not None else f"{cfg.budget_seconds:g} s of training each"
    lines = [f"Dataset {cfg.dataset}, {budget}, {cfg.seeds} seed(s); accuracy is mean ± standard deviation over seeds.",
             "", "| model | parameters | MACs/image | epochs | train s | train img/s | infer ms (batch 1) | val acc | test acc |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['parameters']:,} | {r['macs_per_image']:,} | {r['epochs']:.1f} | "
                     f"{r['train_seconds']:.1f} | {r['train_images_per_s']:,.0f} | {r['infer_ms_batch1']:.2f} | "
                     f"{100 * r['val_accuracy_mean']:.2f} ± {100 * r['val_accuracy_std']:.2f} | "
                     f"{100 * r['test_accuracy_mean']:.2f} ± {100 * r['test_accuracy_std']:.2f} |")
    return "\n".join(lines) + "\n"


def compare(cfg: CompareConfig) -> list[dict]:
    """Train every model for every seed, then write compare.csv, compare.md and the plots into cfg.out."""
    for model in cfg.models:
        get_model_entry(model)  # fail on a typo before hours of training
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {model: [run_one(cfg, model, seed) for seed in range(cfg.seeds)] for model in cfg.models}
    rows = [summarize_model(model, model_runs) for model, model_runs in runs.items()]
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "compare.csv", table.getvalue())
    atomic_write_text(out / "compare.md", markdown(rows, cfg))
    title = f"{cfg.dataset}: " + (f"{cfg.epochs} epochs" if cfg.epochs is not None else f"{cfg.budget_seconds:g} s budget")
    plots.compare_scatter(rows, "parameters", "parameters", out / "accuracy_vs_parameters.png", f"{title}, test accuracy vs size")
    if cfg.epochs is None:  # every run trained equally long: compare accuracy against compute per image instead
        plots.compare_scatter(rows, "macs_per_image", "multiply-accumulates per image", out / "accuracy_vs_macs.png",
                              f"{title}, test accuracy vs compute")
    else:
        plots.compare_scatter(rows, "train_seconds", "training seconds", out / "accuracy_vs_seconds.png",
                              f"{title}, test accuracy vs training time")
    plots.curves_overlay({m: r[0]["history"] for m, r in runs.items()}, out / "validation_curves.png",
                         f"{title}: validation accuracy (seed 0)")
    return rows
