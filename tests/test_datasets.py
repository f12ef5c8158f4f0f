"""Every dataset format end to end (train, evaluate, predict) on small files built from real digits."""

import hashlib
import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from tests.conftest import write_idx_dataset

import mnistkit
from mnistkit.data.datasets import load_dataset
from mnistkit.data.download import download
from mnistkit.data.preprocess import Framing, mnistify
from mnistkit.errors import DataFormatError, MnistkitError
from mnistkit.evaluate import evaluate_on_dataset, evaluate_run
from mnistkit.models import infer
from mnistkit.predict import predict_images

CLASSES = ("zero", "one", "seven")
DIGITS = (0, 1, 7)


def digits_of(mnist, digit, n, start=0):
    return mnist.train_images[mnist.train_labels == digit][start : start + n].numpy()


def quick_train(dataset, data_dir, out, epochs=2, **options):
    cfg = mnistkit.make_config("fast", dataset=dataset, data_dir=str(data_dir), out=str(out), val_size=60,
                               batch_size=32, epochs=epochs, progress=False, dataset_options=options)
    return mnistkit.train(cfg)


def check_run(result, tmp_path, image):
    assert result.metrics["test_accuracy"] > 0.8, result.metrics
    evaluation = evaluate_run(result.run_dir)
    assert evaluation.confusion.sum() == result.metrics["test_images"]
    Image.fromarray(255 - image).save(tmp_path / "probe.png")  # dark on light, like a scan
    [pred] = predict_images(mnistkit.load(result.run_dir), [tmp_path / "probe.png"])
    assert pred.error is None and pred.label in result.model.classes


@pytest.mark.parametrize("compress", [True, False])
def test_idx_directory_gz_and_raw(mnist, tmp_path, compress):
    x, y = mnist.train_images[:1200].numpy(), mnist.train_labels[:1200].numpy()
    d = write_idx_dataset(tmp_path / "idx", x, y, mnist.test_images[:300].numpy(), mnist.test_labels[:300].numpy(),
                          compress=compress)
    result = quick_train("idx", d, tmp_path / "run")
    assert result.metrics["test_accuracy"] > 0.7 and result.model.classes == tuple("0123456789")


def test_pictures_are_framed_as_the_training_images_were(mnist, tmp_path):
    # Images that fill the frame, their box centred, as Fashion-MNIST's clothes do: predict must frame a picture that
    # way too, not shrink it into MNIST's 20-pixel box.
    fill = Framing(box=28, centre="box")
    refit = lambda x: (np.stack([mnistify(i / 255.0, framing=fill) for i in x.numpy()]) * 255).round().astype(np.uint8)
    train_x, test_x = refit(mnist.train_images[:1200]), refit(mnist.test_images[:100])
    d = write_idx_dataset(tmp_path / "idx", train_x, mnist.train_labels[:1200].numpy(), test_x,
                          mnist.test_labels[:100].numpy())
    result = quick_train("idx", d, tmp_path / "run")
    model = mnistkit.load(result.run_dir)
    assert model.framing == fill
    paths = []
    for i, (image, label) in enumerate(zip(test_x[:30], mnist.test_labels[:30].tolist())):
        paths.append(tmp_path / "pictures" / str(label) / f"{i}.png")
        paths[-1].parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - image).save(paths[-1])  # as a user would save them: dark on light
    predictions = predict_images(model, paths)
    expected = infer(model, torch.from_numpy(test_x[:30]).float() / 255).softmax(1).numpy()
    assert [p.index for p in predictions] == expected.argmax(1).tolist()
    assert np.abs(np.array([p.probabilities for p in predictions]) - expected).mean() < 0.01
    # evaluate frames a folder of them the same way: its score is the model's on the images themselves
    evaluation, _ = evaluate_on_dataset(result.run_dir, "folder", tmp_path / "pictures", split="all")
    right = sum(p.index == model.classes.index(path.parent.name) for p, path in zip(predictions, paths))
    assert evaluation.accuracy == pytest.approx(right / len(paths))


def write_npz(directory, prefix, arrays):
    directory.mkdir(exist_ok=True)
    for part, array in zip(("train-imgs", "train-labels", "test-imgs", "test-labels"), arrays):
        np.savez_compressed(directory / f"{prefix}-{part}.npz", array)
    return directory


def test_kuzushiji_numpy_files(mnist, tmp_path):
    x, y = mnist.train_images[:600].numpy(), mnist.train_labels[:600].numpy()
    tx, ty = mnist.test_images[:100].numpy(), mnist.test_labels[:100].numpy()
    kmnist = load_dataset("kmnist", write_npz(tmp_path / "kmnist", "kmnist", (x, y, tx, ty)))
    assert kmnist.classes[0] == "o" and len(kmnist.classes) == 10
    assert torch.equal(kmnist.train_images, torch.from_numpy(x)) and torch.equal(kmnist.test_labels, torch.from_numpy(ty))
    k49 = load_dataset("k49", write_npz(tmp_path / "k49", "k49", (x, np.arange(600) % 49, tx, ty)))
    assert len(k49.classes) == 49 and k49.classes[-1] == "iteration mark" and int(k49.train_labels.max()) == 48
    result = quick_train("k49", tmp_path / "k49", tmp_path / "run", epochs=1)
    assert result.model.classes == k49.classes and result.metrics["test_images"] == 100


def test_kuzushiji_file_errors_name_the_file(mnist, tmp_path):
    x, y = mnist.train_images[:60].numpy(), mnist.train_labels[:60].numpy()
    with pytest.raises(DataFormatError, match=r"k49: missing k49-train-imgs.npz, .*k49-test-labels.npz in .*empty"):
        load_dataset("k49", tmp_path / "empty")
    d = write_npz(tmp_path / "k", "k49", (x, y, x, y + 49))
    with pytest.raises(DataFormatError, match=r"k49-test-labels.npz: labels must lie in 0..48 .* found \d+..5\d"):
        load_dataset("k49", d)
    write_npz(d, "k49", (x[:, :20], y, x, y))
    with pytest.raises(DataFormatError, match=r"k49-train-imgs.npz: expected uint8 images of 28x28, found uint8 of "
                                              r"shape \(60, 20, 28\)"):
        load_dataset("k49", d)
    write_npz(d, "k49", (x, y[:50], x, y))
    with pytest.raises(DataFormatError, match="train split has 60 images in k49-train-imgs.npz but 50 labels"):
        load_dataset("k49", d)
    data = (d / "k49-train-imgs.npz").read_bytes()
    (d / "k49-train-imgs.npz").write_bytes(data[: len(data) // 2])  # an interrupted download
    with pytest.raises(DataFormatError, match=r"k49-train-imgs.npz: not a readable .npz file \(BadZipFile"):
        load_dataset("k49", d)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:  # where the compressed array starts
        entry = archive.infolist()[0]
    lengths = data[entry.header_offset + 26 : entry.header_offset + 30]  # of the local header's name and extra field
    start = entry.header_offset + 30 + int.from_bytes(lengths[:2], "little") + int.from_bytes(lengths[2:], "little")
    damaged = bytearray(data)
    damaged[start] = 0xFF  # a deflate block of a type that does not exist
    (d / "k49-train-imgs.npz").write_bytes(bytes(damaged))
    with pytest.raises(DataFormatError, match=r"k49-train-imgs.npz: not a readable .npz file \(error: .*invalid block"):
        load_dataset("k49", d)
    (d / "k49-train-imgs.npz").write_bytes(np.lib.format.header_data_from_array_1_0(x)["descr"].encode())
    with pytest.raises(DataFormatError, match=r"k49-train-imgs.npz: not a readable .npz file"):
        load_dataset("k49", d)


def test_emnist_split_upright_with_the_mapping_names(mnist, tmp_path):
    x, y = mnist.train_images[:300].numpy(), mnist.train_labels[:300].numpy()
    tx, ty = mnist.test_images[:60].numpy(), mnist.test_labels[:60].numpy()
    keep, test_keep = y < 3, ty < 3
    # the letters split as published: labels 1..N, images stored transposed
    d = write_idx_dataset(tmp_path / "emnist", x[keep].transpose(0, 2, 1), y[keep] + 1, tx[test_keep].transpose(0, 2, 1),
                          ty[test_keep] + 1)
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (d / f"{stem}.gz").rename(d / f"emnist-letters-{stem}.gz")
    with pytest.raises(DataFormatError, match="emnist: missing emnist-letters-mapping.txt in .*gzip.zip"):
        load_dataset("emnist", d, split="letters")
    (d / "emnist-letters-mapping.txt").write_text("1 65 97\n2 66 98\n3 67 99\n")
    data = load_dataset("emnist", d, split="letters")
    assert data.classes == ("Aa", "Bb", "Cc")
    assert torch.equal(data.train_images, torch.from_numpy(x[keep]))  # upright again
    assert torch.equal(data.test_labels, torch.from_numpy(ty[test_keep]).long())
    # the commands that read a dataset take its options: --option split=letters (not their own --split)
    from typer.testing import CliRunner

    from mnistkit.cli import app
    out = tmp_path / "letters.png"
    shown = CliRunner().invoke(app, ["show", "--dataset", "emnist", "--data-dir", str(d), "--option", "split=letters",
                                     "--split", "test", "--n", "6", "--out", str(out)])
    assert shown.exit_code == 0 and out.stat().st_size > 1000, shown.output
    bad = CliRunner().invoke(app, ["show", "--dataset", "emnist", "--data-dir", str(d), "--option", "split"])
    assert isinstance(bad.exception, MnistkitError) and "--option expects NAME=VALUE" in str(bad.exception)
    (d / "emnist-digits-mapping.txt").write_text("".join(f"{i} {48 + i}\n" for i in range(10)))
    with pytest.raises(DataFormatError, match=r"emnist: missing emnist-digits-train-images-idx3-ubyte.gz .* or pass "
                                              r"--data-dir\."):
        load_dataset("emnist", d, split="digits")
    with pytest.raises(DataFormatError, match="unknown split 'greek'; the splits are balanced, byclass"):
        load_dataset("emnist", d, split="greek")
    (d / "emnist-letters-mapping.txt").write_text("1 65 97\n2 66\n")
    with pytest.raises(DataFormatError, match=r"mapping.txt: has no line for label\(s\) \[3\] of the train split"):
        load_dataset("emnist", d, split="letters")
    (d / "emnist-letters-mapping.txt").write_text("1 65 97\n2 B\n")
    with pytest.raises(DataFormatError, match=r"mapping.txt, line 2: expected a label and character codes .* '2 B'"):
        load_dataset("emnist", d, split="letters")


def write_quickdraw(directory, mnist, n=300, width=784):
    directory.mkdir()
    for name, digit in zip(CLASSES, DIGITS):
        np.save(directory / f"{name}.npy", digits_of(mnist, digit, n).reshape(n, -1)[:, :width])
    return directory


def test_quickdraw_npy_files(mnist, tmp_path):
    d = write_quickdraw(tmp_path / "qd", mnist)
    (d / "one.npy").rename(d / "full_numpy_bitmap_one.npy")  # the published name works too
    ds = load_dataset("quickdraw", d, classes="zero,one,seven", per_class=240)
    assert ds.classes == CLASSES and len(ds.train_images) + len(ds.test_images) == 720
    assert len(ds.test_images) == 120 and ds.train_images.shape[1:] == (28, 28)
    result = quick_train("quickdraw", d, tmp_path / "run", classes=list(CLASSES), per_class=300)
    check_run(result, tmp_path, digits_of(mnist, 7, 1, start=400)[0])


def test_quickdraw_errors(mnist, tmp_path):
    d = write_quickdraw(tmp_path / "qd", mnist, width=783)
    with pytest.raises(DataFormatError, match=r"zero.npy: expected an N x 784 array .* found shape \(300, 783\)"):
        load_dataset("quickdraw", d, classes="zero,one")
    with pytest.raises(DataFormatError, match=r"missing cloud.npy .*`mnistkit download quickdraw"):
        load_dataset("quickdraw", d)


def write_folder(root, mnist, n=40):
    for name, digit in zip(CLASSES, DIGITS):
        (root / name).mkdir(parents=True)
        for i, img in enumerate(digits_of(mnist, digit, n)):
            big = Image.fromarray(255 - img).resize((56, 70))  # other sizes, dark ink on light paper
            big.save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def test_folder_of_images(mnist, tmp_path):
    root = write_folder(tmp_path / "mine", mnist, n=150)
    ds = load_dataset("folder", root)
    assert ds.classes == ("one", "seven", "zero") and len(ds.test_images) == 90
    assert ds.train_images.float().mean() < 80  # turned into bright ink on black, like MNIST
    result = quick_train("folder", root, tmp_path / "run", epochs=4)
    check_run(result, tmp_path, digits_of(mnist, 1, 1, start=200)[0])


def test_a_folder_of_28x28_pictures_is_taken_as_it_is(mnist, tmp_path):
    fill = Framing(box=28, centre="box")  # subjects that fill the frame, as Fashion-MNIST's do
    images = {name: (np.stack([mnistify(d / 255.0, framing=fill) for d in digits_of(mnist, digit, 30)]) * 255)
              .round().astype(np.uint8) for name, digit in zip(CLASSES, DIGITS)}
    for name, pictures in images.items():
        (tmp_path / "mine" / name).mkdir(parents=True)
        for i, picture in enumerate(pictures):
            Image.fromarray(255 - picture).save(tmp_path / "mine" / name / f"{i}.png")  # dark on light
    as_set = lambda x: sorted(bytes(image) for image in np.asarray(x))  # noqa: E731  (the split shuffles them)
    data = load_dataset("folder", tmp_path / "mine", test_fraction=0)
    assert as_set(data.train_images) == as_set(np.concatenate(list(images.values())))
    framed = load_dataset("folder", tmp_path / "mine", test_fraction=0, box=20)  # asked for: MNIST's framing
    assert as_set(framed.train_images) != as_set(data.train_images)
    Image.fromarray(255 - images["zero"][0]).resize((56, 56)).save(tmp_path / "mine" / "zero" / "big.png")
    mixed = load_dataset("folder", tmp_path / "mine", test_fraction=0)  # not all 28x28: every picture is framed
    assert as_set(mixed.train_images[:60]) == as_set(framed.train_images[:60])  # classes one and seven


def test_folder_errors(mnist, tmp_path):
    root = write_folder(tmp_path / "mine", mnist, n=3)
    with pytest.raises(DataFormatError, match="folder: options box and centre: framing box .* found 40"):
        load_dataset("folder", root, box=40)
    (root / "empty").mkdir()
    with pytest.raises(DataFormatError, match=r"class folder .*empty holds no images"):
        load_dataset("folder", root)
    (root / "empty" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataFormatError, match=r"broken.png: not an image"):
        load_dataset("folder", root)
    with pytest.raises(DataFormatError, match="does not exist"):
        load_dataset("folder", tmp_path / "nowhere")


def register_toy_source(monkeypatch, mirror, files):
    from mnistkit.data import datasets as ds

    source = ds.DownloadSource((mirror.as_uri() + "/",), tuple(files))
    spec = ds.DatasetSpec(name="toy", description="toy", classes=("a", "b"), loader=lambda d: None, download=source)
    monkeypatch.setitem(ds._REGISTRY, "toy", spec)


def test_download_from_a_mirror_with_checksums(tmp_path, monkeypatch):
    from mnistkit.data.datasets import RemoteFile

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    names = ["a.gz", "b.gz"]
    for name in names:
        (mirror / name).write_bytes(name.encode() * 100)
    files = [RemoteFile(n, "sha256:" + hashlib.sha256((mirror / n).read_bytes()).hexdigest()) for n in names]
    register_toy_source(monkeypatch, mirror, files)
    written = download("toy", tmp_path / "data", log=lambda *_: None)
    assert [p.name for p in written] == names and (tmp_path / "data" / "a.gz").read_bytes() == b"a.gz" * 100
    assert download("toy", tmp_path / "data", log=lambda *_: None) == []  # already there: nothing fetched

    register_toy_source(monkeypatch, mirror, [RemoteFile("a.gz", "md5:" + "0" * 32)])
    with pytest.raises(DataFormatError, match="md5 checksum mismatch"):
        download("toy", tmp_path / "fresh", log=lambda *_: None)
    assert not (tmp_path / "fresh" / "a.gz").exists()

    offline = [(tmp_path / "no-such-mirror").as_uri() + "/"]
    with pytest.raises(DataFormatError, match=r"cannot download fashion-mnist .* put them in .*fm: train-images-idx3"):
        download("fashion-mnist", tmp_path / "fm", mirrors=offline, log=lambda *_: None)


def test_quickdraw_downloads_one_file_per_chosen_class(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in ("cloud", "sun"):
        np.save(mirror / f"{name}.npy", np.zeros((3, 784), np.uint8))
    written = download("quickdraw", tmp_path / "qd", classes=["cloud", "sun"], mirrors=[mirror.as_uri() + "/"],
                       log=lambda *_: None)
    assert sorted(p.name for p in written) == ["cloud.npy", "sun.npy"]
    with pytest.raises(MnistkitError, match=r"knows .*for 'folder', its files are your own"):
        download("folder", tmp_path / "f", log=lambda *_: None)
    with pytest.raises(MnistkitError, match=r"for 'emnist', get its files from https://www.nist.gov/.* and put them in "):
        download("emnist", tmp_path / "e", log=lambda *_: None)
