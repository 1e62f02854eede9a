"""Hyperparameter tuning for the U-Net study (issue 4): study definitions (:mod:`.studies`), the LR
searches (:mod:`.lr_search`), one resumable trial (:mod:`.trial`) and the Optuna engine (:mod:`.study`)."""
