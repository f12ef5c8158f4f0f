"""Recipes that transfer: per-dataset recipes, data-size adaptation, flips and erasing, `mnistkit tune`."""

import csv
import dataclasses
import io
import json
import re
import sys

import pytest
import torch
from typer.testing import CliRunner

import mnistkit
from mnistkit import runs
from mnistkit.cli import app
from mnistkit.config import adapt_to_data, adapt_to_precision, build_config, make_config
from mnistkit.data.augment import AugmentConfig, alternate_flips, augment_batch, flip_parity
from mnistkit.errors import MnistkitError
from mnistkit.metrics import energy_score, rejection_threshold
from mnistkit.models import infer


def digit_batch(mnist, n=16):
    return mnist.train_images[:n].unsqueeze(1).float() / 255


def test_hflip_mirrors_and_only_when_asked(mnist):
    images = digit_batch(mnist)
    g = torch.Generator().manual_seed(0)
    flipped = augment_batch(images, AugmentConfig(hflip=1.0), g)
    assert torch.allclose(flipped, images.flip(-1), atol=1e-5)
    assert torch.equal(augment_batch(images, AugmentConfig(), g), images)
    half = augment_batch(images, AugmentConfig(hflip=0.5), torch.Generator().manual_seed(1))
    mirrored = [torch.allclose(h, i.flip(-1), atol=1e-5) for h, i in zip(half, images)]
    assert 0 < sum(mirrored) < len(images)


def test_alternating_flips_show_each_image_both_ways_in_any_two_epochs_in_a_row(mnist):
    images = digit_batch(mnist, 32)
    cfg = AugmentConfig(hflip=0.5, hflip_alternate=True)
    parity = flip_parity(cfg, len(images), seed=3, device="cpu")
    assert torch.equal(parity, flip_parity(cfg, len(images), seed=3, device="cpu"))  # a resumed run alternates alike
    assert 0 < parity.sum() < len(images)
    mirrored = []
    for epoch in (1, 2, 3):
        out = augment_batch(images, cfg, torch.Generator().manual_seed(epoch), alternate_flips(parity, epoch))
        mirrored.append([torch.allclose(o, i.flip(-1), atol=1e-5) for o, i in zip(out, images)])
        assert all(m or torch.allclose(o, i, atol=1e-5) for m, o, i in zip(mirrored[-1], out, images))
    assert all(a != b for a, b in zip(mirrored[0], mirrored[1])) and mirrored[0] == mirrored[2]
    with pytest.raises(MnistkitError, match="hflip=0.5"):
        AugmentConfig(hflip=0.3, hflip_alternate=True)
    unflipped = AugmentConfig(hflip=0, hflip_alternate=True)  # e.g. a tune trial that turns flips off
    assert torch.equal(augment_batch(images, unflipped, torch.Generator(), alternate_flips(parity, 1)), images)


def integer_shift_of(image: torch.Tensor, original: torch.Tensor, reach: int) -> tuple[int, int] | None:
    """The whole-pixel (dx, dy) that turns ``original`` into ``image`` with zeros shifted in, if one does."""
    h, w = original.shape[-2:]
    padded = torch.nn.functional.pad(original, (reach, reach, reach, reach))
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            crop = padded[..., reach - dy : reach - dy + h, reach - dx : reach - dx + w]
            if torch.allclose(image, crop, atol=1e-5):
                return dx, dy
    return None


def test_whole_pixel_shifts_are_exact_crops_without_interpolation_blur(mnist):
    images = digit_batch(mnist, 32)
    cfg = AugmentConfig(translate=0.1, whole_pixel_shifts=True)
    shifted = augment_batch(images, cfg, torch.Generator().manual_seed(0))
    shifts = [integer_shift_of(s, i, reach=3) for s, i in zip(shifted, images)]
    assert None not in shifts and len(set(shifts)) > 5  # each an exact crop, and not all the same one
    assert max(max(abs(dx), abs(dy)) for dx, dy in shifts) <= 3  # 0.1 of 28 pixels, rounded
    mirrored = augment_batch(images, AugmentConfig(translate=0.1, hflip=1.0, whole_pixel_shifts=True),
                             torch.Generator().manual_seed(0))
    assert all(integer_shift_of(m, i.flip(-1), reach=3) for m, i in zip(mirrored, images))
    blurred = augment_batch(images, AugmentConfig(translate=0.1), torch.Generator().manual_seed(0))
    assert sum(integer_shift_of(b, i, reach=3) is None for b, i in zip(blurred, images)) > 25  # sub-pixel shifts blur


def test_random_erasing_blanks_one_rectangle_per_image(mnist):
    images = torch.rand(64, 1, 28, 28) + 0.1  # no zero pixels before erasing
    erased = augment_batch(images, AugmentConfig(erase=1.0, erase_max_area=0.3), torch.Generator().manual_seed(0))
    zero = erased == 0
    assert torch.equal(erased[~zero], images[~zero])  # nothing else changed
    for mask in zero[:, 0]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        area = len(rows) * len(cols)
        assert mask.sum() == area  # a filled rectangle
        assert 1 <= area <= 0.3 * 28 * 28 + 2 * 28 + 1
    untouched = augment_batch(images, AugmentConfig(erase=0.0), torch.Generator().manual_seed(0))
    assert torch.equal(untouched, images)


def test_each_dataset_gets_its_recipe_and_flips_only_where_mirroring_keeps_the_class():
    mnist_cfg = make_config(None, dataset="mnist")
    assert mnist_cfg.preset == "default" and mnist_cfg.augment.hflip == 0
    fashion = make_config(None, dataset="fashion-mnist")
    assert fashion.preset == "fashion-mnist" and fashion.augment.hflip > 0  # chosen on validation (BENCHMARKS.md)
    kmnist = make_config(None, dataset="kmnist")
    assert kmnist.preset == "generic" and kmnist.augment.hflip == 0 and "kmnist" in kmnist.recipe_note
    quickdraw = make_config(None, dataset="quickdraw")
    assert quickdraw.augment.hflip == 0.5 and "mirrored" in quickdraw.recipe_note
    # Data of unknown balance validates on every class's share; MNIST and Fashion keep the split their numbers used.
    assert kmnist.val_stratified and quickdraw.val_stratified
    assert not mnist_cfg.val_stratified and not fashion.val_stratified
    assert make_config("fast", dataset="fashion-mnist").model == "mknet-xs"  # --preset still wins over the recipe (mknet-m)
    assert build_config(None, options={"dataset": "fashion-mnist"}).preset == "fashion-mnist"


def test_generic_recipe_adapts_to_the_size_of_the_data():
    cfg = make_config(None, dataset="idx")
    big = adapt_to_data(cfg, 60_000)
    assert big.val_size == 6000 and big.epochs == cfg.epochs  # enough steps already
    assert big.focus_fraction == cfg.focus_fraction < 1  # focused epochs where there are enough images
    small = adapt_to_data(cfg, 1000)
    assert small.val_size == 100 and small.epochs * (900 // small.batch_size) >= cfg.min_steps
    assert "val_size 100" in small.recipe_note and "epochs" in small.recipe_note
    assert small.focus_fraction == 1.0 and "focus_fraction 1" in small.recipe_note  # every image, every epoch
    assert adapt_to_data(small, 1000) == small  # idempotent: resuming resolves to the same run
    tiny = adapt_to_data(cfg, 200)
    assert tiny.batch_size == 45 and tiny.lr == pytest.approx(cfg.lr * 45 / 128)
    assert adapt_to_data(make_config("default"), 60_000) == make_config("default")  # MNIST's recipe is fixed
    large = adapt_to_data(cfg, 697_932)  # EMNIST byclass: 30 epochs would be 147,000 steps
    steps_per_epoch = (697_932 - large.val_size) // large.batch_size
    assert large.epochs == 6 and large.epochs * steps_per_epoch <= cfg.max_steps == 30_000
    assert "epochs 30 -> 6 for at most 30,000 optimizer steps" in large.recipe_note
    assert adapt_to_data(large, 697_932) == large
    with pytest.raises(MnistkitError, match=r"max_steps must be 0 or at least min_steps \(3000\), found 100"):
        make_config(None, dataset="idx", max_steps=100)


def test_long_fashion_recipe_takes_its_cheaper_network_only_where_training_falls_back_to_fp32():
    long = make_config("fashion-mnist-long")
    assert adapt_to_precision(long, bf16=True) == long
    fp32 = adapt_to_precision(long, bf16=False)
    assert fp32.model_kwargs == {"extra_convs": 2, "widths": [32, 64, 128]} and "no native bf16" in fp32.recipe_note
    assert adapt_to_precision(fp32, bf16=False) == fp32
    assert adapt_to_precision(make_config("best"), bf16=False) == make_config("best")  # no fallback declared
    by_hand = build_config("fashion-mnist-long", assignments=["model_kwargs.widths=[64,128,256]"])
    assert adapt_to_precision(by_hand, bf16=False).model_kwargs == {"extra_convs": 2, "widths": [64, 128, 256]}
    other_knob = build_config("fashion-mnist-long", assignments=["model_kwargs.dropout=0.2"])
    assert adapt_to_precision(other_knob, bf16=False).model_kwargs == {**fp32.model_kwargs, "dropout": 0.2}
    # A fallback of several settings is one network: setting any of them by hand drops all of them.
    several = make_config("default", amp=True, fp32_model_kwargs={"widths": [8, 8, 16], "full_res_convs": 1},
                          model_kwargs={"widths": [16, 16, 32]})
    assert adapt_to_precision(several, bf16=False).model_kwargs == {"widths": [16, 16, 32]}
    in_python = make_config("fashion-mnist-long", model_kwargs={"widths": [64, 128, 256]})
    assert adapt_to_precision(in_python, bf16=False).model_kwargs["widths"] == [64, 128, 256]


def test_fp32_fallback_network_is_what_the_run_trains_saves_and_resumes(small_mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules["mnistkit.train"], "native_cpu_bf16", lambda: False)
    cfg = make_config("default", data_dir=str(small_mnist_dir), epochs=2, amp=True, out=str(tmp_path / "run"),
                      fp32_model_kwargs={"widths": [8, 8, 16]}, progress=False)
    run = mnistkit.train(dataclasses.replace(cfg, epochs=1))
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model_kwargs"] == {"widths": [8, 8, 16]} and "no native bf16" in saved["recipe_note"]
    assert run.model.net[-1].in_features == 16 * 3 * 3
    config_path = tmp_path / "run" / "config.json"
    config_path.write_text(json.dumps({**saved, "epochs": 2, "fp32_model_kwargs": {"widths": [8, 16, 16]}}))
    resumed = mnistkit.train(resume=tmp_path / "run")  # the checkpoint's network, not the fallback's again
    assert resumed.metrics["epochs"] == 2 and resumed.config.model_kwargs == {"widths": [8, 8, 16]}


def test_generic_run_records_its_recipe_and_selects_on_its_own_split(small_mnist_dir, tmp_path):
    cfg = make_config(None, dataset="idx", data_dir=str(small_mnist_dir), min_steps=60, epochs=1,
                      out=str(tmp_path / "run"), progress=False)
    run = mnistkit.train(cfg)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["val_size"] == 600 and saved["epochs"] == 2 and "adapted to the data" in saved["recipe_note"]
    assert run.metrics["val_images"] == 600 and run.metrics["train_images"] == 5400
    assert len(mnistkit.load_run(run.run_dir).splits().val_images) == 600


def tune_config(small_mnist_dir, out, trials, **kw):
    from mnistkit.tune import TuneConfig

    base = make_config("fast", dataset="idx", data_dir=str(small_mnist_dir), val_size=1000, epochs=2,
                       model="mknet-s").to_dict()
    good, bad = {"lr": 0.2}, {"lr": 1e-5}
    return TuneConfig(base=base, trials=trials, out=str(out), space={"lr": {"choices": [0.2, 1e-5]}},
                      enqueue=[good, good, bad, bad], **kw)


def test_the_pruner_waits_for_a_quarter_of_the_study_and_at_most_five_trials():
    from mnistkit.tune import unpruned_trials

    assert [unpruned_trials(n) for n in (1, 4, 12, 30, 200)] == [1, 1, 3, 5, 5]


@pytest.mark.parametrize("val_images, startup_trials, pruned",
                         [(100, 2, False), (20_000, 2, True), (None, 2, True), (20_000, 4, False)])
def test_the_pruner_stops_a_trial_only_where_the_validation_split_can_tell_it_behind(val_images, startup_trials,
                                                                                    pruned):
    import optuna

    from mnistkit.tune import median_pruner

    study = optuna.create_study(direction="maximize", pruner=median_pruner(startup_trials))
    for value in (0.88, 0.90, 0.92):  # finished trials at 0.90 on the median, three points ahead
        study.add_trial(optuna.trial.create_trial(value=value, intermediate_values={5: value}))
    trial = study.ask()
    if val_images is not None:
        trial.set_user_attr("val_images", val_images)
    trial.report(0.87, 5)
    # Three points on 100 images is well inside the noise (10 points at two standard errors), on 20,000 it is not;
    # a trial that does not say its split's size is judged as Optuna's median pruner would; none is stopped before
    # the startup trials have finished.
    assert trial.should_prune() == pruned


def test_a_pruned_trials_note_gives_the_numbers_it_was_judged_by():
    from mnistkit.tune import pruning_note, pruning_threshold, trails_the_median

    others = [0.88, 0.90, 0.92]
    threshold = pruning_threshold(others, 1000)
    assert trails_the_median(0.80, others, 1000) and not trails_the_median(threshold, others, 1000)
    note = pruning_note(0.80, others, 1000)
    assert f"0.8000 < {threshold:.4f}: the median of 3 finished trials at this point, 0.9000, less a margin of " \
           f"{0.9 - threshold:.4f} for 1,000 validation images" == note.removeprefix("best val so far ")
    assert "less a margin of 0.0000 for a validation split of unknown size" in pruning_note(0.80, others, None)


def test_the_pruners_margin_never_vanishes_at_a_perfect_median():
    from mnistkit.tune import trails_the_median

    assert not trails_the_median(0.99, [1.0, 1.0, 1.0], val_images=100)  # one image of 100 is noise
    assert trails_the_median(0.90, [1.0, 1.0, 1.0], val_images=100)
    assert not trails_the_median(0.5, [], val_images=100)  # nothing to compare with


def test_workers_sharing_a_study_and_a_seed_draw_different_trials(tmp_path):
    from mnistkit.tune import DEFAULT_SPACE, TuneConfig, make_study, sample, seed_trial

    def draws(out, workers: int) -> list[dict]:
        cfg = TuneConfig(base=make_config("fast").to_dict(), out=str(out), seed=7)
        out.mkdir()
        studies = [make_study(cfg, heartbeat=False) for _ in range(workers)]  # as each worker process opens it
        values = []
        for study in studies:
            trial = study.ask()
            seed_trial(trial, cfg.seed)
            values.append(sample(trial, DEFAULT_SPACE))
        return values

    first, second = draws(tmp_path / "two", workers=2)
    assert first["lr"] != second["lr"] and first["weight_decay"] != second["weight_decay"]
    assert draws(tmp_path / "again", workers=2) == [first, second]  # the same seed, the same trials


def test_trials_are_compared_at_the_same_share_of_their_schedule():
    from mnistkit.tune import judging_point

    # Epoch 1 of 2 and epoch 10 of 20 meet at one point; epoch 1 of 20 is judged with neither.
    assert judging_point(1 / 2) == judging_point(10 / 20) == 10 and judging_point(1 / 20) == 1
    assert [judging_point(p) for p in (0.0, 0.049, 1 / 7, 1.0)] == [0, 0, 2, 20]


def test_tune_with_two_workers_prunes_writes_results_and_resumes(small_mnist_dir, tmp_path, capfd):
    from mnistkit.tune import tune

    out = tmp_path / "study"
    best = tune(tune_config(small_mnist_dir, out, trials=4, workers=2))
    # A pruned trial's log line says what it was judged against (the workers' output, captured at the descriptor).
    assert re.search(r"pruned after epoch 1 \(50% of its schedule\): best val so far 0\.\d{4} < 0\.\d{4}: the median "
                     r"of \d finished trials at this point", capfd.readouterr().out)
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].startswith("trial,state,val_accuracy") and len(rows) == 5
    table = list(csv.DictReader(io.StringIO("\n".join(rows))))
    # The bad learning rate falls behind a finished good trial after its first epoch and is pruned.
    assert [r["state"] for r in table if float(r["lr"]) == 1e-5] == ["pruned", "pruned"], rows
    assert "complete" in [r["state"] for r in table if float(r["lr"]) == 0.2], rows
    assert {r["state"]: int(r["epochs_run"]) for r in table} == {"complete": 2, "pruned": 1}, rows
    assert "| trial | state |" in (out / "results.md").read_text()
    for plot in ("history.png", "importances.png"):
        assert (out / plot).stat().st_size > 5000
    assert best["params"] == {"lr": 0.2} and best["val_accuracy"] > 0.9
    trial = json.loads((tmp_path / "study" / f"trial-{best['trial']:04d}" / "metrics.json").read_text())
    assert trial["test_accuracy"] is None  # a study never scores the test split

    # `mnistkit train --config best_config.json` trains the best trial's config again.
    trial_cfg = json.loads((out / f"trial-{best['trial']:04d}" / "config.json").read_text())
    again = build_config(None, out / "best_config.json").to_dict()
    ignore = {"out", "progress", "recipe_note"}
    assert {k: v for k, v in again.items() if k not in ignore} == {k: v for k, v in trial_cfg.items() if k not in ignore}

    # The same study asked for 5 trials continues: one more, the first four untouched.
    tune(tune_config(small_mnist_dir, out, trials=5, workers=1))
    rows_after = (out / "results.csv").read_text().splitlines()
    assert len(rows_after) == 6 and rows_after[1:5] == rows[1:5]


def test_tune_command_line_checks_its_space(tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"lr": {"float": [0.1]}}))
    result = CliRunner().invoke(app, ["tune", "--space", str(space), "--out", str(tmp_path / "t")])
    assert result.exit_code != 0 and "search space entry 'lr'" in str(result.exception)


def test_flip_and_shift_tta_are_decided_on_validation_and_kept_with_the_weights(small_mnist_dir, tmp_path):
    from mnistkit.report import penultimate_features, write_report

    cfg = make_config("fast", dataset="idx", data_dir=str(small_mnist_dir), val_size=1000, epochs=1,
                      augment={"hflip": 0.5}, try_shift_tta=True, out=str(tmp_path / "run"), progress=False)
    run = mnistkit.train(cfg)
    m = run.metrics
    assert m["tta_hflip"] == (m["val_accuracy_hflip_tta"] > m["val_accuracy_plain"])
    assert m["tta_shift"] == (m["val_accuracy_shift_tta"] > m["val_accuracy_before_shift_tta"])
    loaded = mnistkit.load_run(run.run_dir)
    assert (loaded.model.tta_hflip, loaded.model.tta_shift) == (m["tta_hflip"], m["tta_shift"])
    splits = loaded.splits()
    # The validation accuracy reported for the run is the saved model's, TTA as kept.
    val_accuracy = (infer(loaded.model, splits.val_images).argmax(1) == splits.val_labels).float().mean().item()
    assert runs.final_val_accuracy(m) == pytest.approx(val_accuracy, abs=1e-6)
    # The threshold and the logits handed to the report are the saved model's, TTA as kept.
    val_scores = energy_score(infer(loaded.model, splits.val_images))
    assert rejection_threshold(val_scores, cfg.ood_false_rejection) == pytest.approx(m["ood_threshold"], abs=1e-4)
    assert torch.allclose(run.test_logits, infer(loaded.model, splits.test_images), atol=1e-4)
    loaded.model.tta_hflip = loaded.model.tta_shift = True  # force TTA on: the report's hooks must still see one pass
    assert len(penultimate_features(loaded.model, splits.test_images[:50])) == 50
    write_report(run.run_dir, sample=200, log=lambda *_: None)
    assert (tmp_path / "run" / "report.html").exists()
    plain = make_config("fast", dataset="idx", data_dir=str(small_mnist_dir), val_size=1000, epochs=1,
                        out=str(tmp_path / "plain"), progress=False)
    assert not {"tta_hflip", "tta_shift"} & set(mnistkit.train(plain).metrics)  # neither asked for: not tried


def test_a_killed_worker_loses_no_trial_and_none_runs_twice(small_mnist_dir, tmp_path):
    """Two `tune` processes share one storage, as two machines would; one is killed mid-trial."""
    import dataclasses
    import os
    import signal
    import subprocess
    import sys
    import time

    import optuna

    from mnistkit.tune import make_study

    cfg = tune_config(small_mnist_dir, tmp_path / "study", trials=4, workers=1, heartbeat_seconds=1)
    cfg = dataclasses.replace(cfg, enqueue=[], base={**cfg.base, "epochs": 4}, space={"lr": {"float": [0.05, 0.3]}})
    code = ("import json, sys; from mnistkit.tune import TuneConfig, tune; "
            "tune(TuneConfig(**json.loads(sys.argv[1])))")
    args = [sys.executable, "-c", code, json.dumps(dataclasses.asdict(cfg))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    survivor = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until both are training a trial, then kill one mid-trial
        time.sleep(0.5)
        if (tmp_path / "study" / "study.db").exists():
            trials = make_study(cfg, heartbeat=False).trials
            # A trial is RUNNING a moment before its params are sampled; killing it then leaves
            # nothing to re-run with the same params, so wait until both have theirs.
            training = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and t.params]
            if len(training) == 2:
                break
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    _, errors = survivor.communicate(timeout=240)
    assert survivor.returncode == 0, errors[-2000:]

    trials = make_study(cfg, heartbeat=False).trials
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") + states.count("PRUNED") >= 4, states
    assert states.count("FAIL") == 1 and "RUNNING" not in states, states  # the killed one, marked failed
    [failed] = [t for t in trials if t.state.name == "FAIL"]
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == failed.number]
    assert len(retries) == 1 and retries[0].state.name in ("COMPLETE", "PRUNED")  # re-run once, by the survivor
    assert retries[0].params == failed.params
