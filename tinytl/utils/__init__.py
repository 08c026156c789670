"""tinytl.utils: helpers named as ``torch.utils``; today ``tinytl.utils.data``.

``import tinytl`` does not import this package: ``tl.utils`` is loaded on first
use (see ``_LAZY`` in ``tinytl/__init__.py``).

Read next: ``tinytl/utils/data.py``.
"""
from . import data

__all__ = ["data"]
