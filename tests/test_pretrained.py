"""Pretrained models in the package: predict and serve with no training, weights checked by SHA-256."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import mnistkit
from mnistkit import pretrained
from mnistkit.cli import app
from mnistkit.errors import CheckpointError, DataFormatError
from mnistkit.models import infer

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_default_scores_on_the_bundled_test_set(mnist):
    model = mnistkit.load("mnist")
    accuracy = (infer(model, mnist.test_images).argmax(1) == mnist.test_labels).float().mean().item()
    assert accuracy >= 0.993
    run = pretrained.load_pretrained("mnist")
    assert run.metrics["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)  # the recorded number is this one


def test_predict_works_in_a_fresh_place_with_no_run_directory(mnist, tmp_path):
    digit = 255 - np.kron(mnist.test_images[7].numpy(), np.ones((6, 6), np.uint8))
    Image.fromarray(digit).save(tmp_path / "digit.png")
    env = {**os.environ, "HOME": str(tmp_path), "MNISTKIT_DATA_DIR": str(tmp_path / "nothing-here")}
    proc = subprocess.run([sys.executable, "-m", "mnistkit", "predict", "digit.png"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"digit.png: {int(mnist.test_labels[7])}")
    assert not (tmp_path / "runs").exists()


def test_evaluate_and_export_take_a_shipped_model_and_never_write_into_the_package(mnist, tmp_path, monkeypatch):
    before = {p: p.stat().st_mtime_ns for p in pretrained.pretrained_root().rglob("*")}
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "mnist"])
    assert result.exit_code == 0, result.output
    recorded = pretrained.load_pretrained("mnist").metrics["test_accuracy"]
    assert f"test accuracy {recorded:.4f}" in result.output and "never written to" in result.output
    result = runner.invoke(app, ["export", "mnist", "--format", "onnx"])
    assert result.exit_code == 0, result.output
    assert "on 1000 mnist test images" in result.output and (tmp_path / "mnist-model.onnx").stat().st_size > 10_000
    # Fashion-MNIST's files are not bundled: its check runs on MNIST's images, and evaluate says where to put them
    result = runner.invoke(app, ["export", "fashion-mnist", "--format", "onnx", "--out", "clothes.onnx"])
    assert result.exit_code == 0 and "MNIST test images (fashion-mnist's files are not here)" in result.output
    result = runner.invoke(app, ["evaluate", "fashion-mnist"], env={"MNISTKIT_DATA_DIR": str(tmp_path / "none")})
    assert isinstance(result.exception, DataFormatError) and "pass --data-dir" in str(result.exception)
    assert {p: p.stat().st_mtime_ns for p in pretrained.pretrained_root().rglob("*")} == before


def test_tampered_weights_are_refused(tmp_path, monkeypatch):
    shutil.copytree(pretrained.pretrained_root(), tmp_path / "pretrained")
    monkeypatch.setattr(pretrained, "pretrained_root", lambda: tmp_path / "pretrained")
    pretrained.load_pretrained("mnist")  # intact: loads
    weights = tmp_path / "pretrained" / "mnist" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model.safetensors: SHA-256 mismatch.*corrupt or was modified"):
        pretrained.load_pretrained("mnist")
    with pytest.raises(CheckpointError, match=r"does not exist\), and no pretrained model has that name"):
        mnistkit.load("no-such-model")


def test_models_pretrained_lists_accuracy_and_size():
    result = CliRunner().invoke(app, ["models", "--pretrained"])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("│ mnist "))
    assert "mknet-s" in line and "99." in line and "KB" in line


def test_wheel_stays_under_20_mb(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    [wheel] = tmp_path.glob("mnistkit-*.whl")
    assert wheel.stat().st_size < 20 * 2**20
    names = zipfile.ZipFile(wheel).namelist()
    assert "mnistkit/pretrained/mnist/model.safetensors" in names and "mnistkit/pretrained/mnist/SHA256SUMS" in names
