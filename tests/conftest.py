"""Shared fixtures: the device list (CUDA cases skip without a GPU) and float64 helpers."""
import numpy as np
import pytest

import tinytl as tl


def _devices():
    devs = ["cpu"]
    try:
        if tl.cuda.is_available():
            devs.append("cuda")
    except Exception:
        pass
    return devs


DEVICES = _devices()


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    """Run a test on every device; the CUDA case is skipped where no GPU is usable."""
    if request.param not in DEVICES:
        pytest.skip("CUDA is not available (needs CuPy and a GPU)")
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
