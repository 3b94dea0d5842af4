"""`jitorch.optim`: optimizers (SGD, Adam, AdamW, RMSprop, Adagrad) and learning-rate schedulers."""
from __future__ import annotations

from jitorch.optim import lr_scheduler
from jitorch.optim.adagrad import Adagrad
from jitorch.optim.adam import Adam
from jitorch.optim.adamw import AdamW
from jitorch.optim.optimizer import Optimizer
from jitorch.optim.rmsprop import RMSprop
from jitorch.optim.sgd import SGD

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "lr_scheduler"]
