import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFilter

from mnistkit.data.augment import AugmentConfig, augment_batch
from mnistkit.data.datasets import pixel_stats, split_validation
from mnistkit.data.preprocess import (
    DIGIT_FRAMING,
    FRAMING_CENTRES,
    Framing,
    center_of_mass,
    enclosing_rectangle_area,
    even_out_lighting,
    load_digit,
    measure_framing,
    mnistify,
    prepare_photo,
)
from mnistkit.errors import ImageError, UnknownNameError


def test_validation_split_is_deterministic_and_disjoint(mnist):
    a, b = split_validation(mnist, 5000, seed=0), split_validation(mnist, 5000, seed=0)
    assert torch.equal(a.val_images, b.val_images) and len(a.val_images) == 5000 and len(a.train_images) == 55000
    # Disjoint: every training image appears exactly once across train and val.
    flat = torch.cat([a.train_images, a.val_images]).flatten(1)
    assert torch.equal(flat.sum(1).sort().values, mnist.train_images.flatten(1).sum(1).sort().values)
    assert not torch.equal(split_validation(mnist, 5000, seed=1).val_labels, a.val_labels)


def test_stratified_split_gives_each_class_its_share(mnist):
    # Imbalanced: 500 zeros, 60 ones, 7 sevens. A random 57 of them would hold out 6 +- 2.3 ones; stratified, each
    # class gives its share rounded down or up (the sevens' 0.7: none or one).
    labels = mnist.train_labels
    pick = torch.cat([torch.nonzero(labels == c).flatten()[:n] for c, n in ((0, 500), (1, 60), (7, 7))])
    data = dataclasses.replace(mnist, train_images=mnist.train_images[pick], train_labels=labels[pick])
    for seed in range(5):
        split = split_validation(data, 57, seed=seed, stratified=True)
        held_out = {c: int((split.val_labels == c).sum()) for c in (0, 1, 7)}
        assert sum(held_out.values()) == 57 and held_out[0] in (50, 51) and held_out[1] == 6 and held_out[7] in (0, 1)
        assert len(split.train_images) == len(pick) - 57
        flat = torch.cat([split.train_images, split.val_images]).flatten(1)  # disjoint and complete
        assert torch.equal(flat.sum(1).sort().values, data.train_images.flatten(1).sum(1).sort().values)
    again = split_validation(data, 57, seed=0, stratified=True)
    assert torch.equal(again.val_labels, split_validation(data, 57, seed=0, stratified=True).val_labels)
    assert not torch.equal(split_validation(data, 57, seed=1, stratified=True).val_images, again.val_images)


def test_pixel_stats_match_published_mnist(mnist):
    mean, std = pixel_stats(mnist.train_images)
    assert mean == pytest.approx(0.1307, abs=5e-4) and std == pytest.approx(0.3081, abs=5e-4)


def test_augment_identity_when_disabled_and_deterministic(mnist):
    x = mnist.test_images[:64].unsqueeze(1).float() / 255
    assert augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(0)) is x
    cfg = AugmentConfig(rotate_degrees=15, translate=0.1, scale=0.1, shear_degrees=10, elastic_alpha=2)
    a = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b)
    assert (a - x).abs().mean() > 0.02  # it really moved the ink
    assert a.sum() == pytest.approx(x.sum().item(), rel=0.25)  # and did not destroy it


def test_stroke_width_thickens_some_images_and_thins_others(mnist):
    x = mnist.test_images[:64].unsqueeze(1).float() / 255
    cfg = AugmentConfig(stroke_width=0.5)
    out = augment_batch(x, cfg, torch.Generator().manual_seed(0))
    ink = out.sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))
    assert (ink > 1.1).any() and (ink < 0.9).any() and ink.max() < 2.0 and ink.min() > 0.4
    assert out.min() >= 0 and out.max() <= 1  # a blend of the image with its dilation or erosion
    assert torch.equal(out, augment_batch(x, cfg, torch.Generator().manual_seed(0)))


def test_mnistify_centres_and_fits_box(mnist):
    digit = mnist.test_images[0].numpy() / 255.0
    big = np.ones((200, 300), np.float32)  # white paper
    big[20:132, 200:284] = 1 - np.kron(digit, np.ones((4, 3)))  # dark ink, off-centre, stretched
    out = mnistify(big)
    rows, cols = np.nonzero(out > 0.1)
    assert out.shape == (28, 28) and out.max() == pytest.approx(1.0, abs=0.05)
    assert np.ptp(rows) < 21 and np.ptp(cols) < 21
    r, c = center_of_mass(out)
    assert abs(r - 14) < 1 and abs(c - 14) < 1


def test_mnist_is_measured_as_framed_the_mnist_way(mnist):
    assert measure_framing(mnist.train_images.numpy()) == DIGIT_FRAMING == Framing(box=20, centre="mass")


# Boxes of 27 and 28 pixels leave no room to centre the long side either way, so the two centres are alike there.
@settings(max_examples=15, deadline=None)
@given(box=st.integers(6, 26), centre=st.sampled_from(FRAMING_CENTRES))
def test_the_framing_images_were_made_with_is_measured_back(mnist, box, centre):
    framing = Framing(box=box, centre=centre)
    framed = np.stack([mnistify(digit / 255.0, framing=framing) for digit in mnist.test_images[:200].numpy()])
    assert measure_framing((framed * 255).round().astype(np.uint8)) == framing


def test_a_picture_of_a_framed_image_is_framed_back_to_itself(mnist, tmp_path):
    fill = Framing(box=28, centre="box")  # Fashion-MNIST's: the longest side fills the image, the box centred
    image = (mnistify(mnist.test_images[0].numpy() / 255.0, framing=fill) * 255).round().astype(np.uint8)
    Image.fromarray(255 - image).save(tmp_path / "saved.png")  # dark on light, as a user might save it
    Image.fromarray(255 - image).resize((280, 280), Image.NEAREST).save(tmp_path / "scan.png")
    assert np.abs(load_digit(tmp_path / "saved.png", fill) - image / 255.0).max() < 0.03
    assert np.abs(load_digit(tmp_path / "scan.png", fill) - image / 255.0).mean() < 0.03  # blurred at the edges only
    assert np.abs(load_digit(tmp_path / "saved.png") - image / 255.0).mean() > 0.1  # MNIST's framing shrinks it


@pytest.mark.parametrize("framing", [dict(box=0, centre="mass"), dict(box=20, centre="middle"), dict(box=20.5)])
def test_a_framing_out_of_range_is_refused(framing):
    with pytest.raises(ValueError, match="framing"):
        Framing(**framing)


def photo_of(digit: np.ndarray, light: np.ndarray) -> np.ndarray:
    """A 300x300 'photo' of a 28x28 digit written large on grey paper (0.85), under ``light`` (1 = full)."""
    ink = np.asarray(Image.fromarray(digit).resize((200, 200), Image.BILINEAR), np.float32) / 255
    paper = np.full((300, 300), 0.85, np.float32)
    paper[50:250, 50:250] = np.minimum(paper[50:250, 50:250], 1 - 0.9 * ink)
    return paper * light


def even_light() -> np.ndarray:
    return np.ones((1, 300), np.float32)


def with_shadow(photo: np.ndarray) -> np.ndarray:
    return photo * np.linspace(1.0, 0.55, 300, dtype=np.float32)[None, :]  # half as bright on the right


def with_frame(photo: np.ndarray) -> np.ndarray:
    photo = photo.copy()
    photo[:15], photo[-15:], photo[:, :15], photo[:, -15:] = 0.15, 0.15, 0.15, 0.15  # a desk at the edges
    return photo


def with_desk_beside(photo: np.ndarray) -> np.ndarray:
    photo = photo.copy()
    photo[:, :45], photo[:30] = 0.25, 0.25  # the sheet runs off the picture on the right and at the bottom
    return photo


def with_wide_desk(photo: np.ndarray) -> np.ndarray:
    photo = photo.copy()
    photo[:45], photo[-45:], photo[:, :45], photo[:, -45:] = 0.25, 0.25, 0.25, 0.25  # more desk than paper
    return photo


def on_desk_tilted(photo: np.ndarray) -> np.ndarray:
    sheet = Image.fromarray((photo * 255).astype(np.uint8)).rotate(15, Image.BILINEAR, expand=True, fillcolor=64)
    desk = np.full((420, 420), 0.25, np.float32)  # the turned sheet, 390 pixels across, lies inside the picture
    top, left = (420 - sheet.height) // 2, (420 - sheet.width) // 2
    desk[top:top + sheet.height, left:left + sheet.width] = np.asarray(sheet, np.float32) / 255
    return desk


def with_rules(photo: np.ndarray) -> np.ndarray:
    photo = photo.copy()
    photo[::40] = 0.6  # lined paper: a rule every 40 pixels, lighter than the ink
    return photo


# Before prepare_photo, predict refused or misread all 8 test digits rendered each of these ways (2026-12-06):
# the shadowed side, the frame or the rules counted as ink, or the frame as the paper. A desk on only some sides,
# or one covering more of the picture than the paper, was misread in 33-37 of 40 digits until 2026-12-07, and a
# sheet turned on the desk in 19-20 of 20.
@pytest.mark.parametrize("spoil", [with_shadow, with_frame, with_desk_beside, with_wide_desk, on_desk_tilted,
                                   with_rules])
def test_photos_are_read_despite_shadow_frame_or_rules(spoil, mnist, tmp_path):
    from mnistkit import load, predict_images

    digits = (0, 1, 3)  # a 7, a 2 and a 0
    paths = [tmp_path / f"{spoil.__name__}-{i}.png" for i in digits]
    for i, path in zip(digits, paths):
        photo = spoil(photo_of(mnist.test_images[i].numpy(), even_light()))
        Image.fromarray((photo * 255).astype(np.uint8)).save(path)
    predictions = predict_images(load("mnist"), paths)
    assert [p.label for p in predictions] == [str(int(mnist.test_labels[i])) for i in digits]
    assert not any(p.rejected for p in predictions)


def test_tightly_cropped_digits_are_left_as_they_are(mnist):
    # Ink touching every edge, in strokes as wide as a sixth of the picture, either polarity: neither a frame to
    # crop nor a shadow (a max-filter estimate of the paper, without the plane, took the inside of thick strokes for
    # shade; the whole picture's median took light ink filling most of a crop for paper).
    for digit in mnist.test_images[:40].numpy():
        rows, cols = np.nonzero(digit)
        for size in ((120, 150), (400, 500)):
            tight = 1 - np.asarray(Image.fromarray(digit[rows.min():rows.max() + 1, cols.min():cols.max() + 1])
                                   .resize(size, Image.BILINEAR), np.float32) / 255
            assert prepare_photo(tight) is tight
            chalk = 1 - tight  # light ink filling most of the crop: not a light paper in a dark frame
            assert prepare_photo(chalk) is chalk


@pytest.mark.parametrize("angle", [0, 10, 30, 45])
def test_a_turned_sheet_fills_its_smallest_rectangle_and_a_disc_does_not(angle):
    sheet = np.asarray(Image.fromarray(np.pad(np.full((120, 200), 255, np.uint8), 100)).rotate(angle, Image.BILINEAR)) > 127
    assert sheet.sum() / enclosing_rectangle_area(sheet) > 0.95
    rows, cols = np.mgrid[:200, :200]
    disc = (rows - 100) ** 2 + (cols - 100) ** 2 < 80**2
    assert disc.sum() / enclosing_rectangle_area(disc) == pytest.approx(np.pi / 4, abs=0.02)


def test_light_ink_drawn_on_black_is_not_taken_for_a_sheet(mnist):
    # A thick light 0 on a black canvas is a broad light region clear of the edges, with a dark hole inside.
    zero = np.asarray(Image.fromarray(mnist.test_images[3].numpy()).resize((200, 200), Image.BILINEAR)
                      .filter(ImageFilter.MaxFilter(15)), np.float32) / 255
    canvas = np.zeros((300, 300), np.float32)
    canvas[50:250, 50:250] = zero
    assert int(mnist.test_labels[3]) == 0 and prepare_photo(canvas) is canvas


def test_even_lighting_and_small_pictures_are_left_as_they_are(mnist):
    even = photo_of(mnist.test_images[0].numpy(), even_light())
    assert even_out_lighting(even) is even and prepare_photo(even) is even  # a drawing reads as on the page
    small = 1 - mnist.test_images[0].numpy() / 255  # 28x28: its strokes are as wide as the paper filter
    assert even_out_lighting(small) is small


def test_mnistify_rejects_empty():
    with pytest.raises(ImageError, match="empty"):
        mnistify(np.full((50, 50), 0.8, np.float32), "blank.png")


def test_unknown_model_name_suggests():
    from mnistkit.models import create_model

    with pytest.raises(UnknownNameError, match="Did you mean 'lenet'"):
        create_model("lenett")
