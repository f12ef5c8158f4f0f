import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mnistkit.cli import app
from mnistkit.errors import MnistkitError
from mnistkit.evaluate import evaluate_on_dataset
from mnistkit.pretrained import pretrained_dir

runner = CliRunner()


def mnistkit_cmd(*args, **kw):
    return subprocess.run([sys.executable, "-m", "mnistkit", *map(str, args)], capture_output=True, text=True, **kw)


def test_models_and_summary_list_every_model():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    for name in ("mlp", "cnn-16-32", "lenet", "cnn-32-64", "quickdraw-cnn", "inception", "resnet", "mknet-m"):
        assert name in result.output
    assert "480,500" in result.output  # lenet MACs
    result = runner.invoke(app, ["summary", "lenet"])
    assert result.exit_code == 0 and "10x24x24" in result.output and "21,840" in result.output


def test_datasets_lists_each_one_with_its_options():
    result = runner.invoke(app, ["datasets"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.startswith("│ ")
            and line.split("│")[1].strip()}
    assert {"mnist", "fashion-mnist", "kmnist", "k49", "emnist", "quickdraw", "idx", "folder"} <= set(rows)
    options = {name: line.split("│")[4].strip() for name, line in rows.items()}  # the first line of each cell
    assert options["emnist"] == "split" and options["fashion-mnist"] == "-"
    assert options["quickdraw"] == "classes, per_class, seed" and options["folder"].startswith("test_fraction, seed, box")


def test_help_rewraps_each_paragraph_to_the_terminal():
    # The docstrings break their lines at about 110 characters; on a 200-column terminal a paragraph longer than
    # that must come out as one line, not broken again where the source breaks it (typer's rich mode did).
    result = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0
    description = result.output.split("Usage:")[1].split("╭")[0]
    lines = [line.strip() for line in description.splitlines()[1:] if line.strip()]
    assert any(len(line) > 150 for line in lines), lines
    assert any("cropped away, uneven lighting" in line for line in lines)


def test_unknown_names_are_one_line_errors():
    proc = mnistkit_cmd("train", "--model", "resnett", "--epochs", "1")
    assert proc.returncode == 2
    assert "unknown model 'resnett'. Did you mean 'resnet'?" in proc.stderr and "Traceback" not in proc.stderr
    proc = mnistkit_cmd("train", "--preset", "nope")
    assert proc.returncode == 2 and "unknown preset 'nope'" in proc.stderr


def test_evaluate_and_predict_commands(trained_run, mnist, tmp_path):
    result = runner.invoke(app, ["evaluate", str(trained_run)])
    assert result.exit_code == 0, result.output
    report = json.loads((trained_run / "eval.json").read_text())
    assert report["accuracy"] > 0.95 and len(report["per_class"]) == 10
    assert np.array(report["confusion_matrix"]).sum() == 10000 and report["hardest_mistakes"]
    np.save(tmp_path / "x.npy", mnist.test_images[2].numpy())
    result = runner.invoke(app, ["predict", str(trained_run), str(tmp_path / "x.npy"), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)[0]["label"] == str(int(mnist.test_labels[2]))
    result = runner.invoke(app, ["predict", str(trained_run), str(tmp_path / "x.npy"), str(tmp_path / "nope.png")])
    assert result.exit_code == 1 and "nope.png: file not found" in result.output


def write_scans(root, mnist, names, per_class=20):
    """A folder of 'scanned' test digits: ROOT/<name>/ for each digit, dark ink on light paper, larger than 28x28."""
    for name in names:
        (root / name).mkdir(parents=True)
        picks = np.nonzero(mnist.test_labels.numpy() == int(name))[0][:per_class]
        for i in picks:
            Image.fromarray(255 - mnist.test_images[i].numpy()).resize((64, 80)).save(root / name / f"{i}.png")
    return root


def test_evaluate_a_model_on_your_own_folder_of_digits(trained_run, mnist, tmp_path):
    scans = write_scans(tmp_path / "scans", mnist, ["0", "1", "7"])
    shipped = sorted(p.name for p in pretrained_dir("mnist").iterdir())
    result = runner.invoke(app, ["evaluate", "mnist", "--dataset", "folder", "--data-dir", str(scans), "--split", "all"])
    assert result.exit_code == 0, result.output
    assert "folder all accuracy" in result.output and "60 images" in result.output and "not written" in result.output
    assert sorted(p.name for p in pretrained_dir("mnist").iterdir()) == shipped
    # The folder's classes land on the model's outputs of the same names: 20 images each of 0, 1 and 7.
    scored, written = evaluate_on_dataset(trained_run, "folder", scans, split="all")
    assert scored.support == [20, 20, 0, 0, 0, 0, 0, 20, 0, 0] and scored.accuracy > 0.9
    assert written == trained_run / "eval_folder_all.json" and json.loads(written.read_text())["split"] == "all"
    (scans / "cat").mkdir()
    Image.fromarray(255 - mnist.test_images[0].numpy()).save(scans / "cat" / "a.png")
    with pytest.raises(MnistkitError, match=r"classes \['cat'\] that the model does not know"):
        evaluate_on_dataset("mnist", "folder", scans)
    with pytest.raises(MnistkitError, match="split must be one of"):
        evaluate_on_dataset("mnist", "folder", scans, split="val")


def test_predict_reads_every_picture_in_a_folder(trained_run, mnist, tmp_path):
    scans = write_scans(tmp_path / "scans", mnist, ["0", "1", "7"], per_class=5)
    result = runner.invoke(app, ["predict", str(scans), "--json"])  # a folder of pictures, not a model
    assert result.exit_code == 0, result.output
    answers = json.loads(result.output)
    assert len(answers) == 15 and all(a["file"].endswith(".png") for a in answers)
    right = sum(a["label"] == Path(a["file"]).parent.name for a in answers)
    assert right >= 14
    result = runner.invoke(app, ["predict", str(trained_run), str(scans / "7")])  # a run first is still the model
    assert result.exit_code == 0 and result.output.count(".png: ") == 5
    (tmp_path / "empty").mkdir()
    proc = mnistkit_cmd("predict", tmp_path / "empty")
    assert proc.returncode == 2 and "a folder with no pictures in it" in proc.stderr and "Traceback" not in proc.stderr


def test_ctrl_c_leaves_a_resumable_run(small_mnist_dir, tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "mnistkit", "train", "--preset", "fast", "--model", "mknet-m", "--dataset", "idx",
            "--data-dir", str(small_mnist_dir), "--val-size", "1000", "--epochs", "30", "--out", str(out),
            "--no-report"]
    # A shell starts background jobs with SIGINT ignored, and Python then installs no KeyboardInterrupt handler:
    # give the child the default disposition, as a terminal's Ctrl-C finds it.
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (out / "checkpoint.safetensors").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert f"mnistkit train --resume {out}" in stderr
    assert not (out / "metrics.json").exists()
    done = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["epoch"]
    assert 1 <= done < 30
