"""Pretrained models shipped inside the package: predict and serve with no training first.

Each is an ordinary run directory under ``mnistkit/pretrained/NAME/`` (model.safetensors, config.json,
metrics.json) with a SHA256SUMS file. Every file's digest is checked before the run is loaded, so a
corrupt or tampered file is refused instead of used. `python bench/pretrained.py` rebuilds them from a
fixed seed with the command recorded in each entry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mnistkit.data.datasets import read_checksums
from mnistkit.errors import CheckpointError, UnknownNameError
from mnistkit.runs import CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE, Run, final_val_accuracy, load_run, read_json

SUMS_FILE = "SHA256SUMS"
DEFAULT = "mnist"


@dataclass(frozen=True)
class Pretrained:
    name: str
    description: str
    command: str  # how `bench/pretrained.py` trained it


PRETRAINED: dict[str, Pretrained] = {
    p.name: p for p in (
        Pretrained("mnist", "handwritten digits: the `default` recipe (mknet-s)",
                   "mnistkit train --preset default --seed 0"),
        Pretrained("fashion-mnist", "Zalando clothing: the Fashion-MNIST recipe, trained on the first 50,000 "
                                    "training images (the official test files are withheld here: no test accuracy)",
                   "python bench/fashion_dev.py && mnistkit train --dataset fashion-mnist "
                   "--data-dir runs/fashion-dev --seed 0 --set budget_seconds=0 --set augment.hflip_alternate=true "
                   "--set focus_fraction=1"),
    )
}


def pretrained_root() -> Path:
    return Path(str(resources.files("mnistkit") / "pretrained"))


def pretrained_dir(name: str) -> Path:
    if name not in PRETRAINED:
        raise UnknownNameError("pretrained model", name, list(PRETRAINED))
    return pretrained_root() / name


def is_shipped(run_dir: str | Path) -> bool:
    """Whether a run directory is one shipped inside the package, which is never written to."""
    return Path(run_dir).resolve().is_relative_to(pretrained_root().resolve())


def available() -> list[Pretrained]:
    """The pretrained models whose files are present in this installation."""
    return [p for p in PRETRAINED.values() if (pretrained_root() / p.name / SUMS_FILE).exists()]


def verify(directory: Path) -> None:
    """Refuse a shipped run whose files do not match their recorded SHA-256."""
    sums_path = directory / SUMS_FILE
    if not sums_path.exists():
        raise CheckpointError(f"{directory}: no {SUMS_FILE}; this pretrained model is not installed")
    sums = read_checksums(sums_path)
    for name in (WEIGHTS_FILE, CONFIG_FILE, METRICS_FILE):
        path = directory / name
        if name not in sums:
            raise CheckpointError(f"{sums_path}: no checksum for {name}")
        try:
            found = hashlib.sha256(path.read_bytes()).hexdigest()
        except FileNotFoundError:
            raise CheckpointError(f"{path}: file not found (the installation is incomplete)") from None
        if found != sums[name]:
            raise CheckpointError(f"{path}: SHA-256 mismatch: expected {sums[name]}, found {found}; the file is "
                                  "corrupt or was modified, so it is not used (reinstall mnistkit)")


def load_pretrained(name: str = DEFAULT, device: str = "cpu") -> Run:
    """A shipped model as a :class:`Run` (``.model``, ``.config``, ``.classes``, ``.metrics``), checked first."""
    directory = pretrained_dir(name)
    verify(directory)
    return load_run(directory, device)


def load_source(source: str | Path, device: str = "cpu") -> Run:
    """A run directory, or the name of a pretrained model: what `--model-from` and `mnistkit.load` take."""
    if Path(source).is_dir():
        return load_run(source, device)
    if str(source) in PRETRAINED:
        return load_pretrained(str(source), device)
    raise CheckpointError(f"{source}: not a run directory (it does not exist), and no pretrained model has that "
                          f"name (pretrained: {', '.join(PRETRAINED)})")


def write_sums(directory: Path) -> Path:
    """Record the digests of a run directory about to be shipped (used by bench/pretrained.py)."""
    lines = [f"{hashlib.sha256((directory / n).read_bytes()).hexdigest()}  {n}"
             for n in (WEIGHTS_FILE, CONFIG_FILE, METRICS_FILE)]
    (directory / SUMS_FILE).write_text("\n".join(lines) + "\n")
    return directory / SUMS_FILE


def summary(name: str) -> dict:
    """What `mnistkit models --pretrained` shows: accuracy and size, from the shipped files."""
    directory = pretrained_dir(name)
    metrics = read_json(directory / METRICS_FILE)
    return {"name": name, "model": metrics.get("model"), "dataset": metrics.get("dataset"),
            "val_accuracy": final_val_accuracy(metrics), "test_accuracy": metrics.get("test_accuracy"),
            "parameters": metrics.get("parameters"), "bytes": (directory / WEIGHTS_FILE).stat().st_size,
            "description": PRETRAINED[name].description}
