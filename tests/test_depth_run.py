"""Issue 3: a resumed depth run changes image size at the right epoch; export; the notebook headless (SMOKE)."""

import io
import json
import zipfile

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, need
from PIL import Image

import seglib.depthseg as depthseg
from seglib.depthseg import DepthSegRun, DepthSegStudy, depth_config
from seglib.nbrun import DEMO, run_notebook

SYNTH = {"n_bg": 2, "n_fg": 2, "per_pair": 2, "size": 64}  # 8 samples: 6 train, 2 val


def _run(workdir, epochs, losses="rmse_bce_dice"):
    cfg = depth_config("resize", width=2, resize_schedule={1: 32, 3: 64}, img_size=64, batch_size=3, epochs=epochs,
                       seed=7, num_workers=0, log_images=2)
    study = DepthSegStudy(cfg, "synthetic", losses, workdir=workdir, synthetic_kwargs=SYNTH, val_fraction=0.25)
    study.prepare()
    return study


def _fit(run):
    """Train ``run`` recording the input side length of every training forward pass, per epoch."""
    trainer = run.trainer(progress=False)
    seen = []

    def hook(module, args):
        if module.training:
            seen.append((trainer.epoch + 1, args[0]["bg"].shape[-1]))

    trainer.model.register_forward_pre_hook(hook)
    run.fit_result = trainer.fit()
    return run.fit_result, sorted(set(seen))


def test_resumed_run_switches_image_size_at_the_scheduled_epoch(tmp_path, one_thread):
    first, seen1 = _fit(_run(tmp_path / "split", 2).run)
    assert first.epochs_completed == 2 and seen1 == [(1, 32), (2, 32)]
    resumed, seen2 = _fit(_run(tmp_path / "split", 4).run)  # "run all" again with more epochs
    assert resumed.resumed_from == {"epoch": 3, "batch": 0}
    assert seen2 == [(3, 64), (4, 64)]
    assert [r["img_size"] for r in resumed.history] == [32, 32, 64, 64]
    straight, _ = _fit(_run(tmp_path / "straight", 4).run)
    a = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # the interrupted run equals the uninterrupted one
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in straight.history]


def test_two_losses_in_sub_folders_with_comparison_and_16bit_export(tmp_path, one_thread, monkeypatch):
    study = _run(tmp_path / "cmp", 1, ["ssim_dice", "rmse_bce"])
    assert study.report() == "ssim_dice: not trained in this session\nrmse_bce: not trained in this session"
    study.train(progress=False)
    report = study.report().splitlines()
    assert report[0].startswith("ssim_dice: 1 epochs done; best {") and report[1].startswith("rmse_bce: 1 epochs done")
    assert len(report) == 2  # the per-epoch tables were printed while training
    final = study.evaluate()
    assert set(final) == {"ssim_dice", "rmse_bce"} and final["ssim_dice"]["img_size"] == 32
    with monkeypatch.context() as m:  # export decodes the inputs only, never masks or depth
        m.setattr(depthseg, "load_sample", lambda *a: pytest.fail("export decoded mask and depth"))
        zip_path = study.run.export()
    summary = json.loads(study.write_summary().read_text())
    assert summary["final_metrics"]["loss"] == pytest.approx(final["ssim_dice"]["loss"])
    assert set(summary["comparison"]) == {"ssim_dice", "rmse_bce"} and summary["selected_loss"] == "ssim_dice"
    assert all((tmp_path / "cmp" / n / "checkpoints" / "last.pt").exists() for n in summary["comparison"])
    assert {"mask_iou", "mask_iou_soft", "rmse"} <= set(summary["final_metrics"])
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        depth = Image.open(io.BytesIO(zf.read(next(n for n in names if n.startswith("depth/")))))
        mask = np.asarray(Image.open(io.BytesIO(zf.read(next(n for n in names if n.startswith("masks/"))))))
    assert depth.mode.startswith("I;16") and depth.size == (64, 64)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    assert "README.txt" in names and len([n for n in names if n.startswith("depth/")]) == 2
    fig = study.plot_comparison()
    assert [ax.get_title() for ax in fig.axes] == ["train_loss", "val_loss", "val_mask_iou", "val_rmse"]
    viewer = study.run.viewer()
    assert viewer.n == 2 and np.isfinite(viewer.rmses).all()
    assert all(v.any() for v in study.run.predictions()["valid"])  # predict() with targets for the viewer


def test_viewer_and_grid_render(tmp_path):
    run = DepthSegRun(depth_config("g", width=2), "synthetic", workdir=tmp_path, synthetic_kwargs=SYNTH)
    run.prepare()
    assert run.preview(2, 48).shape == (96, 192, 3)
    ds = run.dataset("val")
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    out = run.build_model()(batch["input"])
    grid = run.render_grid(batch["input"], out, batch["target"])
    assert grid.dtype == np.uint8 and grid.shape == (2 * 96 + 2, 5 * 96 + 8, 3)  # epoch 1 of the default schedule: 96 px
    assert run.n_parameters() == sum(p.numel() for p in run.build_model().parameters())


def test_parameter_count_without_building_the_weights(tmp_path):
    cfg = depth_config("n", width=16)
    assert DepthSegRun(cfg, "synthetic", workdir=tmp_path / "a").n_parameters() == 10_343_490
    rgb = DepthSegRun(depth_config("n", inputs="rgb", width=2), "synthetic", workdir=tmp_path / "b")
    assert rgb.n_parameters() == sum(p.numel() for p in rgb.build_model().parameters())


# ----------------------------------------------------------------------------------------------- notebook
def _notebook(tmp_path, **params):
    workdir = tmp_path / "work"
    run_notebook("depth_segmentation", {"SMOKE": True, "WIDTH": 4, "WORKDIR": str(workdir), **params},
                 out_dir=tmp_path / "nb")
    return json.loads((workdir / "summary.json").read_text()), workdir


@pytest.mark.slow
def test_notebook_smoke_synthetic_two_losses(tmp_path):
    summary, workdir = _notebook(tmp_path, LOSS=["rmse_bce_dice", "ssim_dice"])
    assert summary["notebook"] == "depth_segmentation" and summary["data"]["layout"] == "modest"
    assert {"mask_iou", "mask_iou_soft", "rmse", "loss"} <= set(summary["final_metrics"])
    assert set(summary["comparison"]) == {"rmse_bce_dice", "ssim_dice"}
    assert (workdir / "rmse_bce_dice" / "predictions.zip").exists()


@pytest.mark.slow
def test_notebook_smoke_eva_two_inputs(tmp_path):
    data = need(SHARED_DATA / "eva_fgbg_samples")
    summary, workdir = _notebook(tmp_path, DATA=str(data), INPUTS="bg+bg_fg", DEPTH_NEAR="dark", DEVICES=2)
    assert summary["data"]["layout"] == "fgbg" and summary["data"]["inputs"] == "bg+bg_fg"
    assert torch.load(workdir / "checkpoints" / "last.pt", weights_only=True)["world_size"] == 2  # DDP (issue 15)
    assert summary["epochs_completed"] == 2 and (workdir / "predictions.zip").exists()
    assert {"mask_iou", "mask_iou_soft", "rmse"} <= set(summary["final_metrics"])


@pytest.mark.slow
def test_notebook_smoke_rgbd_one_input(tmp_path):
    data = need(SHARED_DATA / "rgbd_sod_mix")
    summary, workdir = _notebook(tmp_path, DATA=str(data), INPUTS="rgb")
    assert summary["data"]["layout"] == "rgbd" and summary["config"]["model_kwargs"]["inputs"] == "rgb"
    assert {"mask_iou", "mask_iou_soft", "rmse"} <= set(summary["final_metrics"])
    with zipfile.ZipFile(workdir / "predictions.zip") as zf:
        depth = Image.open(io.BytesIO(zf.read(next(n for n in zf.namelist() if n.startswith("depth/")))))
        assert depth.mode.startswith("I;16") and max(depth.size) >= 400  # at the original resolution


def test_demo_entry():
    assert DEMO["depth_segmentation"]["EXPERIMENT"] == "demo_depth"


def test_loss_kwargs_per_loss_and_bad_loss_names(tmp_path):
    cfg = depth_config("kw", width=2, loss_kwargs={"ssim_dice": {"ssim_weight": 1.0}})
    study = DepthSegStudy(cfg, "synthetic", ["rmse_bce", "ssim_dice"], workdir=tmp_path)
    assert study.runs["ssim_dice"].cfg.loss_kwargs == {"ssim_weight": 1.0}
    assert study.runs["rmse_bce"].cfg.loss_kwargs == {}
    assert study.runs["ssim_dice"].ws.workdir == tmp_path / "ssim_dice"
    with pytest.raises(KeyError, match="valid loss names"):
        DepthSegStudy(cfg, "synthetic", ["rmse_bce", "ssim"], workdir=tmp_path)
    for name in ("dice", "ce", ["rmse_bce", "bce"]):  # segmentation losses: registered, but not depth + mask
        with pytest.raises(KeyError, match="valid loss names for depth \\+ mask: rmse_bce_dice, ssim_dice, rmse_bce"):
            DepthSegStudy(depth_config("kw", width=2), "synthetic", name, workdir=tmp_path)
