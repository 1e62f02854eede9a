"""Small trained SMOKE runs for the deployment tests (tests/test_load_run.py, tests/test_onnx_export.py): the
JetCar U-Net (MobileNetV2 encoder, 22 classes) and the two-input depth model, each trained for real on the
synthetic data with a Drive-like WORKDIR separate from the local folder."""

import torch

from seglib.config import TrainConfig, smoke_config
from seglib.depthseg import DepthSegRun, depth_config
from seglib.segmentation import SegmentationRun


def jetcar_run(root, epochs: int = 2) -> SegmentationRun:
    """The JetCar notebook's model at 64 px, trained ``epochs`` on the synthetic streets (16 train images)."""
    torch.set_num_threads(2)
    cfg = smoke_config(TrainConfig(experiment="deploy", encoder_weights=None, epochs=epochs), img_size=64)
    run = SegmentationRun(cfg, workdir=root / "work", local=root / "local", smoke=True, device="cpu")
    run.prepare()
    run.train(progress=False, epoch_table=False)
    return run


def depth_run(root, epochs: int = 2) -> DepthSegRun:
    """DSResNet (bg + bg_fg, width 4) with the resize schedule {1: 32, 2: 64}, trained ``epochs`` on the synthetic
    depth scenes: the best checkpoint is validated at 64 px only when epoch 2 is best."""
    torch.set_num_threads(2)
    cfg = depth_config("deploy_depth", width=4, img_size=64, resize_schedule={1: 32, 2: 64}, batch_size=4,
                       epochs=epochs, num_workers=0, log_images=2)
    run = DepthSegRun(cfg, workdir=root / "work", local=root / "local", smoke=True, device="cpu")
    run.prepare()
    run.train(progress=False, epoch_table=False)
    return run
