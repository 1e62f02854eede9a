"""Optional engines and integrations. Nothing here is imported by ``import seglib``.

- :mod:`seglib.integrations.catalyst_compat`: install check and runtime fixes for Catalyst 22.4 on
  current accelerate (no installed package is edited).
- :mod:`seglib.integrations.catalyst_engine`: the JetCar notebook's ``ENGINE="catalyst"`` training path
  (Catalyst ``SupervisedRunner``), a thin adapter over :class:`seglib.train.state.TrainingState`: seglib's
  checkpoints, resume, early stopping and Drive mirroring.
- :mod:`seglib.integrations.catalyst_callbacks`: its Catalyst callbacks, runner and loggers.
"""
