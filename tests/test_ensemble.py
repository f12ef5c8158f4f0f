"""Ensembles and shift TTA: the TTA setting is chosen on validation, and both settings are reported."""

import pytest

from mnistkit.ensemble import evaluate_ensemble
from mnistkit.errors import MnistkitError
from mnistkit.models import tta_set
from mnistkit.runs import load_run


def test_tta_is_chosen_on_validation_and_both_settings_reported(trained_run):
    found = evaluate_ensemble([trained_run, trained_run])
    assert found.tta_chosen_on_validation and found.tta == (found.val_accuracy["tta"] > found.val_accuracy["plain"])
    chosen = found.split_accuracy["tta" if found.tta else "plain"]
    assert found.result.accuracy == pytest.approx(chosen)
    assert found.member_accuracy == [pytest.approx(chosen)] * 2  # two copies of one run agree with their mean
    forced = evaluate_ensemble([trained_run], tta=not found.tta)
    assert not forced.tta_chosen_on_validation and forced.tta != found.tta
    model = load_run(trained_run).model
    with tta_set(model, tta_shift=True):
        assert model.tta_shift
    assert model.tta_shift is False  # the switch is put back


def test_runs_on_different_data_refuse_to_mix(trained_run, small_mnist_dir, tmp_path, monkeypatch):
    import json
    import os
    import shutil

    import mnistkit

    other = mnistkit.train(mnistkit.make_config("fast", dataset="idx", data_dir=str(small_mnist_dir), val_size=500,
                                                out=str(tmp_path / "other"), progress=False))
    with pytest.raises(MnistkitError, match="different datasets"):
        evaluate_ensemble([trained_run, other.run_dir])
    # The same data named by a relative path in one run and an absolute one in another does mix.
    relative = tmp_path / "relative"
    shutil.copytree(other.run_dir, relative)
    monkeypatch.chdir(small_mnist_dir.parent)
    config = json.loads((relative / "config.json").read_text())
    config["data_dir"] = os.path.relpath(small_mnist_dir)
    (relative / "config.json").write_text(json.dumps(config))
    assert not os.path.isabs(config["data_dir"])
    assert len(evaluate_ensemble([other.run_dir, relative]).member_accuracy) == 2
    with pytest.raises(MnistkitError, match="at least one run"):
        evaluate_ensemble([])
    # Another validation split: the first run's validation images include some the second one trained on.
    other_split = tmp_path / "other-split"
    shutil.copytree(trained_run, other_split)
    config = json.loads((other_split / "config.json").read_text())
    (other_split / "config.json").write_text(json.dumps({**config, "val_seed": 1}))
    with pytest.raises(MnistkitError, match=r"held out different validation images .*'val_seed': 1"):
        evaluate_ensemble([trained_run, other_split])


def test_greedy_selection_keeps_helpful_members_within_the_budget():
    import torch

    from mnistkit.ensemble import greedy_selection

    labels = torch.tensor([0, 1, 0, 1])
    right = torch.tensor([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    wrong = torch.nn.functional.one_hot(1 - labels, 2).float()  # sure of the other class every time
    other_right = torch.tensor([[0.6, 0.4], [0.2, 0.8], [0.9, 0.1], [0.4, 0.6]])  # right, errs elsewhere
    probs, costs = [wrong, right, other_right], [1.0, 1.0, 5.0]
    found = greedy_selection(probs, labels, costs)
    assert found.order == [1, 2, 0] and found.val_errors[:2] == [0, 0] and found.val_errors[2] > 0
    assert found.chosen == [1, 2]  # as few errors with both: the longer prefix; the wrong one adds errors
    assert greedy_selection(probs, labels, costs, budget=3.0).chosen == [1]  # the second no longer fits
    assert greedy_selection(probs, labels, costs, budget=0.5).chosen == []


def test_select_members_applies_a_training_budget(trained_run, tmp_path):
    import json
    import shutil

    from mnistkit.ensemble import select_members

    cheap, costly = tmp_path / "cheap", tmp_path / "costly"
    for run, seconds in ((cheap, 10.0), (costly, 1000.0)):
        shutil.copytree(trained_run, run)
        metrics = json.loads((run / "metrics.json").read_text())
        (run / "metrics.json").write_text(json.dumps({**metrics, "train_seconds": seconds}))
    assert select_members([costly, cheap], budget_seconds=60).chosen == [cheap]
    found = select_members([costly, cheap])
    assert found.chosen == [costly, cheap]  # equal: the first, then the copy adds no error
    assert found.train_seconds == [1000.0, 10.0] and found.val_errors[0] == found.val_errors[1]
    with pytest.raises(MnistkitError, match="no run fits"):
        select_members([costly], budget_seconds=60)


def test_ensemble_command_selects_members(trained_run, tmp_path):
    import json

    from typer.testing import CliRunner

    from mnistkit.cli import app

    out = tmp_path / "ensemble.json"
    result = CliRunner().invoke(app, ["ensemble", str(trained_run), str(trained_run), "--select", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "chosen on validation: 2 of 2 runs" in result.output  # a copy adds no error: the longer prefix
    assert "Greedy selection on 5,000 validation images" in result.output
    written = json.loads(out.read_text())
    assert len(written["runs"]) == 2 and written["selection"]["keep"] == 2
    assert written["selection"]["val_images"] == 5000 and len(written["selection"]["val_errors"]) == 2
    result = CliRunner().invoke(app, ["ensemble", str(trained_run), "--budget-minutes", "5"])
    assert isinstance(result.exception, MnistkitError) and "needs --select" in str(result.exception)
    result = CliRunner().invoke(app, ["ensemble", str(trained_run), "--select", "--budget-minutes", "-5"])
    assert isinstance(result.exception, MnistkitError) and "must be positive, found -5" in str(result.exception)
