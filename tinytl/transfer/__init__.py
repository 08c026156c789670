"""Transfer learning: reuse what a trained network learned on a new task.

The tools, in the order a transfer usually needs them:

- ``transfer_weights(src, dst)`` copies every weight whose name and shape
  match (from a Module, a state dict or a checkpoint file) and returns a
  ``TransferReport`` saying what was copied, what did not fit and why. A
  head of another size is *reported*, not silently kept or loudly fatal.
- ``replace_head(model, n)`` swaps the last ``Linear`` for a fresh one.
- ``freeze`` / ``unfreeze`` (glob patterns over parameter names) and
  ``summary`` decide and show which weights train.
- ``extract_features`` + ``linear_probe`` train a head on cached features of a
  frozen backbone; ``lp_ft`` probes first, then fine-tunes everything.
- ``discriminative_lr`` (smaller learning rates toward the input),
  ``GradualUnfreezing`` (unfreeze from the top, one group per epoch) and
  ``l2sp_groups`` (pull the backbone toward its pretrained weights) are the
  classic recipes for fine-tuning on few labels.
- ``scores`` (``logme``, ``leep``, ``nce``, ``hscore``, ``transrate``), ``rank_layers`` and
  ``rank_sources`` estimate, without training, which pretrained model and which layer will
  transfer best; ``search`` picks the recipe by validation with early stopping.
- ``adapt`` (with ``adabn``, ``coral_loss``, ``mmd_loss``, ``DomainAdversarialLoss``)
  trains on labelled source data while aligning the features of unlabelled target
  data from another distribution (unsupervised domain adaptation).
- ``adversarial_finetune`` fine-tunes against an attack (Madry's min-max, PGD
  examples mixed with clean ones), for a model that must resist small input
  changes (``tinytl/attacks.py``).

Freezing is ``Parameter.requires_grad = False``: the autograd records no
graph for a frozen prefix (its backward costs nothing) and ``SGD`` never
touches a frozen parameter (no weight decay, no momentum).

Read next: ``docs/transfer.md`` (when to use which), then ``examples/``.
"""
from .distill import distill, distillation_loss
from . import scores
from .adapt import (AdaptReport, DANNSchedule, DomainAdversarialLoss, GradientReversal, adabn, adapt, coral_loss,
                    domain_discriminator, grad_reverse, mmd_loss)
from .freezing import Summary, freeze, summary, unfreeze
from .peft import (LoRALinear, add_lora, bitfit, load_lora, load_lora_state_dict, lora_state_dict, merge_lora,
                   save_lora)
from .recipes import GradualUnfreezing, discriminative_lr, extract_features, l2sp_groups, linear_probe, lp_ft
from .search import (STRATEGIES, Phase, Ranking, SearchReport, Strategy, mlp_from_state, rank_layers,
                     rank_sources, register_strategy, search)
from .robust import adversarial_finetune
from .weights import TransferReport, replace_head, transfer_weights

__all__ = ["freeze", "unfreeze", "summary", "Summary", "replace_head", "transfer_weights", "TransferReport",
           "discriminative_lr", "GradualUnfreezing", "extract_features", "linear_probe", "lp_ft",
           "l2sp_groups", "add_lora", "LoRALinear", "merge_lora", "lora_state_dict", "load_lora_state_dict",
           "save_lora", "load_lora", "bitfit", "distill", "distillation_loss", "scores", "rank_layers",
           "rank_sources", "Ranking", "search", "SearchReport", "Strategy", "Phase", "register_strategy",
           "mlp_from_state", "adapt", "AdaptReport", "adabn", "coral_loss", "mmd_loss", "DomainAdversarialLoss",
           "grad_reverse", "GradientReversal", "DANNSchedule", "domain_discriminator", "adversarial_finetune"]
