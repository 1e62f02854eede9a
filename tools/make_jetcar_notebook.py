"""Writes notebooks/jetcar_segmentation.ipynb (kept so the notebook's cells can be reviewed as code)."""
import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
cells = [
    md("""# JetCar: 22-class street segmentation (U-Net + MobileNetV2), resumable on Colab

[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/seglib/seglib/blob/main/notebooks/jetcar_segmentation.ipynb)

The flow of the original JetCar training notebook (StefansAI/JetCar, `docs/Model Training.md`):
constants -> Google Drive -> data -> TensorBoard -> train -> inspect -> predict and zip to Drive.
What changed: **Run all** again after a disconnect and training continues exactly where it stopped
(model, optimizer, LR scheduler, early stopping, RNG, epoch *and* batch), checkpoints are written
atomically to Drive, and prediction uses the same normalisation as training.

`DATA` can be `"synthetic"` (generated street scenes, no download), a folder, a `.zip` (e.g. on Drive:
`/content/drive/MyDrive/JetCar/JetCar_DataSet.zip`) or a Google Drive file id / share URL."""),
    code("""# Parameters (papermill tag: parameters)
DATA = "synthetic"            # "synthetic" | folder | .zip | Drive file id or share URL
DATA_SHA256 = None            # expected sha256 of a zip/download, or None
SYNTHETIC = None              # generator options for DATA="synthetic" (dict: n_train, n_val, n_test, size)
EXPERIMENT = "jetcar"
WORKDIR = None                # None: /content/drive/MyDrive/seglib/<EXPERIMENT> on Colab, runs/<EXPERIMENT> elsewhere
N_CLASSES = 22
CLASS_NAMES = None            # None: the 22 JetCar classes (or CamVid's for 12)
IGNORE_INDEX = None           # e.g. 11 for CamVid void
IMG_SIZE = 224
RESIZE_SCHEDULE = None        # e.g. {1: 96, 4: 160, 9: 224}
AUGMENT = "street"
LOSS = "dice_iou_bce"         # Dice + IoU + 0.8 x BCE as the original; or "ce", "dice_ce"
BATCH_SIZE = 16               # the original used 200 on Colab Pro High-RAM
EPOCHS = 500
LR = 1e-3
LR_OVERRIDE = None            # set to change the learning rate of a resumed run
SCHEDULER_PATIENCE = 5
EARLY_STOP_PATIENCE = 10
CHECKPOINT_MINUTES = 5
ENCODER_WEIGHTS = "imagenet"  # falls back to random init (with a warning) when offline
SEED = 0
SMOKE = False                 # tiny sizes and few images: a CPU run in seconds"""),
    md("## Colab set-up\nInstalls seglib on Colab only (Colab's own torch and torchvision are kept)."),
    code("""import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/seglib/seglib"], check=True)"""),
    md("## Constants, Drive and work folder"),
    code("""%matplotlib inline
import seglib
from seglib import TrainConfig
from seglib.config import smoke_config
from seglib.runtime import in_colab, versions
from seglib.segmentation import SegmentationRun

cfg = TrainConfig(
    experiment=EXPERIMENT, model="unet_mobilenet_v2", encoder_weights=ENCODER_WEIGHTS,
    n_classes=N_CLASSES, ignore_index=IGNORE_INDEX, img_size=IMG_SIZE, resize_schedule=RESIZE_SCHEDULE,
    augment=AUGMENT, loss=LOSS, batch_size=BATCH_SIZE, epochs=EPOCHS, lr=LR,
    scheduler_kwargs={"factor": 0.25, "patience": SCHEDULER_PATIENCE}, early_stop_patience=EARLY_STOP_PATIENCE,
    checkpoint_minutes=CHECKPOINT_MINUTES, seed=SEED,
)
if SMOKE:
    cfg = smoke_config(cfg)
run = SegmentationRun(cfg, DATA, workdir=WORKDIR, class_names=CLASS_NAMES, data_sha256=DATA_SHA256,
                      smoke=SMOKE, synthetic_kwargs=SYNTHETIC, notebook="jetcar_segmentation")
print("WORKDIR:", run.ws.workdir, "| fast local folder:", run.ws.local, "| device:", run.device)
print(versions())"""),
    md("## Data\nFetched (and cached), layout detected, every mask checked, counts per split printed."),
    code("""splits = run.prepare()"""),
    md("## TensorBoard\nOn Colab it shows inline here; refresh it while training runs below."),
    code("""if in_colab():
    get_ipython().run_line_magic("load_ext", "tensorboard")
    get_ipython().run_line_magic("tensorboard", f"--logdir {run.tensorboard_dir}")
else:
    print(f"tensorboard --logdir {run.tensorboard_dir}")"""),
    md("## Train\nResumes automatically from `WORKDIR/checkpoints/last.pt` when it exists."),
    code("""result = run.train(lr_override=LR_OVERRIDE)
print(f"{result.epochs_completed} epochs done; best {result.best}; resumed from {result.resumed_from}")"""),
    md("## Inspect\nTraining curves, per-class IoU and confusion matrix of the best checkpoint on the validation split."),
    code("""from IPython.display import display
from seglib.inspect import plot_confusion_matrix, plot_history, plot_per_class_iou

metrics = run.evaluate()
print({k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})
display(plot_history(result.history))
display(plot_per_class_iou(metrics["iou_per_class"], run.class_names, run.colors))
display(plot_confusion_matrix(metrics["confusion_matrix"], run.class_names))"""),
    md("Viewer: slide over validation images, toggle true/predicted mask, change the overlay opacity, "
       "order worst first (per-image IoU)."),
    code("""viewer = run.viewer()
viewer.show()"""),
    md("## Predict and zip to Drive\n`Pred_*.png` (grey value = class id) and colour previews in `WORKDIR/predictions.zip`."),
    code("""zip_path = run.export()"""),
    md("## Summary"),
    code("""summary_path = run.write_summary()
print(open(summary_path).read())"""),
]
cells[1].metadata["tags"] = ["parameters"]
nb = nbf.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.metadata["language_info"] = {"name": "python"}
nb.metadata["accelerator"] = "GPU"
nb.metadata["colab"] = {"provenance": [], "gpuType": "T4"}
nbf.write(nb, "notebooks/jetcar_segmentation.ipynb")
