"""Held-out images of each shipped model's dataset saved as picture files and read back by `mnistkit predict`.

    python bench/pictures.py                 # 2,000 images a model, about 1 min on 2 cores; appends
    python bench/pictures.py --images 200 --no-append

A user who saves a dataset's image (or draws one like it) and asks `mnistkit predict` for its label should get the
answer the model gives on the image itself. Each image is saved as a PNG, dark on light as a scan would be, at 28x28
and enlarged 10 times, then read by `predict_images`: framed as the model's training images were (its `framing`),
and, for comparison, with MNIST's framing (a 20-pixel box centred by mass), which every model used before framing
was measured. MNIST's images are its bundled test split; Fashion-MNIST's are the dev holdout of runs/fashion-dev
(`python bench/fashion_dev.py`), the shipped model's test split, never the withheld official test files.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, append_section, markdown_table  # noqa: E402


def saved_as_pictures(images: np.ndarray, folder: Path, enlarge: int) -> list[Path]:
    paths = []
    for i, image in enumerate(images):
        picture = Image.fromarray(255 - image)
        if enlarge > 1:
            picture = picture.resize((28 * enlarge, 28 * enlarge), Image.Resampling.BICUBIC)
        paths.append(folder / f"{i:05d}.png")
        picture.save(paths[-1])
    return paths


def read_correctly(model, paths: list[Path], labels: np.ndarray) -> int:
    from mnistkit.predict import predict_images

    return sum(p.index == int(y) for p, y in zip(predict_images(model, paths), labels))


def main() -> None:
    from mnistkit.data.datasets import load_dataset
    from mnistkit.data.preprocess import DIGIT_FRAMING
    from mnistkit.models import infer
    from mnistkit.pretrained import load_pretrained

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)

    rows = []
    for name, data_dir, split in (("mnist", None, "bundled test split"),
                                  ("fashion-mnist", ROOT / "runs" / "fashion-dev", "dev holdout (not test)")):
        if data_dir is not None and not data_dir.exists():
            raise SystemExit(f"{data_dir} is missing: run `python bench/fashion_dev.py` first")
        data = load_dataset(name, data_dir)
        images, labels = data.test_images[: args.images].numpy(), data.test_labels[: args.images].numpy()
        model = load_pretrained(name).model
        framing = model.framing
        direct = int((infer(model, torch.from_numpy(images).float() / 255).argmax(1).numpy() == labels).sum())
        for enlarge in (1, 10):
            with tempfile.TemporaryDirectory() as folder:
                paths = saved_as_pictures(images, Path(folder), enlarge)
                own = read_correctly(model, paths, labels)
                model.framing = DIGIT_FRAMING
                mnist_way = read_correctly(model, paths, labels)
                model.framing = framing
            size = f"{28 * enlarge}x{28 * enlarge}"
            rows.append([f"`{name}`", split, f"box {framing.box}, by {framing.centre}", size,
                         f"{direct / len(labels):.2%}", f"**{own / len(labels):.2%}**", f"{mnist_way / len(labels):.2%}"])
            print(rows[-1], flush=True)

    table = markdown_table(["shipped model", "images", "framing measured on its training images", "picture size",
                            "the images scored directly", "pictures via predict, the model's framing",
                            "pictures via predict, MNIST's framing (before)"], rows)
    print(table)
    if not args.no_append:
        append_section(f"Dataset images as picture files, read by `mnistkit predict` ({args.images:,} a model)",
                       " ".join(["python", "bench/pictures.py", *sys.argv[1:]]), table)


if __name__ == "__main__":
    main()
