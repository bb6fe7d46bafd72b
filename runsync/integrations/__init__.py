"""Framework integrations: one module per framework, each a line in the user's training script.

- ``runsync.integrations.lightning.RunsyncLogger`` — a Lightning ``Logger``;
- ``runsync.integrations.transformers.RunsyncCallback`` — a Hugging Face ``TrainerCallback``;
- ``runsync.integrations.keras.RunsyncCallback`` — a Keras 3 callback (any backend);
- ``runsync.integrations.xgboost.RunsyncCallback`` — an XGBoost ``TrainingCallback``;
- ``runsync.integrations.lightgbm.RunsyncCallback`` — a LightGBM callback;
- ``runsync.integrations.tensorboard.patch()`` — ``SummaryWriter`` calls also log to the current run
  (what ``runsync.init(sync_tensorboard=True)`` turns on).

Nothing here is imported by ``import runsync``, and this package imports no framework: each module
imports its framework when it is itself imported, so a user pays only for the framework they use.
Integrations use the writer's public API only; logging through them never raises into training.
"""

from __future__ import annotations

__all__: list[str] = []
