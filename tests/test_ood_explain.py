""""Not a digit" (the energy score and its validation threshold) and "why" (attribution maps)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mnistkit.explain import integrated_gradients
from mnistkit.metrics import auroc, energy_score, evaluate_logits, rejection_threshold
from mnistkit.models import infer
from mnistkit.predict import predict_images, rejection
from mnistkit.runs import load_run
from mnistkit.serve.app import create_app

FASHION = np.load(Path(__file__).parent / "data" / "fashion-mnist-500.npz")["images"]


@pytest.fixture(scope="module")
def run(trained_run):
    return load_run(trained_run)


def test_threshold_refuses_the_chosen_share_of_validation_digits(run):
    assert run.metrics["ood_score"] == "energy" and run.model.ood_threshold == run.metrics["ood_threshold"]
    assert 0.005 <= run.metrics["ood_val_false_rejection"] <= 0.015  # ood_false_rejection = 0.01
    splits = run.splits()
    val = energy_score(infer(run.model, splits.val_images))
    assert rejection_threshold(val, 0.01) == pytest.approx(run.model.ood_threshold, abs=1e-4)


def test_digits_accepted_and_fashion_images_rejected(run, mnist):
    """Rates measured by bench/ood.py on this recipe (fast, 1 epoch), with room for seed-to-seed spread."""
    digits = energy_score(infer(run.model, mnist.test_images))
    clothes = energy_score(infer(run.model, FASHION))
    assert (digits > run.model.ood_threshold).float().mean() < 0.03  # about 1% of test digits refused
    assert (clothes > run.model.ood_threshold).float().mean() > 0.75  # most clothes refused
    assert auroc(digits, clothes) > 0.95


def test_metrics_of_scores():
    inside = torch.arange(100.0)
    assert rejection_threshold(inside, 0.1) == pytest.approx(89.1)
    assert auroc(inside, inside + 1000) == 1.0 and auroc(inside, inside) == 0.5
    assert energy_score(torch.tensor([[0.0, 0.0]])).item() == pytest.approx(-np.log(2))
    with pytest.raises(ValueError, match="false_rejection"):
        rejection_threshold(inside, 0.0)


def test_predict_and_api_say_not_a_digit(run, mnist, tmp_path):
    digit, coat = tmp_path / "digit.png", tmp_path / "coat.png"
    Image.fromarray(mnist.test_images[0].numpy()).save(digit)
    clothes = energy_score(infer(run.model, FASHION))
    clearest = int(clothes.argmax())  # the Fashion image this model finds least like a digit
    Image.fromarray(FASHION[clearest]).save(coat)
    answers = predict_images(run.model, [digit, coat])
    assert answers[0].rejected is None and answers[0].label == str(int(mnist.test_labels[0]))
    assert answers[1].rejected.startswith("not a digit (score ")
    assert json.loads(json.dumps(answers[1].to_dict()))["ood_score"] > run.model.ood_threshold
    with TestClient(create_app(run.run_dir)) as client:
        body = client.post("/api/predict", json={"pixels": (FASHION[clearest] / 255).tolist()}).json()
        assert body["rejected"].startswith("not a digit") and body["ood_score"] > client.get("/api/model").json()["ood_threshold"]
        body = client.post("/api/predict", json={"pixels": mnist.test_images[0].tolist()}).json()
        assert body["rejected"] is None and "attribution" not in body


def test_rejection_names_the_item_or_says_known_classes(run):
    model = run.model
    saved = model.item, model.ood_threshold
    try:
        model.ood_threshold = 1.0
        assert rejection(model, 0.5) is None and rejection(model, 2.0).startswith("not a digit")
        model.item = ""
        assert rejection(model, 2.0).startswith("not one of the known classes")
        model.ood_threshold = None
        assert rejection(model, 1e9) is None  # a model without a threshold never abstains
    finally:
        model.item, model.ood_threshold = saved


def test_attribution_maps_point_at_the_ink_that_decided(run, mnist):
    images = mnist.test_images[:100]
    result = integrated_gradients(run.model, images)
    assert result.maps.shape == (100, 28, 28) and torch.equal(result.targets, infer(run.model, images).argmax(1))
    # completeness: the map adds up to logit(image) - logit(black image)
    logits, black = infer(run.model, images), infer(run.model, torch.zeros(1, 28, 28))
    expected = logits.gather(1, result.targets[:, None])[:, 0] - black[0, result.targets]
    assert torch.allclose(result.maps.sum((1, 2)), expected, atol=0.05 * expected.abs().max().item())
    ink = images.float() / 255 > 0.1
    on_ink = (result.maps.abs() * ink).sum((1, 2)) / result.maps.abs().sum((1, 2))
    assert on_ink.mean() > 0.9  # the map's mass lies on the ink
    # deleting the 30 most positive pixels hurts the answer far more than deleting 30 random ink pixels
    x = images.float().reshape(100, -1) / 255
    top = x.clone().scatter_(1, result.maps.reshape(100, -1).topk(30, 1).indices, 0)
    generator = torch.Generator().manual_seed(0)
    random = x.clone()
    for row in random:
        lit = (row > 0.1).nonzero().flatten()
        row[lit[torch.randperm(len(lit), generator=generator)[:30]]] = 0
    def confidence(batch):
        return infer(run.model, batch.reshape(-1, 28, 28)).softmax(1).gather(1, result.targets[:, None]).mean()
    assert confidence(top) < confidence(random) - 0.2


def test_api_explains_on_request(run, mnist):
    with TestClient(create_app(run.run_dir)) as client:
        body = client.post("/api/predict?explain=1", json={"pixels": mnist.test_images[1].tolist()}).json()
    amap = np.array(body["attribution"])
    assert body["attribution_method"] == "integrated-gradients" and amap.shape == (28, 28)
    ink = mnist.test_images[1].numpy() > 25
    assert np.abs(amap)[ink].sum() > 0.9 * np.abs(amap).sum()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), classes=st.integers(2, 8))
def test_balanced_accuracy_is_scikit_learns_on_imbalanced_labels(seed, classes):
    from sklearn.metrics import balanced_accuracy_score

    generator = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 40, (classes,), generator=generator)  # every class present, in unequal numbers
    labels = torch.repeat_interleave(torch.arange(classes), sizes)
    logits = torch.randn(len(labels), classes, generator=generator) + 2 * torch.nn.functional.one_hot(labels, classes)
    result = evaluate_logits(logits, labels, tuple(map(str, range(classes))))
    expected = balanced_accuracy_score(labels.numpy(), logits.argmax(1).numpy())
    assert result.balanced_accuracy == pytest.approx(expected)
    assert result.to_dict()["balanced_accuracy"] == pytest.approx(expected)
