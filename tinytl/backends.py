"""``tl.backends``: the switches PyTorch scripts set in their first lines, so they run unchanged.

- ``tl.backends.mps.is_available()`` / ``is_built()``: False (tinytl runs on the CPU and CUDA GPUs).
- ``tl.backends.cudnn``: ``deterministic``, ``benchmark``, ``enabled``, ``allow_tf32`` are plain
  attributes a script may set; tinytl uses no cuDNN (its GEMMs are cuBLAS, its kernels its own,
  and they are deterministic), so setting them changes nothing. ``is_available()`` is False.
- ``tl.backends.cuda.matmul.allow_tf32``: likewise a plain attribute.
"""
from types import SimpleNamespace


class _Mps:
    """``torch.backends.mps``: Apple's GPUs, which tinytl does not drive."""

    @staticmethod
    def is_available() -> bool:
        return False

    @staticmethod
    def is_built() -> bool:
        return False


class _Cudnn:
    """``torch.backends.cudnn``: attributes a script sets; tinytl has nothing that reads them."""

    def __init__(self):
        self.enabled = True
        self.deterministic = False
        self.benchmark = False
        self.allow_tf32 = True

    @staticmethod
    def is_available() -> bool:
        return False

    @staticmethod
    def version():
        return None


mps = _Mps()
cudnn = _Cudnn()
cuda = SimpleNamespace(matmul=SimpleNamespace(allow_tf32=False))
