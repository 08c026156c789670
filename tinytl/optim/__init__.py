"""Optimizers and learning-rate schedulers, with torch.optim's names, rules and state format.

- ``SGD`` (``sgd.py``): torch.optim.SGD's rule, parameter groups and L2-SP;
- ``Adam``, ``AdamW`` (``adam.py``): torch.optim.Adam's and AdamW's rules (bias correction,
  AdamW's decoupled weight decay, amsgrad, maximize), one fused kernel call per parameter
  (``adam_step``, see ``tinytl/kernels/reference.py``);
- ``Optimizer`` (``optimizer.py``): what they share (``param_groups``, ``state``, the checks
  before a step, ``state_dict``/``load_state_dict`` in torch's format, frozen parameters);
- ``lr_scheduler`` (``lr_scheduler.py``): StepLR, MultiStepLR, ExponentialLR,
  CosineAnnealingLR, LinearLR, LambdaLR, OneCycleLR, ReduceLROnPlateau, SequentialLR,
  giving torch's learning-rate sequence step for step.

Read next: ``tinytl/optim/optimizer.py``, then ``tinytl/optim/sgd.py``.
"""
import time

# SGD's store path (plain or streaming stores, tinytl/optim/sgd.py) for CPU parameters of
# at least _STREAM_MIN_BYTES is chosen by timing whole training iterations: the interval
# between one step() and the next holds the update and the forward and backward that
# read the weights it wrote, and the path changes both (streaming skips taking lines back
# from other cores' caches, but leaves the weights in memory rather than in this core's
# cache). _STREAM_TRIALS iterations each way, alternating; streaming is kept when its
# median is under _STREAM_GAIN times plain's (a margin for noise); with five each, two
# interrupted iterations (an evaluation or a pause between steps) cannot sway the median.
# The choice is timed again every _STREAM_RETIME steps: what pays depends on the
# machine's state (other processes, BLAS threads), which can change during a long run.
# They live here, on the package, where they were when tinytl.optim was one file: sgd.py
# reads them from here at each step, so setting tinytl.optim._STREAM_RETIME still works.
_STREAM_MIN_BYTES = 1 << 16
_STREAM_TRIALS = 5
_STREAM_GAIN = 0.95
_STREAM_RETIME = 500
_clock = time.perf_counter

from . import lr_scheduler  # noqa: E402
from .adam import Adam, AdamW  # noqa: E402
from .optimizer import Optimizer  # noqa: E402
from .sgd import SGD  # noqa: E402
from .optimizer import _check_grad, _on_like, _same_memory  # noqa: E402,F401  (module-level in the old optim.py)
from .sgd import _SGD_DEFAULTS  # noqa: E402,F401

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "lr_scheduler"]
