import copy
import json
import math
import sys

import pytest
import torch
from tests.conftest import write_idx_dataset

import mnistkit
from mnistkit import fileio, runs
from mnistkit.config import TrainConfig, make_config
from mnistkit.data.preprocess import DIGIT_FRAMING, Framing
from mnistkit.distributed import Ranks
from mnistkit.errors import CheckpointError, MnistkitError
from mnistkit.evaluate import evaluate_run
from mnistkit.models import Classifier
from mnistkit.train import (
    EMA,
    autocast_dtype,
    config_of_run,
    focus_plan,
    focused_order,
    learning_rate,
    native_cpu_bf16,
    passes_after_training,
    schedule_progress,
    sharpness_aware_gradients,
    start_loop,
    train_epoch,
    training_seconds_left,
    validate,
)


def small_config(data_dir, out, **kw):
    values = dict(dataset="idx", data_dir=str(data_dir), val_size=1000, epochs=3, out=str(out), progress=False,
                  report=False)
    values.update(kw)
    return make_config("fast", **values)


def test_real_training_beats_95_percent_on_held_out(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    for key in ("model", "dataset", "epochs", "train_seconds", "val_accuracy", "test_accuracy", "parameters",
                "device", "seed"):
        assert key in metrics
    assert metrics["val_accuracy"] > 0.95 and metrics["test_accuracy"] > 0.95
    assert 0 < metrics["val_accuracy"] <= 1 and metrics["val_images"] == 5000
    history = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 1 and {"train_loss", "val_loss", "val_accuracy"} <= set(history[0])
    config = json.loads((trained_run / "config.json").read_text())
    assert TrainConfig.from_dict(config).model == make_config("fast").model


def test_same_seed_same_result(small_mnist_dir, tmp_path):
    a = mnistkit.train(small_config(small_mnist_dir, tmp_path / "a", epochs=2, seed=5))
    b = mnistkit.train(small_config(small_mnist_dir, tmp_path / "b", epochs=2, seed=5))
    mnistkit.train(small_config(small_mnist_dir, tmp_path / "c", epochs=2, seed=6))
    strip = lambda m: {k: v for k, v in m.items() if "seconds" not in k and k != "seed"}  # noqa: E731
    assert strip(a.metrics) == strip(b.metrics)
    wa, _ = runs.load_tensors(tmp_path / "a" / "model.safetensors")
    wb, _ = runs.load_tensors(tmp_path / "b" / "model.safetensors")
    wc, _ = runs.load_tensors(tmp_path / "c" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_an_epoch_takes_its_planned_steps_and_one_with_its_budget_spent_takes_none(small_mnist_dir, tmp_path):
    cfg = config_of_run(small_config(small_mnist_dir, tmp_path / "run", focus_fraction=0.5), None)
    loop = start_loop(cfg, adapt=True)
    state = {"step": 0, "train_seconds": 0.0}
    last_loss = torch.zeros(len(loop.train_x))
    steps = train_epoch(loop, state, 1, budget=0.0, last_loss=last_loss)
    assert steps.done == steps.planned == len(loop.train_x) // cfg.batch_size == state["step"]
    assert steps.loss.shape == (steps.done,) and torch.isfinite(steps.loss).all()
    assert 0 < steps.accuracy.min() and steps.accuracy.max() <= 1
    assert (last_loss > 0).sum() == steps.done * cfg.batch_size  # each trained image's loss is kept for focusing
    weights = copy.deepcopy(loop.model.state_dict())
    spent = train_epoch(loop, state, 2, budget=state["train_seconds"], last_loss=last_loss)
    assert spent.done == 0 and spent.planned == loop.focus_size // cfg.batch_size and state["step"] == steps.done
    assert all(torch.equal(value, loop.model.state_dict()[key]) for key, value in weights.items())


def test_of_epochs_tied_at_the_best_validation_accuracy_the_last_is_kept(small_mnist_dir, tmp_path):
    run = mnistkit.train(small_config(small_mnist_dir, tmp_path / "run", val_size=20, epochs=4))
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    best = max(row["val_accuracy"] for row in history)
    tied = [row["epoch"] for row in history if row["val_accuracy"] == best]
    assert len(tied) >= 2  # 20 validation images: the run ties, or this test would check nothing
    assert run.metrics["best_epoch"] == tied[-1]
    saved, _ = runs.load_tensors(tmp_path / "run" / "model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in run.model.state_dict().items() if k in saved)


@pytest.mark.parametrize("focus_fraction", [1.0, 0.5])
def test_resume_after_interruption_gives_identical_weights(small_mnist_dir, tmp_path, monkeypatch, focus_fraction):
    # Alternating flips too: their per-image pattern must come back the same after a resume; and with focused
    # epochs, each image's last loss, which orders the epochs after the cut.
    kw = dict(model="mknet-s", epochs=3, ema_decay=0.9, focus_fraction=focus_fraction,
              augment={"rotate_degrees": 10, "translate": 0.1, "hflip": 0.5, "hflip_alternate": True})
    mnistkit.train(small_config(small_mnist_dir, tmp_path / "full", **kw))

    real_save = runs.save_checkpoint
    calls = {"n": 0}

    def save_then_interrupt(*args, **kwargs):
        real_save(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # as if Ctrl-C arrived in epoch 3

    monkeypatch.setattr(runs, "save_checkpoint", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        mnistkit.train(small_config(small_mnist_dir, tmp_path / "cut", **kw))
    assert not (tmp_path / "cut" / "metrics.json").exists()
    monkeypatch.setattr(runs, "save_checkpoint", real_save)
    resumed = mnistkit.train(None, resume=tmp_path / "cut")

    full, _ = runs.load_tensors(tmp_path / "full" / "checkpoint.safetensors")
    cut, _ = runs.load_tensors(tmp_path / "cut" / "checkpoint.safetensors")
    assert set(full) == set(cut) and ("extra.last_loss" in full) == (focus_fraction < 1)
    assert all(torch.equal(full[k], cut[k]) for k in full if k.startswith(("model.", "ema.", "optim.", "extra.")))
    history = [json.loads(r) for r in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in history]
    full_epoch = 5000 // 128
    if focus_fraction == 1:
        assert steps == [full_epoch, 2 * full_epoch, 3 * full_epoch]
    else:  # a full first epoch, then half-size ones, as many as keep the steps of 3 full epochs
        assert steps == [full_epoch + i * (2500 // 128) for i in range(len(steps))]
        assert len(steps) == 1 + math.ceil(2 * full_epoch / (2500 // 128)) and steps[-1] >= 3 * full_epoch
    assert resumed.metrics["test_accuracy"] == json.loads((tmp_path / "full" / "metrics.json").read_text())[
        "test_accuracy"]
    if focus_fraction == 1:  # a checkpoint that holds no per-image losses cannot go on as a focused run
        config = json.loads((tmp_path / "full" / "config.json").read_text())
        (tmp_path / "full" / "config.json").write_text(json.dumps({**config, "focus_fraction": 0.5}))
        with pytest.raises(CheckpointError, match=r"checkpoint.safetensors: expected 'last_loss' of shape \(5000,\)"):
            mnistkit.train(None, resume=tmp_path / "full")


def test_focused_epochs_train_the_hardest_half_and_a_random_rest_within_the_same_steps():
    assert focus_plan(5000, 100, 10, 1.0) == (10, 5000)
    assert focus_plan(5000, 100, 1, 0.5) == (1, 5000)
    epochs, size = focus_plan(5000, 100, 10, 0.5)
    assert size == 2500 and 50 + (epochs - 1) * 25 == 10 * 50  # one full epoch, then 18 of half the images
    epochs, size = focus_plan(5000, 100, 10, 0.3)
    assert size == 1500 and 10 * 50 <= 50 + (epochs - 1) * 15 < 10 * 50 + 15
    loss = torch.rand(1000, generator=torch.Generator().manual_seed(1))
    order = focused_order(loss, 400, torch.Generator().manual_seed(0))
    chosen = order.tolist()
    assert len(chosen) == 400 and len(set(chosen)) == 400
    hardest = set(torch.topk(loss, 200).indices.tolist())
    assert hardest <= set(chosen)  # the half with the highest loss, every one
    drawn = loss[[i for i in chosen if i not in hardest]]
    assert (drawn < loss.median()).sum() > 70  # the rest at random from the 800 others, easy ones too
    assert order.tolist() != sorted(chosen) and not torch.equal(order[:200].sort().values,
                                                                torch.tensor(sorted(hardest)))  # shuffled


def test_load_returns_plain_module_for_inference(trained_run, mnist):
    model = mnistkit.load(trained_run)
    assert isinstance(model, torch.nn.Module) and not model.training
    assert model.classes == tuple("0123456789")
    with torch.no_grad():
        pred = model(mnist.test_images[:500]).argmax(1)
    assert (pred == mnist.test_labels[:500]).float().mean() > 0.95


def test_a_loaded_run_infers_in_the_layout_it_trained_in(trained_run, tmp_path, mnist):
    """evaluate, predict, ensemble, report and serve all load through load_run: channels-last there is
    what makes them as fast as the training loop's own validation (2x on a CPU)."""
    import shutil

    from mnistkit.models import infer

    def deep_conv_weight(model):  # with one input channel both layouts are the same strides
        return next(m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)

    model = mnistkit.load_run(trained_run).model
    weight = deep_conv_weight(model)
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    contiguous = mnistkit.load_run(trained_run).model.to(memory_format=torch.contiguous_format)
    images = mnist.test_images[:64]
    torch.testing.assert_close(infer(model, images), infer(contiguous, images), atol=1e-4, rtol=1e-4)

    plain = tmp_path / "plain"
    shutil.copytree(trained_run, plain)
    config = json.loads((plain / "config.json").read_text())
    (plain / "config.json").write_text(json.dumps({**config, "channels_last": False}))
    assert deep_conv_weight(mnistkit.load_run(plain).model).is_contiguous()


def test_checkpoint_errors_are_explained(trained_run, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(trained_run, bad)
    (bad / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match=r"model.safetensors: not a valid safetensors file"):
        mnistkit.load(bad)
    shutil.copy(trained_run / "model.safetensors", bad / "model.safetensors")
    config = json.loads((bad / "config.json").read_text())
    config["model"] = "lenet"
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=rf"saved for model '{make_config('fast').model}' but config.json says 'lenet'"):
        mnistkit.load(bad)
    model = mnistkit.create_model("lenet")
    weights, _ = runs.load_tensors(trained_run / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"do not fit model 'lenet'.*missing"):
        runs.load_state_checked(model, weights, "w", "lenet")
    (bad / "config.json").write_text("{oops")
    with pytest.raises(CheckpointError, match=r"config.json: invalid JSON"):
        mnistkit.load(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        mnistkit.load(tmp_path / "missing")


def test_framing_travels_with_the_weights_and_a_bad_one_is_named(trained_run, tmp_path):
    import shutil

    assert mnistkit.load(trained_run).framing == DIGIT_FRAMING  # measured on its MNIST training images
    weights, meta = runs.load_tensors(trained_run / "model.safetensors")
    assert json.loads(meta["framing"]) == {"box": 20, "centre": "mass"}
    other = tmp_path / "other"
    shutil.copytree(trained_run, other)
    for framing, expected in (({"box": 28, "centre": "box"}, Framing(28, "box")), (None, DIGIT_FRAMING)):
        kept = {k: v for k, v in meta.items() if k != "framing"}
        runs.save_tensors(other / "model.safetensors", weights, {**kept, **({"framing": json.dumps(framing)}
                                                                            if framing else {})})
        assert mnistkit.load(other).framing == expected  # a file from before framing was recorded: MNIST's
    runs.save_tensors(other / "model.safetensors", weights, {**meta, "framing": '{"box": 40, "centre": "box"}'})
    with pytest.raises(CheckpointError, match=r"model.safetensors: metadata field 'framing'.*found .*40"):
        mnistkit.load(other)


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "metrics.json"
    fileio.atomic_write_json(target, {"a": 1})

    with pytest.raises(TypeError):
        fileio.atomic_write_json(target, {"a": object()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_config_validation_and_schedules():
    with pytest.raises(MnistkitError, match="optimizer must be one of"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(MnistkitError, match="unknown fields"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(MnistkitError, match=r"focus_fraction must be in \(0, 1\], found 0"):
        TrainConfig(focus_fraction=0)
    cfg = TrainConfig(lr=1.0, schedule="onecycle", epochs=10)
    lrs = [learning_rate(cfg, s / 1000, 1) for s in range(1000)]
    assert lrs[0] < 0.1 and max(lrs) == pytest.approx(1.0, abs=0.01) and lrs[-1] < 0.01
    step = TrainConfig(lr=1.0, schedule="step", epochs=9, step_gamma=0.1)
    assert learning_rate(step, 0.0, 1) == 1.0 and learning_rate(step, 0.4, 4) == pytest.approx(0.1)
    assert learning_rate(TrainConfig(lr=1.0, schedule="step", step_every=2), 0.0, 3) == pytest.approx(0.1)
    assert make_config("lenet").momentum == 0.5 and make_config("lenet", epochs=1).epochs == 1


def test_time_budget_stops_training(small_mnist_dir, tmp_path):
    result = mnistkit.train(small_config(small_mnist_dir, tmp_path / "b", epochs=50, budget_seconds=1.5, model="mknet-s"))
    assert 1 <= result.metrics["epochs"] < 50
    assert 1.5 <= result.metrics["train_seconds"] < 6
    assert result.metrics["val_accuracy"] > 0.5


def test_the_lr_anneals_by_whichever_of_budget_and_epochs_ends_the_run(small_mnist_dir, tmp_path):
    assert schedule_progress(50, 100, elapsed=10, budget=100) == 0.5  # the epochs end first
    assert schedule_progress(10, 100, elapsed=50, budget=100) == 0.5  # the clock ends first
    assert schedule_progress(10, 100, elapsed=500, budget=0) == 0.1  # no budget: steps alone
    assert schedule_progress(10, 100, elapsed=150, budget=100) == 1.0
    # A budget far beyond what two epochs take: the run stops after its epochs with the lr annealed,
    # not stranded in the warm-up as when the schedule followed the clock alone.
    cfg = small_config(small_mnist_dir, tmp_path / "b", epochs=2, budget_seconds=1000)
    result = mnistkit.train(cfg)
    last = json.loads((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[-1])
    assert result.metrics["epochs"] == 2 and last["lr"] < 0.01 * cfg.lr
    assert last["progress"] == 1.0  # each epoch's row says how far through its schedule the run is (tune judges by it)


def test_a_deadline_keeps_the_time_that_scoring_after_training_needs(small_mnist_dir, mnist, tmp_path, monkeypatch):
    # 100 s in all, 20 gone, 10 to score at the end; each 10 s of training costs 5 s more of validation.
    assert training_seconds_left(100, 20, 10, epoch_train=10, epoch_other=5) == pytest.approx((100 - 20 - 10 - 5) / 1.5)
    assert training_seconds_left(100, 95, 10, epoch_train=10, epoch_other=5) == 0.0

    # The passes priced are an upper bound of those train makes after its last epoch, each view counted.
    images = {"n": 0}
    real_logits = Classifier.logits

    def counting_logits(self, x):
        if not self.training:
            images["n"] += len(x) * (2 if self.tta_hflip else 1)
        return real_logits(self, x)

    monkeypatch.setattr(Classifier, "logits", counting_logits)
    cfg = small_config(small_mnist_dir, tmp_path / "tta", epochs=1, try_shift_tta=True, augment={"hflip": 0.5})
    val_passes, test_passes = passes_after_training(cfg, amp=False)
    assert (val_passes, test_passes) == (1 + 2 + 10, 10)
    result = mnistkit.train(cfg)
    after_training = images["n"] - result.metrics["val_images"]  # the one epoch's validation
    n_val, n_test = result.metrics["val_images"], result.metrics["test_images"]
    counting_macs = test_passes  # metrics' macs_per_image: one image through every view kept
    assert n_val + n_test <= after_training <= val_passes * n_val + test_passes * n_test + counting_macs
    assert passes_after_training(TrainConfig(), amp=True) == (2, 1)  # plain data: the fp32 re-validation only

    # A deadline already past when the first epoch ends: training stops there, and says how far it got.
    result = mnistkit.train(small_config(small_mnist_dir, tmp_path / "late", epochs=5, deadline_seconds=0.01))
    assert result.metrics["epochs"] == 1
    assert result.metrics["train_budget_seconds"] == result.metrics["train_seconds"]
    # A generous one changes nothing: every epoch runs.
    result = mnistkit.train(small_config(small_mnist_dir, tmp_path / "early", epochs=2, deadline_seconds=1000))
    assert result.metrics["epochs"] == 2 and result.metrics["train_budget_seconds"] > result.metrics["train_seconds"]
    with pytest.raises(MnistkitError, match="deadline_seconds must be >= 0"):
        TrainConfig(deadline_seconds=-1)

    # A bf16 run validates in bf16 but scores in fp32: it times one fp32 pass to price scoring, once.
    train_module = sys.modules["mnistkit.train"]
    monkeypatch.setattr(train_module, "native_cpu_bf16", lambda: True)
    timed = []
    real_timing = train_module.fp32_seconds_per_image
    monkeypatch.setattr(train_module, "fp32_seconds_per_image",
                        lambda model, images, cfg: timed.append(len(images)) or real_timing(model, images, cfg))
    tiny = write_idx_dataset(tmp_path / "tiny", mnist.train_images[:1300].numpy(), mnist.train_labels[:1300].numpy(),
                             mnist.test_images[:300].numpy(), mnist.test_labels[:300].numpy())  # bf16 is slow where emulated
    result = mnistkit.train(small_config(tiny, tmp_path / "bf16", epochs=3, amp=True, deadline_seconds=1000, val_size=300))
    assert result.metrics["train_dtype"] == "bfloat16" and result.metrics["epochs"] == 3 and timed == [300]


def test_the_weight_average_warms_up_so_a_short_run_is_not_stuck_at_its_start(small_mnist_dir, tmp_path):
    live = torch.nn.Linear(2, 1, bias=False)
    ema = EMA(live, decay=0.999)
    with torch.no_grad():
        live.weight.fill_(1.0)
        ema.model.weight.fill_(0.0)
    ema.update(live, step=0)  # the first update's decay is 1/10: the average moves most of the way
    assert ema.model.weight.flatten().tolist() == pytest.approx([0.9, 0.9])
    assert ema.decay_at(10**6) == 0.999  # and later the decay asked for
    # 2 epochs of about 40 steps each: with a fixed 0.999 the averaged weights would still be 92% the
    # random initial ones (validation near chance).
    result = mnistkit.train(small_config(small_mnist_dir, tmp_path / "ema", epochs=2, ema_decay=0.999))
    assert result.metrics["val_accuracy"] > 0.9


def test_amp_trains_in_bf16_where_the_cpu_has_it(small_mnist_dir, tmp_path):
    native = native_cpu_bf16()
    assert autocast_dtype(TrainConfig(amp=False), torch.device("cpu")) is None
    assert autocast_dtype(TrainConfig(amp=True), torch.device("cpu")) == (torch.bfloat16 if native else None)
    fp32 = mnistkit.train(small_config(small_mnist_dir, tmp_path / "fp32", epochs=2, device="cpu"))
    amp = mnistkit.train(small_config(small_mnist_dir, tmp_path / "amp", epochs=2, device="cpu", amp=True))
    assert fp32.metrics["train_dtype"] == "float32"
    assert amp.metrics["train_dtype"] == ("bfloat16" if native else "float32")
    weights, _ = runs.load_tensors(tmp_path / "amp" / "model.safetensors")
    assert all(w.dtype == torch.float32 for w in weights.values() if w.is_floating_point())  # autocast, not .half()
    assert amp.metrics["val_accuracy"] > 0.8 and abs(amp.metrics["val_accuracy"] - fp32.metrics["val_accuracy"]) < 0.05
    # Epochs are validated in the training dtype, but the reported accuracy is the saved fp32 model's.
    assert amp.metrics["val_accuracy"] == pytest.approx(evaluate_run(tmp_path / "amp", split="val").accuracy)
    images, labels = amp.splits().part("val")
    in_bf16 = validate(amp.model, images, labels, amp.config, Ranks(), torch.bfloat16)
    in_fp32 = validate(amp.model, images, labels, amp.config, Ranks())
    assert in_bf16 != in_fp32 and in_bf16 == pytest.approx(in_fp32, abs=0.01)  # bf16 ran, and agrees


def test_sharpness_aware_gradients_are_taken_uphill_and_leave_weights_and_statistics_as_they_were():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 26 * 26, 10))
    images, labels = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    cfg = TrainConfig(sam_rho=0.05)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    moved = copy.deepcopy(model)
    grads = [p.grad for p in model.parameters()]
    norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))
    with torch.no_grad():
        for p, g in zip(moved.parameters(), grads):
            p.add_(g * 0.05 / norm)
    moved.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(moved(images), labels).backward()

    sharpness_aware_gradients(model, optimizer, images, labels, cfg, amp_dtype=None)

    for name, value in model.state_dict().items():  # weights back where they were; running statistics untouched
        assert torch.equal(value, weights[name]), name
    for p, q in zip(model.parameters(), moved.parameters()):  # the gradient is the moved weights' one
        assert torch.allclose(p.grad, q.grad, atol=1e-6)
    assert not torch.allclose(model[0].weight.grad, grads[0])
    with pytest.raises(MnistkitError, match="sam_rho must be >= 0"):
        TrainConfig(sam_rho=-0.1)


def test_clean_epochs_train_the_last_epochs_on_unaugmented_images(small_mnist_dir, tmp_path, monkeypatch):
    train_module = sys.modules["mnistkit.train"]
    real_augment, real_save = train_module.augment_batch, runs.save_checkpoint
    augmented_per_epoch = [0]

    def counting_augment(*args, **kwargs):
        augmented_per_epoch[-1] += 1
        return real_augment(*args, **kwargs)

    def save_and_start_counting_the_next_epoch(*args, **kwargs):
        real_save(*args, **kwargs)
        augmented_per_epoch.append(0)

    monkeypatch.setattr(train_module, "augment_batch", counting_augment)
    monkeypatch.setattr(runs, "save_checkpoint", save_and_start_counting_the_next_epoch)
    mnistkit.train(small_config(small_mnist_dir, tmp_path / "run", epochs=3, clean_epochs=2,
                                augment={"rotate_degrees": 10, "translate": 0.1}))
    assert augmented_per_epoch == [5000 // 128, 0, 0, 0]
    with pytest.raises(MnistkitError, match="clean_epochs must be >= 0"):
        TrainConfig(clean_epochs=-1)
