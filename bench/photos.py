"""How the shipped MNIST model reads synthetic photos of digits, with and without `prepare_photo`'s cleaning.

    python bench/photos.py              # 100 test digits x 24 renderings, 3-6 min on 2 cores; appends
    python bench/photos.py --digits 20 --no-append

Each MNIST test digit is drawn large (200 px, dark ink) on grey paper (0.85) in a 300x300 picture, then spoilt:
a desk (0.25) on some sides, or all round the sheet turned on it (the digit turned with it); the light falling
to half across the page; the rules of lined paper; some of these together; the same inverted (light ink on dark
paper); and light ink drawn on a black canvas with thick strokes.
A picture counts as read when the model's answer is the digit's label (a "not a digit" refusal counts as wrong).
Tight crops of the digits, in both polarities, must come back from `prepare_photo` untouched.
Not real camera photos: those are not available offline, so this measures only what it renders.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_section, markdown_table  # noqa: E402

PAPER, DESK, SIZE, MARGIN = 0.85, 0.25, 300, 50


def on_paper(digit: np.ndarray) -> np.ndarray:
    ink = np.asarray(Image.fromarray(digit).resize((SIZE - 2 * MARGIN,) * 2, Image.BILINEAR), np.float32) / 255
    photo = np.full((SIZE, SIZE), PAPER, np.float32)
    inner = slice(MARGIN, SIZE - MARGIN)
    photo[inner, inner] = np.minimum(photo[inner, inner], 1 - 0.9 * ink)
    return photo


def desk(sides: str, width: int) -> Callable[[np.ndarray], np.ndarray]:
    def spoil(photo: np.ndarray) -> np.ndarray:
        photo = photo.copy()
        edges = {"l": (slice(None), slice(0, width)), "r": (slice(None), slice(SIZE - width, SIZE)),
                 "t": (slice(0, width), slice(None)), "b": (slice(SIZE - width, SIZE), slice(None))}
        for side in sides:
            photo[edges[side]] = DESK
        return photo
    return spoil


def tilted(angle: float) -> Callable[[np.ndarray], np.ndarray]:
    """The sheet turned by ``angle`` degrees on a larger desk, inside the picture."""
    def spoil(photo: np.ndarray) -> np.ndarray:
        sheet = Image.fromarray((photo * 255).astype(np.uint8)).rotate(angle, Image.BILINEAR, expand=True,
                                                                        fillcolor=round(DESK * 255))
        side = round(SIZE * 1.4)
        picture = np.full((side, side), DESK, np.float32)
        top, left = (side - sheet.height) // 2, (side - sheet.width) // 2
        picture[top:top + sheet.height, left:left + sheet.width] = np.asarray(sheet, np.float32) / 255
        return picture
    return spoil


def shadow(photo: np.ndarray) -> np.ndarray:
    return photo * np.linspace(1.0, 0.55, SIZE, dtype=np.float32)[None, :]


def rules(photo: np.ndarray) -> np.ndarray:
    photo = photo.copy()
    photo[::40] = np.minimum(photo[::40], 0.6)
    return photo


def canvas(digit: np.ndarray, thicken: int) -> np.ndarray:
    """Light ink on black, strokes thickened by a ``thicken``-pixel max filter: the drawing page's canvas."""
    ink = Image.fromarray(digit).resize((SIZE - 2 * MARGIN,) * 2, Image.BILINEAR).filter(ImageFilter.MaxFilter(thicken))
    picture = np.zeros((SIZE, SIZE), np.float32)
    picture[MARGIN:SIZE - MARGIN, MARGIN:SIZE - MARGIN] = np.asarray(ink, np.float32) / 255
    return picture


def steps(*functions: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """One rendering: the functions applied in turn, to the 28x28 digit first."""
    return lambda digit: functools.reduce(lambda picture, f: f(picture), functions, digit)


def invert(picture: np.ndarray) -> np.ndarray:
    return 1 - picture


def renderings() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    kinds = {"plain": steps(on_paper)}
    for sides, width in [("ltrb", 15), ("ltrb", 45), ("l", 30), ("r", 30), ("t", 30), ("b", 30), ("lt", 45),
                         ("rb", 15), ("ltr", 30), ("lb", 45)]:
        kinds[f"desk {sides} {width}px"] = steps(on_paper, desk(sides, width))
    for angle in (10, 20):
        kinds[f"sheet turned {angle} degrees on a desk (420x420)"] = steps(on_paper, tilted(angle))
    kinds["shadow"] = steps(on_paper, shadow)
    kinds["desk lt 45px + shadow"] = steps(on_paper, desk("lt", 45), shadow)
    kinds["rules"] = steps(on_paper, rules)
    kinds["rules + shadow"] = steps(on_paper, rules, shadow)
    for name in ("plain", "shadow", "rules", "desk lt 45px"):
        kinds[f"{name}, inverted"] = steps(kinds[name], invert)
    for thicken in (3, 9, 15):
        kinds[f"light ink on black, strokes +{thicken}px"] = steps(functools.partial(canvas, thicken=thicken))
    return kinds


def reads(model: torch.nn.Module, pictures: list[np.ndarray], labels: list[int], clean: bool) -> int:
    from mnistkit.data.preprocess import mnistify, prepare_photo
    from mnistkit.errors import ImageError
    from mnistkit.metrics import energy_score
    from mnistkit.predict import rejection

    right = 0
    for picture, label in zip(pictures, labels):
        try:
            image = mnistify(prepare_photo(picture) if clean else picture)
        except ImageError:  # "the image is empty": refused
            continue
        with torch.no_grad():
            logits = model(torch.from_numpy(image)[None, None].float())
        right += int(logits.argmax(1)) == label and rejection(model, float(energy_score(logits))) is None
    return right


def tight_crops_changed(digits: np.ndarray) -> tuple[int, int]:
    from mnistkit.data.preprocess import prepare_photo

    changed = total = 0
    for digit in digits:
        rows, cols = np.nonzero(digit)
        crop = Image.fromarray(digit[rows.min():rows.max() + 1, cols.min():cols.max() + 1])
        for size in ((120, 150), (400, 500)):
            tight = 1 - np.asarray(crop.resize(size, Image.BILINEAR), np.float32) / 255
            for picture in (tight, 1 - tight):
                total += 1
                changed += prepare_photo(picture) is not picture
    return changed, total


def main() -> None:
    from mnistkit import load
    from mnistkit.data.datasets import load_dataset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--digits", type=int, default=100, help="MNIST test digits to render each way")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    model = load("mnist").eval()
    mnist = load_dataset("mnist")
    digits = mnist.test_images[: args.digits].numpy()
    labels = [int(y) for y in mnist.test_labels[: args.digits]]
    rows = []
    for name, render in renderings().items():
        pictures = [render(d) for d in digits]
        found = [reads(model, pictures, labels, clean) for clean in (False, True)]
        rows.append([name, *(f"{n}/{len(labels)}" for n in found)])
        print(*rows[-1], flush=True)
    changed, total = tight_crops_changed(digits)
    rows.append(["tight crops, both polarities: changed by cleaning", "", f"{changed} of {total}"])
    table = markdown_table(["rendering (300x300)", "read, `mnistify` alone", "read, `prepare_photo` first"], rows)
    print(table)
    if not args.no_append:
        append_section("Synthetic photos: the shipped model with and without photo cleaning",
                       f"python bench/photos.py --digits {args.digits}", table)


if __name__ == "__main__":
    main()
