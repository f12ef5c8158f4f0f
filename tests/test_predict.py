import json

import numpy as np
import pytest
from PIL import Image

import mnistkit
from mnistkit.predict import predict_images


def save_digit_photo(path, digit: np.ndarray, inverted: bool, canvas=(200, 300), at=(10, 150), scale=(5, 3)):
    """Paint a 28x28 MNIST digit into a bigger picture, as a phone photo of paper would look."""
    ink = np.kron(digit.astype(np.float32) / 255, np.ones(scale))
    page = np.zeros(canvas, np.float32)
    page[at[0] : at[0] + ink.shape[0], at[1] : at[1] + ink.shape[1]] = ink
    if inverted:
        page = 1 - page  # dark ink on light paper
    Image.fromarray((page * 255).astype(np.uint8)).convert("RGB").save(path)


@pytest.fixture(scope="module")
def model(trained_run):
    return mnistkit.load(trained_run)


def test_inverted_and_off_centre_digits(model, mnist, tmp_path):
    paths, labels = [], []
    for i in range(12):
        digit, label = mnist.test_images[i].numpy(), int(mnist.test_labels[i])
        path = tmp_path / f"d{i}.{'png' if i % 2 else 'jpg'}"
        save_digit_photo(path, digit, inverted=i % 3 != 0, at=(5 + i * 4, 10 + i * 14))
        paths.append(path)
        labels.append(str(label))
    results = predict_images(model, paths)
    assert all(r.error is None for r in results)
    correct = sum(r.label == t for r, t in zip(results, labels))
    assert correct >= 11, [(r.label, t) for r, t in zip(results, labels)]
    r = results[0]
    assert len(r.top3) == 3 and r.top3[0][1] >= r.top3[1][1] and abs(sum(r.probabilities) - 1) < 1e-4


def test_bad_files_get_their_own_errors_and_the_rest_still_run(model, mnist, tmp_path):
    good = tmp_path / "good.png"
    save_digit_photo(good, mnist.test_images[0].numpy(), inverted=True)
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    arr = tmp_path / "digit.npy"
    np.save(arr, mnist.test_images[1].numpy())
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((27, 28)))
    results = predict_images(model, [good, text, blank, tmp_path / "missing.png", arr, wrong])
    errors = [r.error for r in results]
    assert errors[0] is None and errors[4] is None
    assert "notes.png: not an image" in errors[1]
    assert "blank.png: the image is empty" in errors[2]
    assert "missing.png: file not found" in errors[3]
    assert "expected a 28x28 array, found shape (27, 28)" in errors[5]
    assert results[0].label == str(int(mnist.test_labels[0])) and results[4].label == str(int(mnist.test_labels[1]))
    json.dumps([r.to_dict() for r in results])  # machine-readable as promised


def test_explain_draws_what_the_model_was_given_and_why(model, mnist, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mnistkit.cli import app
    from mnistkit.predict import explain_predictions

    for i in range(3):
        save_digit_photo(tmp_path / f"d{i}.png", mnist.test_images[i].numpy(), inverted=True)
    (tmp_path / "notes.png").write_text("not an image")
    results = predict_images(model, [tmp_path / "d0.png", tmp_path / "notes.png"])
    assert results[0].input.shape == (28, 28) and results[1].input is None  # what was given, where anything was
    assert explain_predictions(model, results[1:], tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["predict", "d0.png", "d1.png", "d2.png", "--explain", "why.png"])
    assert result.exit_code == 0, result.output
    assert "why: why.png" in result.output
    with Image.open(tmp_path / "why.png") as figure:  # three pictures, each beside its map, in one row
        assert figure.format == "PNG" and figure.width > 3 * figure.height


def test_a_long_file_name_keeps_the_end_that_tells_it_from_its_neighbours():
    from mnistkit.predict import short_name

    names = [short_name(f"scan_of_digit_number_{i:03d}.png") for i in (1, 2)]
    assert names == ["scan_of…er_001.png", "scan_of…er_002.png"]
    assert short_name("d0.png") == "d0.png" and len(short_name("x" * 40 + ".jpeg")) == 18
