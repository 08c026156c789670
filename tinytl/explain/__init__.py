"""Explaining the transfer: what changed, what was reused, and what the model looks at.

- ``similarity.py``: ``cka``, ``minibatch_cka`` (``MinibatchCKA``), ``layer_similarity``
  (the CKA matrix between two models' layers), ``weight_drift`` and ``probe_layers``;
- ``attributions.py``: ``saliency``, ``input_x_gradient``, ``integrated_gradients`` (with
  its completeness delta), ``smoothgrad`` and the ``quadrature`` rules they use.

``tinytl explain BEFORE AFTER --data FILE`` (tinytl/cli.py) draws all of them for two
checkpoints; the demo report's "explain" section does it for its own models.

Read next: ``tinytl/explain/similarity.py``, then ``docs/transfer.md`` ("Explaining the transfer").
"""
from .attributions import input_x_gradient, integrated_gradients, quadrature, saliency, smoothgrad
from .similarity import (DriftReport, LayerSimilarity, MinibatchCKA, ProbeResult, cka, layer_similarity,
                         minibatch_cka, probe_layers, weight_drift)

__all__ = ["cka", "minibatch_cka", "MinibatchCKA", "layer_similarity", "LayerSimilarity", "weight_drift",
           "DriftReport", "probe_layers", "ProbeResult", "saliency", "input_x_gradient",
           "integrated_gradients", "smoothgrad", "quadrature"]
