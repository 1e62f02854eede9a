"""Hyperparameter tuning for the U-Net study (issue 4). One word, one meaning: a *study* is one Optuna study
over one grid of trial specs.

- :mod:`.specs`: trial specs, :class:`~.specs.StudyGrid` (the grid of one study) and the grids of seed 004;
- :mod:`.lr_search`: the two LR search procedures;
- :mod:`.trial`: one resumable trial (:class:`~.trial.BinaryTrial`, an Experiment);
- :mod:`.worker`: the Optuna work queue that runs the studies' trials (:class:`~.worker.StudyWorker`);
- :mod:`.liveness`: the trials' heartbeats and whether the process behind one is provably gone;
- :mod:`.storage`: ``STORAGE`` (journal file or RDB URL such as PostgreSQL) to an Optuna storage;
- :mod:`.journal_lease`: one machine at a time on a journal file (a second Colab session on it is refused).
"""
