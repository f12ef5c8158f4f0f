"""Every figure mnistkit draws. Each function takes plain data, writes one PNG and returns its path.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``), never pyplot, so
nothing here needs a display and importing mnistkit leaves the user's matplotlib backend alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter
from matplotlib.transforms import Bbox

WRONG = "#c62828"
RIGHT = "#1b5e20"
DPI = 110
# Per-class figures grow with the classes up to these bounds, so a 345-class QuickDraw run still draws in seconds.
ANNOTATED_CLASSES = 30  # above this, a confusion matrix's per-cell numbers are too small to read
NAMED_TICKS = 60  # the most class names an axis shows; beyond it, every k-th
LEGEND_CLASSES = 75  # above this, a legend of class colours would be longer than the figure is tall


def subplots(rows: int = 1, cols: int = 1, figsize: tuple[float, float] = (6, 4), squeeze: bool = True, **grid):
    """A new figure and its axes, like ``pyplot.subplots`` but owned by no global state."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, squeeze=squeeze, **grid)


def save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def image_axes(rows: int, cols: int, figsize: tuple[float, float], **grid):
    """A figure of ``rows`` x ``cols`` axes for pictures: no axis lines, ticks or labels."""
    fig, axes = subplots(rows, cols, figsize=figsize, squeeze=False, **grid)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


def figure_title(fig: Figure, title: str) -> None:
    """``title`` over the whole figure, 0.8 in above its panels: matplotlib leaves 12% of the height there, which
    crowds a short figure's panel titles and opens a wide gap over a tall one."""
    fig.subplots_adjust(top=1 - 0.8 / fig.get_figheight())
    fig.suptitle(title)


def count_label(value: float) -> str:
    """A count as people write it on an axis: 500, 20k, 3.4M."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


class PlainLogFormatter(LogFormatter):
    """Log-axis tick labels where matplotlib would put them, written 0.6, 3 or 20k rather than 6x10^-1, 2x10^4."""

    def __init__(self, label: Callable[[float], str], **kwargs):
        super().__init__(**kwargs)
        self.label = label

    def __call__(self, x, pos=None):
        return self.label(x) if super().__call__(x, pos) else ""


def plain_log_ticks(axis, label: Callable[[float], str] = lambda value: f"{value:g}") -> None:
    """``axis`` (``ax.xaxis`` or ``ax.yaxis``) of log scale, its tick labels written by ``label``."""
    axis.set_major_formatter(PlainLogFormatter(label))
    axis.set_minor_formatter(PlainLogFormatter(label, labelOnlyBase=False))


def class_ticks(classes: Sequence[str]) -> tuple[list[int], list[str]]:
    """Positions and names of the class ticks: every class up to NAMED_TICKS, else every k-th."""
    positions = list(range(0, len(classes), max(1, -(-len(classes) // NAMED_TICKS))))
    return positions, [classes[i] for i in positions]


def text_inches(lines: Sequence[str], points: float) -> float:
    """The width of the widest of ``lines`` in inches, set at ``points`` points in matplotlib's default font."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    measure, font = TextToPath(), FontProperties(size=points)
    return max((measure.get_text_width_height_descent(line, font, ismath=False)[0] for line in lines), default=0) / 72


class PictureGrid:
    """Pictures in rows of up to ``max_cols`` cells of ``cell`` inches (width, height), each under its caption,
    all in one axes whose data units are inches from the top left. An axes per picture, matplotlib's usual grid,
    cost more to build and draw than the pictures themselves: it made these figures most of a report's drawing time."""

    MARGIN = 0.05  # inches around a picture inside its cell
    CAPTION_PAD = 4  # points between a picture and its caption

    def __init__(self, captions: Sequence[str], max_cols: int, cell: tuple[float, float], caption_points: float = 10):
        """One cell per caption, in the order of the pictures ``show`` puts in them. The cells hold the captions: as
        many lines as the longest has, and at least as wide as its widest line, since class names run from "7" to
        "The Great Wall of China" (QuickDraw) and a long one lay across its neighbours' captions."""
        self.captions = list(captions)
        self.cols = max(1, min(len(self.captions), max_cols))
        lines = [caption.split("\n") for caption in captions]
        widest = text_inches([line for caption in lines for line in caption], caption_points)
        self.width, self.height = max(cell[0], widest + 2 * self.MARGIN), cell[1]
        self.caption_points = caption_points
        rows = max(1, -(-len(self.captions) // self.cols))
        caption_lines = max(map(len, lines), default=1)
        caption_height = (self.CAPTION_PAD + caption_lines * caption_points * 1.2) / 72  # line spacing 1.2
        self.side = min(self.width, self.height - caption_height) - 2 * self.MARGIN  # a picture's longer side
        self.fig = Figure(figsize=(self.cols * self.width, rows * self.height))
        self.ax = self.fig.add_axes((0, 0, 1, 1))
        self.ax.set_axis_off()
        self.ax.set_autoscale_on(False)  # imshow would set the limits to its own picture
        self.ax.set_xlim(0, self.cols * self.width)
        self.ax.set_ylim(rows * self.height, 0)

    def show(self, index: int, image: np.ndarray, color: str | None = None, **imshow) -> None:
        """Picture ``index`` (row by row) in its cell, bottom-centred, its caption (``captions[index]``) over it."""
        caption = self.captions[index]
        row, col = divmod(index, self.cols)
        height, width = image.shape[:2]
        scale = self.side / max(height, width)
        left = col * self.width + (self.width - width * scale) / 2
        bottom = (row + 1) * self.height - self.MARGIN
        top = bottom - height * scale
        self.ax.imshow(image, extent=(left, left + width * scale, bottom, top), aspect="auto", **imshow)
        if caption:
            self.ax.annotate(caption, (left + width * scale / 2, top), xytext=(0, self.CAPTION_PAD),
                             textcoords="offset points", ha="center", va="bottom", fontsize=self.caption_points,
                             color=color)

    def save(self, title: str, path) -> Path:
        """Write the PNG with ``title`` over the first row (whose captions the cells hold); the PNG grows to hold it."""
        self.fig.suptitle(title, y=1 + 0.12 / self.fig.get_figheight(), va="bottom")
        return save(self.fig, path)


def sample_grid(images: np.ndarray, labels: Sequence[int], classes: Sequence[str], path, title: str) -> Path:
    """A grid of images with their labels."""
    captions = [classes[label] for label in labels]
    grid = PictureGrid(captions, 10, cell=(0.95, 1.1))
    for i, img in enumerate(images):
        grid.show(i, img, cmap="gray_r", vmin=0, vmax=255 if img.max() > 1 else 1)
    return grid.save(title, path)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window or window < 2:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def training_curves(history: list[dict], steps: dict[str, np.ndarray] | None, test_accuracy: float | None,
                    path, title: str) -> Path:
    """Loss, accuracy and error rate for training (per step, smoothed, and per epoch) and validation."""
    fig, axes = subplots(1, 3, figsize=(16, 4.4))
    steps_per_epoch = history[0]["step"] if history else 1
    epochs = np.array([h["epoch"] for h in history], dtype=float)
    window = max(1, steps_per_epoch // 10)
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        if steps is not None and len(steps.get(key, [])):
            per_step = smooth(np.asarray(steps[key], dtype=float), window)
            x = (np.arange(len(per_step)) + window) / steps_per_epoch
            ax.plot(x, per_step, color="#90caf9", lw=1, label=f"train {label} (per step, smoothed)")
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", color="#1565c0", label=f"train {label} (epoch)")
        ax.plot(epochs, [h[f"val_{key}"] for h in history], "s-", color="#ef6c00", label=f"validation {label}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    plain_log_ticks(axes[0].yaxis)
    ax = axes[2]
    ax.plot(epochs, [100 * (1 - h["train_accuracy"]) for h in history], "o-", color="#1565c0", label="train")
    ax.plot(epochs, [100 * (1 - h["val_accuracy"]) for h in history], "s-", color="#ef6c00", label="validation")
    if test_accuracy is not None:
        for a, value, shown in ((axes[1], test_accuracy, f"{test_accuracy:.2%}"),
                                (ax, 100 * (1 - test_accuracy), f"{100 * (1 - test_accuracy):.2f}%")):
            a.axhline(value, color=WRONG, ls="--", lw=1, label=f"test (best-val weights): {shown}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("error rate (%)")
    plain_log_ticks(ax.yaxis)
    ax.grid(alpha=0.3, which="both")
    for a in axes:
        a.legend(fontsize=8)
    axes[0].set_title("loss")
    axes[1].set_title("accuracy")
    axes[2].set_title("error rate")
    figure_title(fig, title)
    return save(fig, path)


def prediction_grid(images, labels, probabilities: np.ndarray, classes, path, title: str) -> Path:
    """Test images with predicted (and true) label and the prediction's probability; wrong ones in red."""
    predicted = [int(np.argmax(probs)) for probs in probabilities]
    captions = [f"{classes[pred]} ({probs[pred]:.0%})" + ("" if pred == label else f"\ntrue {classes[label]}")
                for pred, label, probs in zip(predicted, labels, probabilities)]
    grid = PictureGrid(captions, 8, cell=(1.1, 1.35), caption_points=9)
    for i, (img, label, pred) in enumerate(zip(images, labels, predicted)):
        grid.show(i, img, color=RIGHT if pred == label else WRONG, cmap="gray_r")
    return grid.save(title, path)


def percent_label(value: float) -> str:
    """A percentage to one decimal, and "<0.1" for a rare confusion that would otherwise read as none."""
    return "<0.1" if 0 < value < 0.05 else f"{value:.1f}"


def write_cell_values(ax, data: np.ndarray, shown: np.ndarray, label: Callable[[float], str]) -> None:
    """Each non-zero cell's value on a heat map, white where the cell is dark."""
    for i, j in zip(*np.nonzero(data)):
        dark = shown[i, j] > shown.max() * 0.6
        ax.text(j, i, label(data[i, j]), ha="center", va="center", fontsize=7, color="white" if dark else "black")


def confusion(matrix: np.ndarray, classes, path, title: str) -> Path:
    """Counts and row-normalised rates side by side."""
    matrix = np.asarray(matrix)
    rates = 100 * matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    n = len(classes)
    side = min(max(5.5, n * 0.6), 20.0)
    fig, axes = subplots(1, 2, figsize=(max(12.0, 2 * side), side))
    positions, names = class_ticks(classes)
    for ax, data, label, name in ((axes[0], matrix, str, "counts"),
                                  (axes[1], rates, percent_label, "row-normalised (recall, %)")):
        shown = np.log1p(data) if data is matrix else data
        ax.imshow(shown, cmap="Blues")
        if n <= ANNOTATED_CLASSES:
            write_cell_values(ax, data, shown, label)
        ax.set_xticks(positions, names, rotation=45 if max(map(len, names)) > 2 else 0, ha="right")
        ax.set_yticks(positions, names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
    figure_title(fig, title)
    return save(fig, path)


def per_class_bars(precision, recall, f1, classes, path, title: str) -> Path:
    x = np.arange(len(classes))
    fig, ax = subplots(figsize=(min(max(8.0, len(classes) * 0.8), 40.0), 4))
    for offset, values, name in ((-0.27, precision, "precision"), (0, recall, "recall"), (0.27, f1, "F1")):
        ax.bar(x + offset, values, width=0.27, label=name)
    low = min(min(precision), min(recall), min(f1))
    ax.set_ylim(max(0.0, low - (1 - low) * 0.5 - 0.001), 1.0)
    positions, names = class_ticks(classes)
    ax.set_xticks(positions, names, rotation=45 if max(map(len, names)) > 2 else 0, ha="right")
    ax.set_xlabel("class")
    ax.set_ylabel("score")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: every corner of the axes holds bars
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title)
    return save(fig, path)


def hardest_mistakes(images, labels, top3: list[list[tuple[int, float]]], classes, path, title: str) -> Path:
    """The most confidently wrong images, each with its top-3 probabilities."""
    captions = ["\n".join([f"true {classes[label]}"] + [f"{classes[c]}: {p:.0%}" for c, p in top])
                for label, top in zip(labels, top3)]
    grid = PictureGrid(captions, 6, cell=(1.5, 1.75), caption_points=8)
    for i, img in enumerate(images):
        grid.show(i, img, color=WRONG, cmap="gray_r")
    return grid.save(title, path)


def attributions(images: np.ndarray, maps: np.ndarray, captions: Sequence[str], explained: Sequence[str], path,
                 title: str, answer_color: str = WRONG) -> Path:
    """Each image (titled by its caption) beside its attribution map (titled "why <class explained>"): red where the
    ink pushed towards that class, blue where it pushed away (one colour scale per map, centred on zero)."""
    whys = [f"why {answer}" for answer in explained]
    pairs = [text for caption, why in zip(captions, whys) for text in (caption, why)]  # picture, then its map
    grid = PictureGrid(pairs, 12, cell=(1.05, 1.2), caption_points=8)
    for i, (img, amap) in enumerate(zip(images, maps)):
        grid.show(2 * i, img, cmap="gray_r")
        limit = float(np.abs(amap).max()) or 1.0
        grid.show(2 * i + 1, amap, color=answer_color, cmap="bwr", vmin=-limit, vmax=limit)
    return grid.save(title, path)


def filters(weights: np.ndarray, path, title: str) -> Path:
    """First-layer convolution kernels (out_channels, in_channels, k, k), one tile each."""
    kernels = weights[:, 0]
    captions = [str(i) for i in range(len(kernels))]
    grid = PictureGrid(captions, 8, cell=(0.9, 1.0), caption_points=7)
    limit = np.abs(kernels).max() or 1.0
    for i, k in enumerate(kernels):
        grid.show(i, k, cmap="RdBu_r", vmin=-limit, vmax=limit)
    return grid.save(title + " (red: positive, blue: negative)", path)


def channel_strip(activation: np.ndarray, channels: int) -> np.ndarray:
    """The first ``channels`` maps of ``activation`` (C, H, W) side by side, each scaled to [0, 1] on its own,
    one NaN column (drawn blank) between them."""
    tiles = []
    for a in activation[:channels].astype(np.float64):
        span = a.max() - a.min()
        tiles += [(a - a.min()) / span if span > 0 else np.zeros_like(a), np.full((a.shape[0], 1), np.nan)]
    return np.hstack(tiles[:-1])


def feature_maps(image: np.ndarray, maps: list[tuple[str, np.ndarray]], path, title: str, per_layer: int = 12) -> Path:
    """The input and up to ``per_layer`` channels of every conv layer's output, one row per layer. Each row's
    channels are one strip image: one axes a channel made this the slowest figure of a report."""
    fig, axes = image_axes(len(maps), 2, figsize=((per_layer + 1) * 0.95, len(maps) * 1.15),
                           width_ratios=[1, per_layer], gridspec_kw={"wspace": 0.02})
    for row, (name, activation) in enumerate(maps):
        axes[row, 0].imshow(image, cmap="gray_r")
        # The layer's name left of its row: a title over the small input image ran into the row above.
        axes[row, 0].text(-0.08, 0.5, f"{name}\n{activation.shape[1]}x{activation.shape[2]}", fontsize=8,
                          ha="right", va="center", transform=axes[row, 0].transAxes)
        axes[row, 0].set_anchor("E")
        strip = channel_strip(activation, per_layer)
        axes[row, 1].imshow(strip, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
        axes[row, 1].set_anchor("W")
    fig.suptitle(title)
    return save(fig, path)


def class_colors(n: int) -> list[tuple[float, float, float, float]]:
    """One distinct colour per class: matplotlib's qualitative tab10/tab20 while they last, then evenly spaced
    hues, so that a 26- or 47-class dataset never shows two classes in one colour."""
    if n <= 20:
        cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
        return [cmap(i) for i in range(n)]
    return [matplotlib.colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, n)]


def embeddings(panels: list[tuple[str, np.ndarray]], labels: np.ndarray, classes, path, title: str) -> Path:
    """2-D projections coloured by class, one panel per (method, features) pair."""
    cols = 2
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = subplots(rows, cols, figsize=(13, 6 * rows), squeeze=False)
    colors = class_colors(len(classes))
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, points) in zip(axes.flat, panels):
        ax.axis("on")
        for c in range(len(classes)):
            sel = labels == c
            ax.scatter(points[sel, 0], points[sel, 1], s=3, color=colors[c], label=classes[c], alpha=0.7)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("component 1")
        ax.set_ylabel("component 2")
    if len(classes) <= 20:
        axes.flat[0].legend(markerscale=4, fontsize=8, loc="best", title="class")
    elif len(classes) <= LEGEND_CLASSES:  # a legend this long would hide a panel's points: beside the top row
        axes[0, -1].legend(markerscale=4, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), title="class",
                           ncols=int(np.ceil(len(classes) / 25)))
    figure_title(fig, title)
    return save(fig, path)


def compare_scatter(rows: list[dict], x_key: str, x_label: str, path, title: str) -> Path:
    """Test accuracy (mean with spread over seeds) against a cost, one point per model."""
    fig, ax = subplots(figsize=(8, 5))
    bars = [ax.errorbar(r[x_key], 100 * r["test_accuracy_mean"], yerr=100 * r["test_accuracy_std"], fmt="o", capsize=4)
            for r in rows]
    values = [r[x_key] for r in rows if r[x_key] > 0]
    if values and max(values) / min(values) > 10:
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis, count_label)
    ax.set_xlabel(x_label)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title)
    label_points(ax, [(r[x_key], 100 * r["test_accuracy_mean"]) for r in rows], [r["model"] for r in rows], bars)
    return save(fig, path)


# Where a point's name may go, in points from the point, tried in this order: beside it first, then further out.
LABEL_PLACES = tuple((dx, dy, "left" if dx > 0 else "right", "bottom" if dy > 0 else "top")
                     for dy in (4, -4, 14, -14) for dx in (6, -6))


def label_points(ax, points: Sequence[tuple[float, float]], names: Sequence[str], bars: Sequence = ()) -> list:
    """Name each point beside it, in the first of LABEL_PLACES where the name stays inside the axes and covers no
    other name and none of ``bars`` (``errorbar`` containers), so that models of about the same size and accuracy
    stay readable. Call it once the axes' scales and limits are final. Returns the texts."""
    fig = ax.figure
    FigureCanvasAgg(fig)  # the names' sizes need a renderer; saving later uses one of the same kind
    renderer = fig.canvas.get_renderer()
    ax.autoscale_view()
    frame = ax.get_window_extent(renderer)
    taken = [box for bar in bars for box in errorbar_boxes(bar, renderer)]

    def name_at(point, name, place):
        dx, dy, ha, va = place
        return ax.annotate(name, point, textcoords="offset points", xytext=(dx, dy), ha=ha, va=va)

    def free(box) -> bool:
        return (frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
                and not any(box.overlaps(other) for other in taken))

    texts = []
    for point, name in zip(points, names):
        for place in LABEL_PLACES:
            text = name_at(point, name, place)
            if free(text.get_window_extent(renderer)):
                break
            text.remove()
        else:  # nowhere free: the first place, as before this search
            text = name_at(point, name, LABEL_PLACES[0])
        taken.append(text.get_window_extent(renderer))
        texts.append(text)
    return texts


def errorbar_boxes(bar, renderer) -> list[Bbox]:
    """Where an ``errorbar``'s marker, caps and bar lie on the canvas (the bar's own extent is empty until drawn)."""
    marker, caps, lines = bar.lines
    boxes = [line.get_window_extent(renderer) for line in (marker, *caps) if line is not None]
    return boxes + [Bbox(collection.get_transform().transform(segment))
                    for collection in lines for segment in collection.get_segments()]


def curves_overlay(histories: dict[str, list[dict]], path, title: str) -> Path:
    """Validation accuracy of several models against training seconds, on one axis."""
    fig, ax = subplots(figsize=(8, 5))
    for name, history in histories.items():
        ax.plot([h["train_seconds"] for h in history], [100 * h["val_accuracy"] for h in history], "o-", ms=3, label=name)
    ax.set_xlabel("training seconds")
    ax.set_ylabel("validation accuracy (%)")
    low = min((100 * h["val_accuracy"] for hs in histories.values() for h in hs), default=90)
    ax.set_ylim(max(low, 90) - 0.5, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return save(fig, path)
