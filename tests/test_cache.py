"""The decoded-and-resized sample cache (seglib.data.cache): items bit-identical to the uncached pipeline for
every augmentation, size schedule, epoch and index; the RAM bound and its disk fallback; disk entries that a
changed file or setting never serves; RAM entries filled by DataLoader workers and seen by every process."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from seglib.data.cache import ResizedCache, cache_folder, file_key, ram_budget, run_sizes
from seglib.data.datasets import BinaryDataset, SegmentationDataset, make_loader
from seglib.data.io import read_image, read_mask
from seglib.data.layouts import Sample
from seglib.data.transforms import AUGMENTATIONS, apply, build_transform, size_fn

SCHEDULE = {1: 16, 3: 24}  # epochs 1-2 at 16 px, 3+ at 24 px


def _samples(root, n=3, classes=3, hw=(30, 40)):
    """Real PNG files: smooth random RGB images and class-id masks."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        img = (rng.random((hw[0] // 5, hw[1] // 5, 3)) * 255).astype(np.uint8)
        Image.fromarray(img).resize(hw[::-1], Image.BILINEAR).save(root / f"{i}.png")
        mask = rng.integers(0, classes, (hw[0] // 5, hw[1] // 5)).astype(np.uint8)
        Image.fromarray(mask, "L").resize(hw[::-1], Image.NEAREST).save(root / f"{i}_mask.png")
        out.append(Sample(f"{i}", root / f"{i}.png", root / f"{i}_mask.png"))
    return out


def _reference(sample, size, augment, seed, epoch, index, classes=3, invert=False):
    """The uncached pipeline as it was before the cache: the whole of build_transform on the decoded files."""
    image, mask = read_image(sample.image), read_mask(sample.mask, classes)
    out = apply(build_transform(size, augment), seed, epoch, index, image=image, mask=mask)
    target = out["mask"].long()
    return out["image"], (1 - target) if invert else target


@pytest.mark.parametrize("augment", sorted(AUGMENTATIONS.names()))
def test_items_bit_identical_for_every_augmentation(tmp_path, augment):
    samples = _samples(tmp_path / "data")
    sizes = run_sizes(24, SCHEDULE)
    assert sizes == (16, 24)
    made = {}
    for mode in ("none", "ram", "disk"):
        ds = SegmentationDataset(samples, 3, size_fn(24, SCHEDULE), augment, seed=5)
        made[mode] = ds.use_cache(mode, cache_folder(tmp_path / "local"), sizes, name=f"{augment} {mode}")
        assert ds.cache.mode == mode
    for _ in range(2):  # second pass: every lookup is a hit
        for epoch in (1, 2, 3, 4):
            for i in range(len(samples)):
                x, t = _reference(samples[i], 16 if epoch < 3 else 24, augment, 5, epoch, i)
                for mode, ds in made.items():
                    item = ds[(epoch, i)]
                    assert torch.equal(item["input"], x) and torch.equal(item["target"], t), (mode, epoch, i)
    assert made["ram"].cache.misses == len(samples) - 1 and made["ram"].cache.filled(16) == made["ram"].cache.filled(24) == 3
    assert made["disk"].cache.misses == len(samples)  # one decode per sample fills both sizes (ram: 0 at planning)
    assert len(list((tmp_path / "local" / "cache" / "resized").rglob("*.npz"))) == 2 * len(samples)


def test_binary_invert_and_unlabelled_samples(tmp_path):
    samples = _samples(tmp_path / "data", n=2, classes=2)
    ds = BinaryDataset(samples, 16, "rotate_flips", seed=1, invert=True).use_cache("ram", None, (16,))
    for epoch in (1, 2):
        for i in range(2):
            x, t = _reference(samples[i], 16, "rotate_flips", 1, epoch, i, classes=2, invert=True)
            assert torch.equal(ds[(epoch, i)]["input"], x) and torch.equal(ds[(epoch, i)]["target"], t)
    unlabelled = [Sample(s.name, s.image) for s in samples]
    test = SegmentationDataset(unlabelled, 2, 16).use_cache("ram", None, (16,))
    assert "target" not in test[0] and test.cache.filled(16) == 1  # planning filled sample 0


def test_ram_budget_falls_back_to_disk_with_message(tmp_path, capsys):
    samples = _samples(tmp_path / "data")
    folder = cache_folder(tmp_path / "local")
    ds = SegmentationDataset(samples, 3, 24, "flip").use_cache("auto", folder, (16, 24), budget=1000, name="train split")
    line = capsys.readouterr().out.strip()
    assert ds.cache.mode == "disk" and ds.cache.nbytes == 0
    assert line.startswith("cache: the train split (3 samples) need ") and "at 16, 24 px > RAM budget" in line
    assert str(folder) in line and "CACHE='none' decodes every time" in line
    fits = SegmentationDataset(samples, 3, 24).use_cache("auto", folder, (24,), budget=10**6)
    assert fits.cache.mode == "ram" and fits.cache.nbytes == 3 * (24 * 24 * 3 + 24 * 24) and not capsys.readouterr().out
    with pytest.raises(ValueError, match=r"CACHE='ram'.*> RAM budget"):
        SegmentationDataset(samples, 3, 24).use_cache("ram", folder, (20,), budget=1000)
    # the same data share one store; the process-wide budget counts the other stores still in use
    again = SegmentationDataset(samples, 3, 24, "flip").use_cache("ram", None, (24,), budget=0)
    assert again.cache.store is fits.cache.store and again.cache.filled(24) == 1
    with pytest.raises(ValueError, match="held by other cached data"):
        SegmentationDataset(samples, 3, 16).use_cache("ram", None, (16,), budget=fits.cache.nbytes + 100)
    with pytest.raises(ValueError, match="CACHE must be one of"):
        SegmentationDataset(samples, 3, 24).use_cache("yes")
    assert 0 < ram_budget() <= 4 * 2**30


def test_disk_cache_never_serves_a_changed_file_or_setting(tmp_path):
    samples = _samples(tmp_path / "data", n=2)
    folder = cache_folder(tmp_path / "local")
    ds = SegmentationDataset(samples, 3, 16).use_cache("disk", folder, (16,))
    before = ds[0]["input"]
    assert ds.cache.misses == 1 and torch.equal(ds[0]["input"], before) and ds.cache.hits == 1
    Image.fromarray(np.full((30, 40, 3), 200, np.uint8)).save(samples[0].image)  # same size, new content
    st = os.stat(samples[0].image)
    os.utime(samples[0].image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    after = ds[0]["input"]
    assert not torch.equal(after, before) and torch.equal(after, _reference(samples[0], 16, "none", 0, 1, 0)[0])
    assert ds.cache.misses == 2
    other = SegmentationDataset(samples, 3, 16, ignore_index=2)  # another mask setting: another entry
    assert other.cache_key(16, 0) != ds.cache_key(16, 0) and ds.cache_key(24, 0) != ds.cache_key(16, 0)
    ds.cache.path(16, 1).parent.mkdir(parents=True, exist_ok=True)
    ds.cache.path(16, 1).write_bytes(b"torn")  # a corrupt entry is decoded again, not served
    assert torch.equal(ds[1]["input"], _reference(samples[1], 16, "none", 0, 1, 1)[0])
    assert file_key([samples[0].image], 1) != file_key([samples[0].image], 2)
    with pytest.raises(ValueError, match="needs a cache folder"):
        SegmentationDataset(samples, 3, 16).use_cache("disk", None)


@pytest.mark.parametrize("workers", [2])
def test_workers_fill_one_shared_ram_cache(tmp_path, workers):
    samples = _samples(tmp_path / "data", n=6)
    ds = SegmentationDataset(samples, 3, 16, "flip", seed=3).use_cache("ram", None, (16,))
    assert ds.cache.filled(16) == 1  # sample 0, decoded to plan the arrays
    loader = make_loader(ds, 2, shuffle=True, seed=0, num_workers=workers)
    plain = make_loader(SegmentationDataset(samples, 3, 16, "flip", seed=3), 2, shuffle=True, seed=0, num_workers=0)
    for epoch in (1, 2):
        loader.sampler.set_epoch(epoch)
        plain.sampler.set_epoch(epoch)
        for a, b in zip(loader, plain, strict=True):
            assert torch.equal(a["input"], b["input"]) and torch.equal(a["target"], b["target"])
        # filled by the workers, visible here: one copy for all processes
        assert ds.cache.filled(16) == 6
    assert ds.cache.misses == 0  # the main process decoded nothing but the planning sample


def test_cache_is_not_in_the_way_of_other_sizes(tmp_path):
    samples = _samples(tmp_path / "data", n=2)
    ds = SegmentationDataset(samples, 3, 16).use_cache("ram", None, (16,))
    x = ds.resized(20, 1)["image"]  # a size outside the run's: decoded, not cached
    assert x.shape == (20, 20, 3) and ds.cache.filled(16) == 1
    assert run_sizes(224) == (224,) and run_sizes(224, {3: 96, 5: 160}, epochs=4) == (96, 224)
    assert isinstance(ds.cache, ResizedCache) and "RAM" in repr(ds.cache)


@pytest.mark.parametrize("augment", ["photometric", "rotate_flips"])
def test_depth_items_bit_identical(tmp_path, augment):
    from seglib.data.depth import DepthSegDataset, load_sample
    from seglib.data.depth_layouts import load_depth_splits
    from seglib.data.synthetic.depth_scenes import generate_depth_scenes

    root = generate_depth_scenes(tmp_path / "m", n_bg=1, n_fg=2, per_pair=2, size=48, seed=1)
    samples = load_depth_splits(root, val_fraction=0.25)[1]["train"]
    cached = DepthSegDataset(samples, size_fn(32, {2: 24}), "bg+bg_fg", augment, seed=4)
    cached.use_cache("ram", None, run_sizes(32, {2: 24}))
    for epoch in (1, 2, 3):
        full = build_transform(32 if epoch < 2 else 24, augment, additional_targets=cached.extra_targets)
        for i in range(len(samples)):
            ref = apply(full, 4, epoch, i, **load_sample(samples[i], "bg+bg_fg"))
            got = cached.augmented(epoch, i)
            assert ref.keys() == got.keys() and all(torch.equal(torch.as_tensor(ref[k]), torch.as_tensor(got[k]))
                                                    for k in ref), (epoch, i)
            assert set(cached[(epoch, i)]["input"]) == {"bg", "bg_fg"}
    assert cached.cache.filled(24) == cached.cache.filled(32) == len(samples)


def test_loader_settings_follow_device_and_cache(tmp_path):
    samples = _samples(tmp_path / "data", n=2)
    cached = SegmentationDataset(samples, 3, 16).use_cache("ram", None, (16,))
    plain = SegmentationDataset(samples, 3, 16)
    cores = len(os.sched_getaffinity(0))
    cpu = make_loader(cached, 2, shuffle=True, seed=0)
    assert cpu.num_workers == 0 and not cpu.pin_memory  # measured: workers cost more than they save once cached
    assert make_loader(plain, 2, shuffle=True, seed=0).num_workers == min(2, cores)
    gpu = make_loader(cached, 2, shuffle=True, seed=0, cuda=True)
    assert gpu.num_workers == min(8, cores) and gpu.pin_memory and gpu.persistent_workers == (gpu.num_workers > 0)
    assert make_loader(cached, 2, shuffle=True, seed=0, num_workers=1).num_workers == 1
