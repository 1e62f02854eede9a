"""One normalisation everywhere, photometric vs geometric targets, determinism, resize schedule, export."""

import zipfile
from io import BytesIO

import albumentations as A
import numpy as np
import pytest
import torch
from PIL import Image

from seglib.data.datasets import EpochSampler, SegmentationDataset
from seglib.data.io import read_mask
from seglib.data.layouts import Sample
from seglib.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    apply,
    build_transform,
    denormalize,
    normalize,
    size_for_epoch,
)
from seglib.export import png_bytes, pred_name, write_zip
from seglib.predict import class_id_dtype, predict_samples


@pytest.fixture
def sample(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    mask = np.zeros((40, 48), np.uint8)
    mask[:, :24] = 1  # left half class 1
    Image.fromarray(img).save(tmp_path / "Img_001.png")
    Image.fromarray(mask).save(tmp_path / "Mask_001.png")
    return Sample("Img_001", tmp_path / "Img_001.png", tmp_path / "Mask_001.png"), img, mask


def test_normalisation_is_imagenet_and_invertible():
    img = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    x = normalize(img)
    expect = (img[..., 0] / 255.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert x.dtype == torch.float32 and x.shape == (3, 8, 8)
    assert np.allclose(x[0].numpy(), expect, atol=1e-5)
    assert np.abs(denormalize(x).astype(int) - img).max() <= 1


def test_training_validation_and_prediction_share_one_normalisation(sample):
    s, img, _ = sample
    val_item = SegmentationDataset([s], 2, 32, "none")[0]["input"]
    direct = build_transform(32, "none")(image=img)["image"]
    assert torch.equal(val_item, direct)
    # every pipeline (any augmentation) ends with the same Normalize
    for aug in ("none", "street", "flip", "photometric", "rotate_flips"):
        norm = [t for t in build_transform(32, aug).transforms if isinstance(t, A.Normalize)]
        assert len(norm) == 1 and tuple(norm[0].mean) == IMAGENET_MEAN and tuple(norm[0].std) == IMAGENET_STD
    model = torch.nn.Conv2d(3, 2, 1)
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    list(predict_samples(model, [s], 32))
    assert torch.equal(seen[0][0], direct)


def test_photometric_changes_image_only_geometric_moves_both(sample):
    _, img, mask = sample
    photo = A.Compose([A.RandomBrightnessContrast(p=1)])
    out = apply(photo, 0, 1, 0, image=img, mask=mask)
    assert not np.array_equal(out["image"], img) and np.array_equal(out["mask"], mask)
    flip = A.Compose([A.HorizontalFlip(p=1)])
    out = apply(flip, 0, 1, 0, image=img, mask=mask)
    assert np.array_equal(out["image"], img[:, ::-1]) and np.array_equal(out["mask"], mask[:, ::-1])


def test_augmentation_is_a_function_of_seed_epoch_index(sample):
    s, _, _ = sample
    ds = SegmentationDataset([s, s], 2, 32, "street", seed=5)
    a, b = ds[(2, 0)], ds[(2, 0)]
    assert torch.equal(a["input"], b["input"]) and torch.equal(a["target"], b["target"])
    assert not torch.equal(ds[(3, 0)]["input"], a["input"])  # another epoch
    assert not torch.equal(ds[(2, 1)]["input"], a["input"])  # another index, same file
    assert not torch.equal(SegmentationDataset([s], 2, 32, "street", seed=6)[(2, 0)]["input"], a["input"])


def test_resize_schedule_and_sampler():
    sched = {1: 96, 4: 160, 9: 224}
    assert [size_for_epoch(e, 224, sched) for e in (1, 3, 4, 8, 9, 20)] == [96, 96, 160, 160, 224, 224]
    assert size_for_epoch(5, 128, None) == 128 and size_for_epoch(1, 128, {"3": 64}) == 128
    with pytest.raises(ValueError):
        size_for_epoch(0, 128)
    s = EpochSampler(10, 3, seed=1)
    s.set_epoch(2)
    full = [i for _, i in s]
    assert sorted(full) == list(range(10)) and len(s) == 10  # a full pass over the data
    s.set_epoch(2, start_batch=2)
    assert [i for _, i in s] == full[6:] and len(s) == 4
    s.set_epoch(3)
    assert [i for _, i in s] != full


def test_prediction_names_and_zip_is_atomic(tmp_path):
    assert pred_name("Img_00012") == "Pred_00012.png" and pred_name("0001TP_006690") == "Pred_0001TP_006690.png"
    z = tmp_path / "predictions.zip"
    write_zip(z, [("a.png", b"1")])

    def broken():
        yield "b.png", b"2"
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_zip(z, broken())
    assert zipfile.ZipFile(z).namelist() == ["a.png"] and [p.name for p in tmp_path.iterdir()] == ["predictions.zip"]


def test_predictions_at_original_size_with_class_ids(sample):
    s, img, _ = sample

    class Left(torch.nn.Module):  # predicts class 1 on the left half, 0 on the right
        def forward(self, x):
            n, _, h, w = x.shape
            out = torch.zeros(n, 3, h, w)
            out[:, 1, :, : w // 2] = 5
            out[:, 0, :, w // 2:] = 5
            return out

    (got_s, image, pred, conf), = list(predict_samples(Left(), [s], 32))
    assert image.shape == img.shape and pred.shape == (40, 48) and pred.dtype == np.uint8
    assert (pred[:, :20] == 1).all() and (pred[:, 28:] == 0).all() and conf.max() <= 1
    buf = BytesIO()
    Image.fromarray(pred).save(buf, format="PNG")
    assert np.array_equal(np.asarray(Image.open(buf)), pred)


def test_class_ids_above_255_do_not_wrap(sample, tmp_path):
    s, _, _ = sample

    class Many(torch.nn.Module):  # 300 classes: class 299 on the left half, 44 (= 300 mod 256) on the right
        def forward(self, x):
            n, _, h, w = x.shape
            out = torch.zeros(n, 300, h, w)
            out[:, 299, :, : w // 2] = 5
            out[:, 44, :, w // 2:] = 5
            return out

    (_, _, pred, _), = list(predict_samples(Many(), [s], 32))
    assert pred.dtype == np.uint16 and pred[0, 0] == 299 and pred[0, -1] == 44
    path = tmp_path / "Pred_001.png"
    path.write_bytes(png_bytes(pred))
    back = read_mask(path, 300)
    assert back[0, 0] == 299 and np.array_equal(back, pred)  # a 16-bit PNG reads back as written
    assert class_id_dtype(256) is np.uint8 and class_id_dtype(257) is np.uint16
    with pytest.raises(ValueError, match="65537 classes"):
        class_id_dtype(65537)
