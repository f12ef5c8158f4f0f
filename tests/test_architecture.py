"""The layering of ARCHITECTURE.md, checked on the source: every import (late ones inside functions
too) goes to the same layer or one below, and no modules import each other in a cycle."""

import ast
import graphlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mnistkit
from mnistkit.cli import app
from mnistkit.config import TrainConfig, build_config, make_config
from mnistkit.errors import MnistkitError

SRC = Path(mnistkit.__file__).parent
# Lower numbers are lower layers. A module may import its own layer or lower ones, never higher.
LAYERS = {
    "mnistkit.errors": 0, "mnistkit.fileio": 0,
    "mnistkit.data": 1, "mnistkit.models": 1,
    "mnistkit.config": 2,
    "mnistkit.runs": 3, "mnistkit.pretrained": 3,
    "mnistkit.metrics": 4, "mnistkit.timing": 4, "mnistkit.distributed": 4,
    "mnistkit.train": 5,
    "mnistkit.evaluate": 6, "mnistkit.predict": 6, "mnistkit.ensemble": 6, "mnistkit.export": 6,
    "mnistkit.compare": 6, "mnistkit.tune": 6, "mnistkit.explain": 6, "mnistkit.report": 6, "mnistkit.plots": 6,
    "mnistkit.serve": 7,
    "mnistkit.cli": 8,
    "mnistkit.__main__": 9, "mnistkit": 9,  # the package's public API re-exports everything
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def layer(module: str) -> int:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    raise AssertionError(f"{module} has no layer: add it to LAYERS here and to ARCHITECTURE.md")


def imports_of(path: Path) -> set[str]:
    """mnistkit modules that a file imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:  # `from mnistkit import runs` imports the module mnistkit.runs
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return {name for name in found if name.split(".")[0] == "mnistkit"}


def test_every_import_goes_down_the_layers():
    wrong = [f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
             for module, path in MODULES.items() for target in imports_of(path) if layer(target) > layer(module)]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = {module: imports_of(path) - {module} for module, path in MODULES.items()}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_the_check_sees_late_imports(tmp_path):
    source = tmp_path / "late.py"
    source.write_text("def f():\n    from mnistkit.report import write_report\n    from mnistkit import runs\n")
    assert imports_of(source) == {"mnistkit.report", "mnistkit.runs"}


def test_importing_the_report_leaves_matplotlib_alone():
    code = ("import matplotlib, sys; matplotlib.use('svg'); import mnistkit.report, mnistkit.compare; "
            "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["svg", "False"]


def test_train_config_is_the_default_recipe():
    assert TrainConfig() == make_config("default") == make_config(None)
    assert TrainConfig().augment.enabled  # the default recipe augments
    assert not make_config("fast").augment.enabled and make_config("fast").model == "mknet-xs"


def test_library_training_writes_no_report(small_mnist_dir, tmp_path):
    run = mnistkit.train(TrainConfig(dataset="idx", data_dir=str(small_mnist_dir), val_size=500, epochs=1,
                                     out=str(tmp_path / "run"), progress=False))
    assert (tmp_path / "run" / "metrics.json").exists()
    assert not (tmp_path / "run" / "report.html").exists() and not (tmp_path / "run" / "figures").exists()
    loaded = mnistkit.load_run(run.run_dir)
    assert loaded.config == run.config and loaded.classes == tuple("0123456789")
    assert loaded.metrics["test_accuracy"] == run.metrics["test_accuracy"]


def test_set_reaches_every_field_with_the_same_checks(tmp_path):
    cfg = build_config("fast", assignments=["augment.rotate_degrees=5", "ema_decay=0.99", "model_kwargs.widths=[8,16,32]",
                                            "warmup_fraction=0.3", "dataset=quickdraw", "dataset_options.per_class=100"])
    assert cfg.augment.rotate_degrees == 5.0 and cfg.augment.translate == 0 and cfg.ema_decay == 0.99
    assert cfg.model_kwargs == {"widths": [8, 16, 32]} and cfg.warmup_fraction == 0.3 and cfg.model == "mknet-xs"
    assert cfg.dataset_options == {"per_class": 100}
    for line, message in [("epochs=abc", r"epochs must be int, found 'abc'"),
                          ("augment.rotate=5", r"unknown fields \['augment.rotate'\]"),
                          ("lr=-1", "lr must be positive"),
                          ("nesterov=1", "nesterov must be bool"),
                          ("dataset_options.classes=cloud", r"dataset 'mnist': unknown option\(s\) \['classes'\]"),
                          ("epochs", "--set expects KEY=VALUE")]:
        with pytest.raises(MnistkitError, match=message):
            build_config(None, assignments=[line])


def test_config_file_then_flags_then_set(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({**make_config("best").to_dict(), "out": "runs/somebody-elses-run", "epochs": 7}))
    cfg = build_config(None, path, {"lr": 0.05}, ["epochs=3"])
    assert cfg.model == "mknet-l" and cfg.lr == 0.05 and cfg.epochs == 3 and cfg.out is None
    result = CliRunner().invoke(app, ["config", "--config", str(path), "--set", "seed=4"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["seed"] == 4 and shown["epochs"] == 7 and shown["ema_decay"] == 0.999
