"""tinytl's random state: one NumPy Generator, reseeded by ``tl.manual_seed``.

Initialisation (``nn.Linear``) and data shuffling (``tl.data.DataLoader``
without an explicit seed) draw from ``generator()``, so ``tl.manual_seed(n)``
makes a whole run reproducible.
"""
import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed tinytl's global generator (like ``torch.manual_seed``) and return it."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative integer, got {seed!r}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def generator() -> np.random.Generator:
    """The global generator (reseeded by manual_seed)."""
    return _generator
