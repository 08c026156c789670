"""tinytl.callbacks.EarlyStopping: patience, modes, min_delta, and the best weights restored."""
import math

import numpy as np
import pytest

import tinytl as tl
from tinytl import nn
from tinytl.callbacks import EarlyStopping


def test_lazy_import():
    assert tl.callbacks.EarlyStopping is EarlyStopping


def test_stops_after_patience_and_restores_the_best_weights():
    tl.manual_seed(0)
    model = nn.Linear(3, 2)
    stopper = EarlyStopping(patience=2)
    losses = [1.0, 0.5, 0.7, 0.4, 0.6, 0.45, 0.9]
    weights = []
    stopped_at = None
    for epoch, loss in enumerate(losses):
        model.weight.data[...] = epoch            # "training" changes the weights every epoch
        weights.append(model.weight.data.copy())
        if stopper.step(loss, model):
            stopped_at = epoch
            break
    assert stopped_at == 5                        # 0.6, 0.45: two steps without beating 0.4
    assert stopper.best == 0.4 and stopper.best_step == 3 and stopper.stopped
    np.testing.assert_array_equal(model.weight.data, weights[3])     # the best, not the last
    assert stopper.bad_steps == 2 and stopper.steps == 6


def test_restore_when_the_loop_ends_first_and_mode_max_min_delta():
    model = nn.Linear(2, 1)
    stopper = EarlyStopping(patience=5, mode="max", min_delta=0.05)
    for epoch, acc in enumerate([0.5, 0.6, 0.62, 0.64, 0.66]):
        model.bias.data[...] = epoch
        assert not stopper.step(acc, model)
    # 0.62 and 0.64 are within min_delta of 0.6; 0.66 improves on it
    assert stopper.best_step == 4 and stopper.best == 0.66
    model.bias.data[...] = -1
    stopper.restore(model)
    assert model.bias.data[0] == 4
    assert EarlyStopping(patience=0).step(1.0) is False


def test_patience_zero_and_one_stop_at_the_first_step_without_improvement():
    for p in (0, 1):
        s = EarlyStopping(patience=p)
        assert not s.step(1.0) and not s.step(0.9)
        assert s.step(0.95)


def test_non_finite_value_stops_and_restores():
    model = nn.Linear(2, 2)
    stopper = EarlyStopping(patience=10)
    stopper.step(tl.tensor(np.float32(0.3)), model)           # a Tensor works too
    best = model.weight.data.copy()
    model.weight.data[...] = 7.0
    assert stopper.step(math.nan, model)
    np.testing.assert_array_equal(model.weight.data, best)
    assert stopper.best == pytest.approx(0.3)


def test_without_restore_best_keeps_no_state():
    model = nn.Linear(2, 2)
    stopper = EarlyStopping(patience=1, restore_best=False)
    stopper.step(1.0, model)
    model.weight.data[...] = 3.0
    assert stopper.step(2.0, model)
    assert stopper.best_state is None and (model.weight.data == 3.0).all()
    assert stopper.state_dict()["best"] == 1.0 and "best_step=0" in repr(stopper)


def test_bad_arguments():
    with pytest.raises(ValueError, match="EarlyStopping: patience"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="EarlyStopping: patience"):
        EarlyStopping(patience=2.5)
    with pytest.raises(ValueError, match="min_delta"):
        EarlyStopping(patience=1, min_delta=-0.1)
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(patience=1, mode="up")
    with pytest.raises(TypeError, match="EarlyStopping.step: value must be a number"):
        EarlyStopping(patience=1).step("low")
