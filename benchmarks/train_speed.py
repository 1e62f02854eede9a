"""Training-speed benchmark: seconds per epoch, images per second, and where the time goes.

Prints one table for the JetCar model (smp U-Net + MobileNetV2) on a dataset: data loading alone
(decode + augment + normalise, no model), a training epoch, a validation pass, and a checkpoint write.
Run it on a CPU or a GPU; AMP and channels_last are used on CUDA as in training.

    python benchmarks/train_speed.py --data synthetic --size 224 --batch 16 --epochs 2
    python benchmarks/train_speed.py --data ../shared/data/camvid_segnet --classes 12 --ignore 11 --size 160
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from seglib.config import TrainConfig
from seglib.segmentation import SegmentationRun


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="synthetic")
    p.add_argument("--classes", type=int, default=22)
    p.add_argument("--ignore", type=int, default=None)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--augment", default="street")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(experiment="bench", n_classes=a.classes, ignore_index=a.ignore, img_size=a.size,
                          batch_size=a.batch, epochs=a.epochs, augment=a.augment, encoder_weights=None,
                          num_workers=a.workers, checkpoint_minutes=1e9)
        run = SegmentationRun(cfg, a.data, workdir=tmp, device=a.device)
        run.prepare(check=False)
        trainer = run.trainer(progress=False)
        n_train, n_val = len(run.splits["train"]), len(run.splits["val"])
        loader = trainer.train_loader
        loader.sampler.set_epoch(1)
        t0 = time.perf_counter()
        for _ in loader:
            pass
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = trainer.fit()
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        trainer.save()
        t_ckpt = time.perf_counter() - t0
        hist = result.history
        train_s = [h["train_seconds"] for h in hist]
        val_s = [h["seconds"] - h["train_seconds"] for h in hist]
        dev = trainer.device
        print(f"device {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
              f"AMP {trainer.amp}, channels_last {trainer.channels_last}, workers {loader.num_workers}")
        print(f"data {a.data}: {n_train} train / {n_val} val images at {a.size} px, batch {a.batch}")
        print(f"{'stage':<28}{'seconds':>10}{'images/s':>12}")
        print(f"{'data loading only (1 epoch)':<28}{t_load:>10.2f}{n_train / t_load:>12.1f}")
        for i, (tr, va) in enumerate(zip(train_s, val_s), 1):
            print(f"{f'epoch {i} train':<28}{tr:>10.2f}{n_train / tr:>12.1f}")
            print(f"{f'epoch {i} validate':<28}{va:>10.2f}{n_val / va:>12.1f}")
        print(f"{'checkpoint write (last.pt)':<28}{t_ckpt:>10.2f}")
        print(f"{'fit() total':<28}{t_fit:>10.2f}")
        print(f"seconds per epoch (last): {hist[-1]['seconds']:.2f}")


if __name__ == "__main__":
    main()
