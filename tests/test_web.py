"""`mnistkit export --format web`: the static site in Chromium, with no mnistkit server behind it."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.browser import browser_page, draw_digit, static_server

from mnistkit.data.preprocess import Framing, mnistify, open_image
from mnistkit.errors import MnistkitError
from mnistkit.export import ORT_WEB_FILES, ORT_WEB_URL, export, page_dir
from mnistkit.models import infer
from mnistkit.runs import load_run

ORT_DIST = Path(__file__).parent / "web" / "node_modules" / "onnxruntime-web" / "dist"


@pytest.fixture(scope="module")
def ort_dist() -> Path:
    if not (ORT_DIST / ORT_WEB_FILES[-1]).exists():
        pytest.fail(f"{ORT_DIST} is missing: ./setup.sh installs onnxruntime-web there from the npm registry")
    return ORT_DIST


@pytest.fixture(scope="module")
def site(trained_run, ort_dist, tmp_path_factory):
    """The exported folder behind a plain static file server, as any static host would serve it."""
    out = tmp_path_factory.mktemp("site") / "web"
    info = export(trained_run, "web", out, ort_dir=ort_dist)
    assert info["max_abs_difference"] < 1e-4
    with static_server(out) as url:
        yield out, url


def test_export_writes_a_self_contained_site(site, trained_run):
    out, _ = site
    assert {p.name for p in out.iterdir()} == {"index.html", "static", "ort", "model.onnx", "model.json"}
    assert sorted(p.name for p in (out / "ort").iterdir()) == sorted(ORT_WEB_FILES)
    page = (out / "index.html").read_text()
    assert 'src="ort/ort.wasm.min.js"' in page and ORT_WEB_URL not in page
    info = json.loads((out / "model.json").read_text())
    run = load_run(trained_run)
    assert info["classes"] == list(run.classes) and info["ood_threshold"] == run.model.ood_threshold
    assert info["framing"] == {"box": 20, "centre": "mass"}  # how the page frames a drawing for this model
    # one page for both: the exported app.js is serve's own file
    assert (out / "static" / "app.js").read_bytes() == (page_dir() / "app.js").read_bytes()


def test_export_without_ort_dir_pins_the_published_package(trained_run, tmp_path):
    export(trained_run, "web", tmp_path / "site", check_images=10)
    page = (tmp_path / "site" / "index.html").read_text()
    assert f'src="{ORT_WEB_URL}ort.wasm.min.js"' in page and "@1." in ORT_WEB_URL
    assert not (tmp_path / "site" / "ort").exists()


def test_export_refuses_bad_ort_dir_and_foreign_folders(trained_run, tmp_path):
    with pytest.raises(MnistkitError, match="missing ort.wasm.min.js"):
        export(trained_run, "web", tmp_path / "a", ort_dir=tmp_path)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(MnistkitError, match="not an earlier web export"):
        export(trained_run, "web", foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"  # nothing lost
    with pytest.raises(MnistkitError, match="only applies to --format web"):
        export(trained_run, "onnx", tmp_path / "m.onnx", ort_dir=tmp_path)


def test_the_browser_reads_drawn_digits_like_pytorch(site, trained_run, mnist):
    """12 test digits drawn stroke by stroke on the exported page, answered by onnxruntime-web in the browser (20 took
    85 s of a suite that must fit in 10 minutes on the slowest CPU seen)."""
    _, url = site
    run = load_run(trained_run)
    correct = 0
    with browser_page() as page:
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_function("window.mnistkit && window.mnistkit.ready", timeout=30000)
        assert "onnxruntime-web" in page.text_content("#model-info") and "trained on mnist" in page.text_content("#model-info")
        for index in range(12):
            label = str(int(mnist.test_labels[index]))
            page.click("#clear")
            draw_digit(page, mnist.test_images[index].numpy())
            page.wait_for_function("window.mnistkit.last && !window.mnistkit.pending()", timeout=15000)
            last = page.evaluate("window.mnistkit.last")
            correct += last["label"] == label and page.text_content("#label") == label
            # the browser's probabilities are PyTorch's on the same 28x28 input
            x = torch.tensor(last["input"], dtype=torch.float32).reshape(1, 28, 28)
            expected = infer(run.model, x).softmax(1)[0].numpy()
            assert np.abs(np.array(last["probabilities"]) - expected).max() < 1e-4
            # and that input is what Python's mnistify makes of the same drawing
            png = base64.b64decode(page.evaluate("document.getElementById('pad').toDataURL('image/png')").split(",")[1])
            assert np.abs(mnistify(open_image(png)) - x[0].numpy()).max() < 1e-5
            if index < 3:  # a model of clothes frames the same drawing Fashion-MNIST's way, alike in both languages
                filled = page.evaluate("(() => { const pad = document.getElementById('pad');"
                                       "const rgba = pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data;"
                                       "return Array.from(window.mnistkit.mnistify(window.mnistkit.grayFromRGBA(rgba, "
                                       "pad.width * pad.height), pad.width, pad.height, {box: 28, centre: 'box'})); })()")
                python = mnistify(open_image(png), framing=Framing(box=28, centre="box"))
                assert np.abs(np.array(filled).reshape(28, 28) - python).max() < 1e-5
            if index == 0:  # the heat map: an occlusion map over the input, drawn on the page
                assert last["method"] == "occlusion" and len(last["attribution"]) == 784
                red = page.evaluate("Array.from(document.getElementById('why').getContext('2d')"
                                    ".getImageData(0, 0, 28, 28).data).filter((v, i) => i % 4 === 1 && v < 128).length")
                assert red > 20
        assert not errors, errors
    assert correct >= 11, f"{correct}/12 drawn digits read right"
