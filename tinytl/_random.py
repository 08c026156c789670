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


class Generator:
    """A random-number generator object, as ``torch.Generator``: pass it as ``generator=``
    to the functions and samplers that take one, so their draws do not touch (and are not
    touched by) the global state that ``tl.manual_seed`` resets.

    Example::

        g = tl.Generator().manual_seed(0)
        train, val = tl.utils.data.random_split(ds, [0.8, 0.2], generator=g)
    """

    def __init__(self, device: str = "cpu"):
        self.device = device
        self._seed = int(np.random.SeedSequence().entropy % (2 ** 63))
        self.rng = np.random.default_rng(self._seed)

    def manual_seed(self, seed: int) -> "Generator":
        """Reseed; returns self (as torch's)."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"Generator.manual_seed: seed must be a non-negative integer, got {seed!r}")
        self._seed = int(seed)
        self.rng = np.random.default_rng(self._seed)
        return self

    def initial_seed(self) -> int:
        return self._seed

    def seed(self) -> int:
        """Reseed from fresh entropy and return the new seed."""
        self._seed = int(np.random.SeedSequence().entropy % (2 ** 63))
        self.rng = np.random.default_rng(self._seed)
        return self._seed


def rng_of(generator, fn: str = "generator") -> np.random.Generator:
    """The NumPy generator to draw from: ``generator``'s, or the global one when None."""
    if generator is None:
        return _generator
    if not isinstance(generator, Generator):
        raise TypeError(f"{fn}: generator must be a tl.Generator or None, got {type(generator).__name__}")
    return generator.rng
