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
