import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mnistkit.errors import MnistkitError
from mnistkit.models import count_macs, count_parameters, create_model, list_models, shift_images, summarize
from mnistkit.models.fast import ConvBeforeFloorPool, Deskew, Residual

REQUIRED = {"mlp", "cnn-16-32", "lenet", "cnn-32-64", "quickdraw-cnn", "inception", "resnet", "mknet-m"}


def test_registry_holds_every_tutorial_recipe():
    names = {m.name for m in list_models()}
    assert REQUIRED <= names
    from mnistkit.config import PRESETS, make_config

    assert {"mlp", "cnn-16-32", "lenet", "cnn-32-64", "quickdraw-cnn", "default", "fast", "best"} <= set(PRESETS)
    for preset in PRESETS:
        assert make_config(preset).model in names


@pytest.mark.parametrize("name", [m.name for m in list_models()])
def test_forward_shape_and_classes(name):
    model = create_model(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 1, 28, 28))
        out_uint8 = model(torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8))
    assert out.shape == (3, 7) and out_uint8.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_strided_stem_skips_full_resolution_pooling():
    pooled, strided = create_model("mknet-s"), create_model("mknet-xs")
    shapes = {row.name: row.output_shape for row in summarize(strided)}
    assert shapes["net.0"] == (16, 14, 14)  # the 4x4 stride-2 stem halves the resolution by itself
    assert not any(r.kind == "MaxPool2d" and r.output_shape[1] == 14 for r in summarize(strided))
    assert any(r.kind == "MaxPool2d" and r.output_shape[1] == 14 for r in summarize(pooled))
    with pytest.raises(MnistkitError, match="stem must be one of"):
        create_model("mknet-xs", stem="avg")


def test_full_resolution_convs_and_per_stage_extra_convs():
    rows = summarize(create_model("mknet-l", widths=(48, 96, 192), extra_convs=[1, 2, 2], full_res_convs=1))
    convs = [r.output_shape for r in rows if r.kind in ("Conv2d", "ConvBeforeFloorPool")]
    assert convs[:2] == [(48, 28, 28), (48, 28, 28)]  # two convs see every pixel before the first pool
    # 1 extra conv at 14x14, then 2 per stage; the last stage's first conv leaves out what its pool drops
    assert [c[1] for c in convs[2:]] == [14, 14, 7, 7, 6, 3, 3]
    with pytest.raises(MnistkitError, match="one per stage"):
        create_model("mknet-l", extra_convs=[1, 2])
    with pytest.raises(MnistkitError, match="full_res_convs needs stem='pool'"):
        create_model("mknet-xs", full_res_convs=1)


@settings(max_examples=25, deadline=None)
@given(size=st.sampled_from([3, 5, 7, 9]), kernel=st.sampled_from([1, 3, 5]), seed=st.integers(0, 99))
def test_a_conv_before_a_floor_pool_skips_only_what_the_pool_never_reads(size, kernel, seed):
    torch.manual_seed(seed)
    skipping = ConvBeforeFloorPool(2, 3, kernel)
    plain = nn.Conv2d(2, 3, kernel, padding=kernel // 2, bias=False)
    plain.load_state_dict(skipping.state_dict())  # the same weights: checkpoints load into either
    images = torch.randn(2, 2, size, size)
    assert skipping(images).shape[-2:] == (size - 1, size - 1)
    torch.testing.assert_close(nn.MaxPool2d(2)(skipping(images)), nn.MaxPool2d(2)(plain(images)))


def test_mknet_computes_no_conv_output_its_pools_drop():
    rows = summarize(create_model("mknet-s"))
    pooled_convs = [(r.kind, r.output_shape) for r in rows if r.kind in ("Conv2d", "ConvBeforeFloorPool")]
    assert pooled_convs == [("Conv2d", (8, 28, 28)), ("Conv2d", (24, 14, 14)), ("ConvBeforeFloorPool", (48, 6, 6))]
    assert count_macs(create_model("mknet-s")) == 28 * 28 * 8 * 9 + 14 * 14 * 24 * 8 * 9 + 6 * 6 * 48 * 24 * 9 + 432 * 10


def test_convstack_shrinks_by_unpadded_convs_without_pooling():
    rows = summarize(create_model("convstack"))
    assert [r.output_shape[1] for r in rows if r.kind == "Conv2d"] == [24, 20, 16, 12, 8]
    assert not any(r.kind.endswith("Pool2d") for r in rows)
    assert [r.output_shape for r in rows if r.kind == "Linear"] == [(10,)]
    assert [r.output_shape[1] for r in summarize(create_model("convstack", widths=(8, 8), kernel=3))
            if r.kind == "Conv2d"] == [26, 24]
    with pytest.raises(MnistkitError, match="shrink a 28x28 image to nothing"):
        create_model("convstack", widths=(8,) * 7)


def test_residual_stages_add_their_input_back():
    torch.manual_seed(0)
    plain = create_model("mknet-l", extra_convs=2).eval()
    residual = create_model("mknet-l", extra_convs=2, residual=True).eval()
    assert plain.state_dict().keys() != residual.state_dict().keys()  # a checkpoint says which network it is
    residual.load_state_dict(dict(zip(residual.state_dict(), plain.state_dict().values())))
    blocks = [m for m in residual.modules() if isinstance(m, Residual)]
    assert len(blocks) == 3 and all(len(b) == 6 for b in blocks)  # two conv + BN + ReLU per stage
    x = torch.randn(4, 1, 28, 28)
    assert not torch.allclose(residual(x), plain(x))  # the same weights, so only the skips differ
    block = blocks[0]
    nn.init.zeros_(block[-2].weight), nn.init.zeros_(block[-2].bias)  # the block's branch now outputs zeros
    features = torch.rand(2, 32, 14, 14)
    assert torch.equal(block(features), features)


def test_deskew_makes_a_slanted_stroke_upright_and_centred():
    slanted = torch.zeros(1, 1, 28, 28)
    for row in range(4, 24):
        slanted[0, 0, row, 4 + row // 2 : 7 + row // 2] = 1.0  # leaning right, left of centre
    upright = Deskew()(slanted)[0, 0]
    rows, cols = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    centre_col = [(upright[r] * cols[r]).sum() / upright[r].sum() for r in (6, 13, 20)]
    assert max(centre_col) - min(centre_col) < 1.0  # was 7 pixels from row 6 to row 20
    assert abs((upright * cols).sum() / upright.sum() - 13.5) < 0.5  # ink centred across
    plain, deskewed = create_model("mknet-l"), create_model("mknet-l", deskew=True)
    assert plain.state_dict().keys() != deskewed.state_dict().keys()  # a checkpoint says which network it is


def test_shift_tta_averages_the_logits_of_five_shifted_copies():
    model = create_model("mknet-s").eval()
    images = torch.zeros(2, 28, 28, dtype=torch.uint8)
    images[:, 10:18, 12:16] = 255
    moved = shift_images(images, 1, -1)
    assert moved[0, 11, 11] == 255 and moved[0, 10, 11] == 0 and moved[0, 11, 15] == 0  # down one, left one
    assert torch.equal(shift_images(images, -2, 3)[:, 8:16, 15:19], images[:, 10:18, 12:16])  # up two, right three
    assert int(shift_images(images, -2, 3).sum()) == int(images.sum())  # nothing lost this far from the edge
    with torch.no_grad():
        expected = sum(model(shift_images(images, dy, dx)) for dy, dx in
                       ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))) / 5
        model.tta_shift = True
        assert torch.allclose(model(images), expected, atol=1e-5)
        assert not torch.allclose(model(images), model.train()(images).detach(), atol=1e-3)  # eval only


def test_published_layer_shapes():
    # LeNet-style: 320 features into the first linear layer; CNN-32-64: 1600; QuickDraw: 24*4*4.
    rows = {r.name: r for r in summarize(create_model("lenet"))}
    assert rows["net.6"].output_shape == (320,) and rows["net.7"].output_shape == (50,)
    assert dict((r.name, r.output_shape) for r in summarize(create_model("cnn-32-64")))["net.6"] == (1600,)
    assert dict((r.name, r.output_shape) for r in summarize(create_model("quickdraw-cnn")))["net.6"] == (384,)
    # cnn-16-32: 16*(5*5*1+1) + 32*(5*5*16+1) + (32*7*7*10+10)
    assert count_parameters(create_model("cnn-16-32")) == 16 * 26 + 32 * 401 + 1568 * 10 + 10


def test_macs_of_lenet_by_hand():
    conv1 = 24 * 24 * 10 * 25
    conv2 = 8 * 8 * 20 * 10 * 25
    assert count_macs(create_model("lenet")) == conv1 + conv2 + 320 * 50 + 50 * 10


def test_normalisation_lives_in_the_model():
    model = create_model("lenet", mean=0.5, std=0.25)
    assert float(model.mean) == 0.5 and float(model.std) == 0.25
    assert set(model.state_dict()) >= {"mean", "std"}


def test_stage_dropout_follows_each_stage_and_is_off_at_inference():
    torch.manual_seed(0)
    plain = create_model("mknet-l")
    dropped = create_model("mknet-l", stage_dropout=0.5)
    assert len(plain.state_dict()) == len(dropped.state_dict())  # no weights of its own
    dropped.load_state_dict(dict(zip(dropped.state_dict(), plain.state_dict().values())))
    net = dropped.net
    after_stages = [net[i - 1] for i, m in enumerate(net) if isinstance(m, nn.Dropout) and m.p == 0.5]
    assert len(after_stages) == 3 and all(isinstance(m, nn.ReLU) for m in after_stages)
    x = torch.randn(8, 1, 28, 28)
    assert torch.equal(dropped.eval()(x), plain.eval()(x))
    assert not torch.allclose(dropped.train()(x), plain.train()(x))
