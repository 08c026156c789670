"""Explaining the transfer: what changed, what was reused, and what the model looks at.

- ``similarity.py``: ``cka``, ``minibatch_cka`` (``MinibatchCKA``), ``layer_similarity``
  (the CKA matrix between two models' layers): do two layers compute the same thing?
- ``drift.py``: ``weight_drift``: which weights moved, and how far?
- ``probes.py``: ``probe_layers``: where does the task's information sit?
- ``attributions.py``: ``saliency``, ``input_x_gradient``, ``integrated_gradients`` (with
  its completeness delta), ``smoothgrad`` and the ``quadrature`` rules they use: what does
  the model look at in one input?

``_layers.py`` catches the layers' outputs with forward hooks; ``plots.py`` draws the figures.

``tinytl explain BEFORE AFTER --data FILE`` (tinytl/cli.py) draws all of them for two
checkpoints; the demo report's "explain" section does it for its own models.

Read next: ``tinytl/explain/similarity.py``, then ``docs/transfer.md`` ("Explaining the transfer").
"""
from .attributions import input_x_gradient, integrated_gradients, quadrature, saliency, smoothgrad
from .drift import DriftReport, weight_drift
from .probes import ProbeResult, probe_layers
from .similarity import LayerSimilarity, MinibatchCKA, cka, layer_similarity, minibatch_cka

__all__ = ["cka", "minibatch_cka", "MinibatchCKA", "layer_similarity", "LayerSimilarity", "weight_drift",
           "DriftReport", "probe_layers", "ProbeResult", "saliency", "input_x_gradient",
           "integrated_gradients", "smoothgrad", "quadrature"]
