"""Callbacks for training loops you write yourself: ``EarlyStopping``.

A training loop in tinytl is plain Python (see ``docs/tour.md``), so a callback is a small
object the loop calls, not a hook into a framework::

    stopper = tl.callbacks.EarlyStopping(patience=10)
    for epoch in range(max_epochs):
        train_one_epoch(model, opt)
        if stopper.step(validation_loss(model), model):
            break                   # the best weights are back in model
    stopper.restore(model)          # also when max_epochs ran out first

Read next: ``tinytl/transfer/search.py``, which trains every candidate this way.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Stop training when a monitored value (e.g. the validation loss) stops improving, and keep
    the weights of its best epoch (as Keras' ``EarlyStopping(restore_best_weights=True)``).

    Each ``step(value, model)`` compares ``value`` with the best so far: it improves when
    ``value < best - min_delta`` (mode "min") or ``value > best + min_delta`` (mode "max").
    On an improvement the model's state dict is copied (when ``restore_best``); after
    ``patience`` steps in a row without one, ``step`` returns True and, with ``restore_best``,
    loads the best state back into the model. A non-finite value (the loss diverged) stops at
    once, also restoring the best state.

    Args:
        patience: how many steps in a row without improvement stop the training (an integer
            >= 0; as in Keras and Lightning, 0 and 1 both stop at the first step that does not
            improve).
        min_delta: the smallest change that counts as an improvement (>= 0).
        mode: "min" (a loss) or "max" (an accuracy).
        restore_best: keep a copy of the best state and load it back when stopping.

    Attributes:
        best: the best value so far (None before the first step).
        best_step: the 0-based index of the step that gave it (None before the first step).
        steps: how many steps were taken.
        bad_steps: steps since the last improvement.
        improved: whether the last step improved.
        stopped: whether a step returned True.
        best_state: the state dict of the best step (``restore_best`` and a model passed), else None.
    """

    def __init__(self, patience: int, min_delta: float = 0.0, mode: str = "min", restore_best: bool = True):
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an integer >= 0, got {patience!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float, np.integer, np.floating)) \
                or not math.isfinite(min_delta) or min_delta < 0:
            raise ValueError(f"EarlyStopping: min_delta must be a number >= 0, got {min_delta!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min' or 'max', got {mode!r}")
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.mode = mode
        self.restore_best = bool(restore_best)
        self.best = None
        self.best_step = None
        self.steps = 0
        self.bad_steps = 0
        self.improved = False
        self.stopped = False
        self.best_state = None

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def step(self, value, model=None) -> bool:
        """Record one value (e.g. after an epoch); return True when training should stop.

        Args:
            value: the monitored number (a float, a 0-d array or a one-element Tensor).
            model: the Module whose best weights to keep (anything with ``state_dict`` and
                ``load_state_dict``), or None to only track the value.

        Returns:
            True when ``patience`` steps in a row did not improve, or ``value`` is not finite.
        """
        value = _as_float(value)
        self.improved = math.isfinite(value) and self._better(value)
        if self.improved:
            self.best, self.best_step, self.bad_steps = value, self.steps, 0
            if self.restore_best and model is not None:
                self.best_state = model.state_dict()          # a copy (state_dict copies)
        else:
            self.bad_steps += 1
        self.steps += 1
        if not math.isfinite(value) or (not self.improved and self.bad_steps >= max(self.patience, 1)):
            self.stopped = True
            if self.restore_best and model is not None:
                self.restore(model)
            return True
        return False

    def restore(self, model):
        """Load the best state kept so far into ``model`` (nothing to do before any improvement
        or without ``restore_best``). Returns ``model``."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        return model

    def state_dict(self) -> dict:
        """The counters (not the kept weights), e.g. to log them."""
        return {"best": self.best, "best_step": self.best_step, "steps": self.steps,
                "bad_steps": self.bad_steps, "stopped": self.stopped}

    def __repr__(self):
        return (f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, mode={self.mode!r}, "
                f"best={self.best}, best_step={self.best_step}, steps={self.steps})")


def _as_float(value) -> float:
    from .tensor import Tensor
    if isinstance(value, Tensor):
        value = value.item()
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"EarlyStopping.step: value must be a number, got {type(value).__name__}") from None
