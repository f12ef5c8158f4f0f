"""`mnistkit report DIR`: every figure of a trained run, gathered in one self-contained report.html."""

from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnistkit import plots
from mnistkit.config import EMBEDDING_SAMPLE
from mnistkit.data.datasets import load_dataset
from mnistkit.errors import MnistkitError
from mnistkit.explain import METHOD, integrated_gradients
from mnistkit.fileio import atomic_write_json, atomic_write_text
from mnistkit.metrics import evaluate_logits
from mnistkit.models import infer, tta_set
from mnistkit.runs import EVAL_FILE, FIGURES_DIR, REPORT_FILE, load_run, read_history, read_steps


@dataclass
class Figure:
    key: str
    title: str
    path: Path
    caption: str


def single_pass(model: nn.Module):
    """Hooks below must see one forward pass per image: switch off the extra passes of TTA."""
    return tta_set(model, tta_hflip=False, tta_shift=False)


@torch.inference_mode()
def penultimate_features(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """The input of the model's last linear layer: what the classifier head sees."""
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0].flatten(1).cpu()))
    try:
        with single_pass(model):
            infer(model, images, batch_size)
    finally:
        hook.remove()
    return torch.cat(captured).numpy()


@torch.inference_mode()
def conv_activations(model: nn.Module, image: torch.Tensor) -> list[tuple[str, np.ndarray]]:
    maps: list[tuple[str, np.ndarray]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: maps.append((name, out[0].cpu().numpy())))
             for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    try:
        with single_pass(model):
            infer(model, image[None])
    finally:
        for h in hooks:
            h.remove()
    return maps


def first_layer_weights(model: nn.Module) -> tuple[np.ndarray, str] | None:
    """First conv kernels, or for a fully connected model the first layer's weights as 28x28 images."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.weight.detach().cpu().numpy(), f"first-layer filters ({m.out_channels} kernels)"
        if isinstance(m, nn.Linear) and m.in_features == 28 * 28:
            return m.weight.detach()[:32].cpu().numpy().reshape(-1, 1, 28, 28), "first-layer weights (32 units)"
    return None


def embedding_panels(pixels: np.ndarray, features: np.ndarray, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    panels = []
    for name, data in (("raw pixels", pixels), ("penultimate-layer features", features)):
        pca = PCA(n_components=min(50, data.shape[1], len(data)), random_state=seed).fit_transform(data)
        panels.append((f"PCA of {name}", pca[:, :2]))
        tsne = TSNE(n_components=2, init="pca", perplexity=30, max_iter=500, random_state=seed).fit_transform(pca)
        panels.append((f"t-SNE of {name}", tsne))
    return panels


def make_figures(run_dir: Path, sample: int = EMBEDDING_SAMPLE, log=print,
                 test_logits: torch.Tensor | None = None) -> tuple[list[Figure], dict]:
    run = load_run(run_dir)
    model, cfg, metrics = run.model, run.config, run.metrics
    splits = run.splits()
    classes = splits.classes
    out = run.path(FIGURES_DIR)
    figures: list[Figure] = []

    def add(key, title, path, caption):
        figures.append(Figure(key, title, Path(path), caption))
        log(f"  {title}: {Path(path).name}")

    name = f"{cfg.model} on {cfg.dataset}"
    n = min(20, len(splits.train_images))
    add("samples", "Training samples", plots.sample_grid(
        splits.train_images[:n].numpy(), splits.train_labels[:n].tolist(), classes, out / "samples.png",
        f"{cfg.dataset}: {n} training images and their labels"), "The first training images with their labels.")

    history = read_history(run_dir)
    if history:
        add("curves", "Training curves", plots.training_curves(
            history, read_steps(run_dir), metrics.get("test_accuracy"), out / "curves.png", f"{name}: training"),
            "Training loss/accuracy per step (smoothed) and per epoch, validation per epoch; the dashed line "
            "is the test result of the best-validation weights.")

    expected = (len(splits.test_images), len(classes))
    if test_logits is None:
        test_logits = infer(model, splits.test_images, cfg.eval_batch_size)
    elif tuple(test_logits.shape) != expected:
        raise MnistkitError(f"{run_dir}: test_logits of shape {tuple(test_logits.shape)} for {expected[0]} test "
                            f"images and {expected[1]} classes")
    result = evaluate_logits(test_logits, splits.test_labels, classes)
    atomic_write_json(run.path(EVAL_FILE), {"split": "test", **result.to_dict()})
    probs = result.probabilities.numpy()
    k = min(32, len(splits.test_images))
    add("predictions", "Predictions", plots.prediction_grid(
        splits.test_images[:k].numpy(), splits.test_labels[:k].tolist(), probs[:k], classes,
        out / "predictions.png", f"{name}: test predictions (accuracy {result.accuracy:.2%})"),
        "The first test images: predicted label and its probability; wrong ones in red with the true label.")
    add("confusion", "Confusion matrix", plots.confusion(
        result.confusion.numpy(), classes, out / "confusion.png", f"{name}: confusion matrix on the test set"),
        "Rows are true classes, columns predictions.")
    add("per_class", "Per-class precision and recall", plots.per_class_bars(
        result.precision, result.recall, result.f1, classes, out / "per_class.png",
        f"{name}: per-class precision, recall and F1 (test)"), "Per-class scores on the test set.")
    if result.mistakes:
        idx = [m.index for m in result.mistakes[:18]]
        add("mistakes", "Hardest mistakes", plots.hardest_mistakes(
            splits.test_images[idx].numpy(), [m.label for m in result.mistakes[:18]],
            [m.top3 for m in result.mistakes[:18]], classes, out / "mistakes.png",
            f"{name}: the most confidently wrong test images"), "True label and the model's top-3 probabilities.")
        wrong = [m.predicted for m in result.mistakes[:12]]
        maps = integrated_gradients(model, splits.test_images[idx[:12]], torch.tensor(wrong)).maps.numpy()
        add("mistakes_why", "Why the hardest mistakes", plots.attributions(
            splits.test_images[idx[:12]].numpy(), maps, [f"true {classes[m.label]}" for m in result.mistakes[:12]],
            [classes[w] for w in wrong], out / "mistakes_why.png", f"{name}: what made the model answer wrong ({METHOD})"),
            "Integrated Gradients towards the wrong answer: red pixels pushed the model to it, blue ones away.")

    weights = first_layer_weights(model)
    if weights is not None:
        add("filters", "What the first layer learned", plots.filters(weights[0], out / "filters.png", f"{name}: {weights[1]}"),
            "Each tile is one learned kernel.")
    maps = conv_activations(model, splits.test_images[0])
    if maps:
        add("feature_maps", "Feature maps", plots.feature_maps(
            splits.test_images[0].numpy(), maps, out / "feature_maps.png",
            f"{name}: feature maps of every conv layer for one test image"),
            "Each row is one convolution layer's output (first channels) for the image on the left.")

    m = min(sample, len(splits.test_images))
    started = time.perf_counter()
    pixels = splits.test_images[:m].reshape(m, -1).float().numpy() / 255
    panels = embedding_panels(pixels, penultimate_features(model, splits.test_images[:m]), seed=cfg.seed)
    add("embeddings", "Embeddings", plots.embeddings(
        panels, splits.test_labels[:m].numpy(), classes, out / "embeddings.png",
        f"{name}: {m} test images, raw pixels vs learned features"),
        f"PCA and t-SNE (2-D) of raw pixels and of the features before the last layer "
        f"({time.perf_counter() - started:.0f}s).")
    return figures, {"config": cfg.to_dict(), "metrics": metrics, "eval": result}


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def render_html(title: str, figures: list[Figure], config: dict, metrics: dict, result) -> str:
    esc = html.escape
    metric_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(fmt(v))}</td></tr>"
                          for k, v in metrics.items() if k != "classes")
    config_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(json.dumps(v))}</td></tr>" for k, v in config.items())
    class_rows = "".join(
        f"<tr><td>{esc(c)}</td><td>{p:.4f}</td><td>{r:.4f}</td><td>{f:.4f}</td><td>{s}</td></tr>"
        for c, p, r, f, s in zip(result.classes, result.precision, result.recall, result.f1, result.support))
    sections = "".join(
        f'<section id="{f.key}"><h2>{esc(f.title)}</h2><p>{esc(f.caption)}</p>'
        f'<img src="{png_data_uri(f.path)}" alt="{esc(f.title)}"></section>' for f in figures)
    toc = " · ".join(f'<a href="#{f.key}">{esc(f.title)}</a>' for f in figures)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ddd; padding: 3px 8px; text-align: left; }} th {{ background: #f5f5f5; }}
img {{ max-width: 100%; border: 1px solid #eee; }} section {{ margin-bottom: 2.5em; }}
.big {{ font-size: 2em; font-weight: 600; }} .cols {{ display: flex; gap: 2em; flex-wrap: wrap; }}
</style></head><body>
<h1>{esc(title)}</h1>
<p class="big">test accuracy {result.accuracy:.2%} <small>(error rate {1 - result.accuracy:.2%}, balanced accuracy
{result.balanced_accuracy:.2%})</small></p>
<p>{toc}</p>
<div class="cols"><div><h2>Metrics</h2><table>{metric_rows}</table>
<h2>Per class (test)</h2><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>
{class_rows}</table></div>
<div><h2>Configuration</h2><table>{config_rows}</table></div></div>
{sections}
<footer><small>Written by mnistkit.</small></footer>
</body></html>
"""


def fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_report(run_dir: str | Path, sample: int = EMBEDDING_SAMPLE, log=print,
                 test_logits: torch.Tensor | None = None) -> Path:
    """Draw every figure for a run into DIR/figures and gather them in DIR/report.html. ``test_logits``:
    the saved model's logits on the test split, if the caller has them (`train` returns them)."""
    run_dir = Path(run_dir)
    started = time.perf_counter()
    log(f"Drawing figures for {run_dir}")
    figures, info = make_figures(run_dir, sample=sample, log=log, test_logits=test_logits)
    cfg = info["config"]
    page = render_html(f"mnistkit report: {cfg['model']} on {cfg['dataset']}", figures, cfg, info["metrics"],
                       info["eval"])
    path = run_dir / REPORT_FILE
    atomic_write_text(path, page)
    log(f"Wrote {path} ({len(figures)} figures, {time.perf_counter() - started:.1f}s)")
    return path


def show_samples(dataset: str = "mnist", n: int = 20, out: str | Path | None = None, data_dir=None,
                 split: str = "train", options: dict | None = None) -> Path:
    """A grid of the first ``n`` images of a dataset (its loader given ``options``) with their labels."""
    ds = load_dataset(dataset, data_dir, **(options or {}))
    images, labels = (ds.train_images, ds.train_labels) if split == "train" else (ds.test_images, ds.test_labels)
    n = max(1, min(n, len(images)))
    path = Path(out) if out else Path(f"samples-{dataset}.png")
    return plots.sample_grid(images[:n].numpy(), labels[:n].tolist(), ds.classes, path,
                             f"{dataset}: {n} {split} images and their labels")
