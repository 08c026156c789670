"""Datasets: MNIST-1D generated offline, and MNIST-format IDX files read safely.

This file teaches three things:

1. **Generate, don't download.** ``mnist1d`` builds MNIST-1D (Greydanus, 2020:
   ten 1-D templates, randomly padded, sheared, scaled, translated and noised
   into 40-sample sequences) by calling the generator of the ``mnist1d``
   package, ``mnist1d.data.make_dataset``. Its ``get_dataset`` is never used:
   that one downloads a pickle, and unpickling runs whatever code the file holds.

2. **A cache keyed by everything that shapes the result.** The generated
   arrays are saved as ``.npz`` (plain arrays, loaded with
   ``allow_pickle=False``) under a name that contains a hash of every
   generation parameter and of the ``mnist1d`` version, so a change of any of
   them is a different file, never a stale hit. The file is written to a
   temporary name and renamed in one step (``os.replace``), so a crash leaves
   no half-written cache; a cache file that does not read back is regenerated.

3. **Reading a binary format without trusting it.** ``load_idx`` reads the IDX
   format of MNIST and Fashion-MNIST::

       [0x00 0x00][type code][ndim][ndim big-endian u32 sizes][data, big-endian, C order]

   The header is checked (magic, type code, ndim) and the length of the data
   is compared with what the sizes claim *before* anything is allocated; a
   gzipped file is decompressed at most one byte past that claim, so a small
   file cannot expand into gigabytes (a "gzip bomb").

Read next: ``tinytl/data.py`` (cutting the arrays into minibatches), then
``examples/`` (transfer between tasks built from MNIST-1D).
"""
from __future__ import annotations

import gzip
import hashlib
import importlib
import json
import math
import os
import random
import warnings
from pathlib import Path

import numpy as np

__all__ = ["mnist1d", "mnist1d_domains", "load_idx", "load_mnist", "cache_folder"]

_INSTALL_HINT = "pip install 'tinytl[data]'"
_CACHE_FORMAT = 1           # bump when the layout of the cached file changes
_KEYS = ("x", "y", "x_test", "y_test")


# ---------------------------------------------------------------- MNIST-1D

def cache_folder(cache_dir=None) -> Path:
    """The folder tinytl caches generated datasets in.

    Args:
        cache_dir: a folder to use; None picks, in order: the environment
            variable ``TINYTL_CACHE``, ``$XDG_CACHE_HOME/tinytl`` (when that
            variable holds an absolute path), ``~/.cache/tinytl``.

    Returns:
        The folder as a ``Path`` (not created here).
    """
    if cache_dir is not None:
        return Path(os.fspath(cache_dir)).expanduser()
    if os.environ.get("TINYTL_CACHE"):
        return Path(os.environ["TINYTL_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):                 # the XDG spec: ignore a relative path
        return Path(xdg) / "tinytl"
    return Path.home() / ".cache" / "tinytl"


def _import_mnist1d():
    try:
        importlib.import_module("mnist1d")
        module = importlib.import_module("mnist1d.data")
    except ImportError as e:
        raise ImportError(f"tinytl.datasets.mnist1d needs the 'mnist1d' package, which could not be "
                          f"imported ({e}). Install it with: {_INSTALL_HINT}") from e
    return module


def _mnist1d_version() -> str:
    try:
        from importlib.metadata import version
        return version("mnist1d")
    except Exception:
        return str(getattr(importlib.import_module("mnist1d"), "__version__", "unknown"))


def _jsonable(o):
    return o.tolist() if hasattr(o, "tolist") else repr(o)


def _generate(data_module, args) -> dict:
    """Call mnist1d's generator, restoring the global random states it reseeds."""
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = data_module.make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {"x": np.ascontiguousarray(d["x"], dtype=np.float32),
            "y": np.ascontiguousarray(d["y"], dtype=np.int64),
            "x_test": np.ascontiguousarray(d["x_test"], dtype=np.float32),
            "y_test": np.ascontiguousarray(d["y_test"], dtype=np.int64)}


def _read_cache(path: Path):
    """The cached dict, or None when the file is missing or does not read back as expected."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            d = {k: f[k] for k in _KEYS}
    except Exception:           # truncated zip, bad header, missing key, a pickled member ...
        return None
    ok = (d["x"].dtype == np.float32 and d["x_test"].dtype == np.float32
          and d["y"].dtype == np.int64 and d["y_test"].dtype == np.int64
          and d["x"].ndim == 2 and d["x_test"].ndim == 2 and d["y"].ndim == 1 and d["y_test"].ndim == 1
          and len(d["x"]) == len(d["y"]) and len(d["x_test"]) == len(d["y_test"]))
    return d if ok else None


def _write_cache(path: Path, d: dict) -> None:
    """Write ``d`` to ``path`` atomically (``tinytl.io.atomic_write``)."""
    from .io import atomic_write
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, **d))


def mnist1d(num_samples: int = 5000, seed: int = 42, train_split: float = 0.8, cache_dir=None,
            **kwargs) -> dict:
    """MNIST-1D, generated locally by ``mnist1d.data.make_dataset`` (never downloaded), and cached.

    Args:
        num_samples: examples in total (train + test), at least 10 (the
            generator makes ``num_samples // 10`` per class).
        seed: seed of the generator (a non-negative int below 2**32).
        train_split: fraction of the examples in the training split, in (0, 1].
        cache_dir: folder for the ``.npz`` cache; None for the default (see
            ``cache_folder``); False to generate every time and write nothing.
        **kwargs: any other parameter of ``mnist1d.data.get_dataset_args()``
            (``template_len``, ``padding``, ``scale_coeff``, ``max_translation``,
            ``corr_noise_scale``, ``iid_noise_scale``, ``shear_scale``,
            ``shuffle_seq``, ``final_seq_length``).

    Returns:
        A dict with ``x`` (float32, shape ``(n_train, final_seq_length)``, 40
        by default), ``y`` (int64 labels 0..9, shape ``(n_train,)``),
        ``x_test`` and ``y_test`` (the rest).

    Raises:
        ImportError: the ``mnist1d`` package is not installed (``pip install 'tinytl[data]'``).
        TypeError / ValueError: an argument of the wrong type or out of range.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
        raise TypeError(f"mnist1d: num_samples must be an int, got {type(num_samples).__name__}")
    if num_samples < 10:
        raise ValueError(f"mnist1d: num_samples must be at least 10 (one example per class), got {num_samples}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"mnist1d: seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"mnist1d: seed must be in [0, 2**32), got {seed}")
    if isinstance(train_split, bool) or not isinstance(train_split, (int, float, np.floating, np.integer)):
        raise TypeError(f"mnist1d: train_split must be a float, got {type(train_split).__name__}")
    if not 0 < train_split <= 1:
        raise ValueError(f"mnist1d: train_split must be in (0, 1], got {train_split}")
    if cache_dir is True or (cache_dir is not None and cache_dir is not False
                             and not isinstance(cache_dir, (str, os.PathLike))):
        raise TypeError(f"mnist1d: cache_dir must be a folder path, None or False, got {cache_dir!r}")

    data_module = _import_mnist1d()
    args = data_module.get_dataset_args()
    allowed = sorted(k for k in vars(args) if k not in ("num_samples", "seed", "train_split", "url"))
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"mnist1d: unknown parameter(s) {unknown}; the generator accepts {allowed}")
    vars(args).update(kwargs, num_samples=int(num_samples), seed=int(seed), train_split=float(train_split))

    if cache_dir is False:
        return _generate(data_module, args)

    # Every parameter the generator reads, and its version, goes into the file name.
    params = {k: v for k, v in vars(args).items() if k != "url"}
    key = json.dumps({"format": _CACHE_FORMAT, "mnist1d": _mnist1d_version(), "args": params},
                     sort_keys=True, default=_jsonable)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = cache_folder(cache_dir) / f"mnist1d_n{int(num_samples)}_seed{int(seed)}_{digest}.npz"

    cached = _read_cache(path)
    if cached is not None:
        return cached
    d = _generate(data_module, args)
    try:
        _write_cache(path, d)
    except OSError as e:        # a read-only or full disk: the data is still good, only not cached
        warnings.warn(f"mnist1d: could not write the cache file {path} ({e}); "
                      "pass cache_dir=False to skip caching", RuntimeWarning, stacklevel=2)
    return d


# MNIST-1D under a domain shift: the same ten templates, generated with other parameters.
# Measured with a 40-128-128-10 MLP (6 epochs of SGD; source: the defaults, 10000 examples, seed
# 42; each target 4000 examples, seed 7), accuracy on the target's test split of a model trained
# on the source vs one trained on the target's own labels (tinytl demo --only shift has the
# figures over seeds): "mild" 54% vs 71%, "stretched" 35% vs 89%, "tilted" 22% vs 41%. Shifts of
# noise alone (corr_noise_scale 0.4, iid_noise_scale 0.05: 47% vs 39%) or a milder shear with
# scale (shear_scale 1.5, scale_coeff 0.8: 60% vs 59%) were tried and left out: they hurt a
# target-trained model as much as the source one, so there is no gap for an adaptation to close.
MNIST1D_DOMAINS = {
    # the digits sit in a window of 56 samples instead of 72 (padding 28-44 zeros instead of
    # 36-60), so they come out ~1.3x wider after resampling to 40, and move half as far
    "mild": {"padding": [28, 44], "max_translation": 24},
    # a window of 42 samples (padding 20-30): ~1.7x wider digits, translated by at most 10
    "stretched": {"padding": [20, 30], "max_translation": 10},
    # a linear trend 4x as steep as the source's on average (shear_scale 3 instead of 0.75):
    # the shift that costs the source model the most (to 22%, near chance)
    "tilted": {"shear_scale": 3.0},
}


def mnist1d_domains(num_samples: int = 6000, target_samples: int = 4000, seed: int = 42, target_seed: int = 7,
                    domains=None, train_split: float = 0.8, cache_dir=None) -> dict:
    """A source domain of MNIST-1D and shifted target domains of the same ten classes.

    Each domain is ``mnist1d(**params)``: the source with the generator's defaults, each
    target with some of them changed (``MNIST1D_DOMAINS``: "mild" and "stretched" widen the
    digits and change how far they move, "tilted" adds a steeper linear trend). Every domain is generated offline and cached by
    ``mnist1d``, whose cache key holds every generation parameter, so a changed domain is
    a new file, never a stale one. Each domain is standardised on its own (the generator
    does it), as a new sensor's data would be.

    Args:
        num_samples, seed: size (train + test) and generator seed of the source.
        target_samples, target_seed: the same for every target domain (another seed than
            the source's, so no example is shared).
        domains: {name: parameters of ``mnist1d``} for the targets; None for ``MNIST1D_DOMAINS``.
        train_split, cache_dir: as in ``mnist1d``.

    Returns:
        ``{"source": d, "targets": {name: d, ...}}``, each ``d`` what ``mnist1d`` returns
        (``x, y, x_test, y_test``) plus ``"params"``: the parameters that differ from the
        generator's defaults, with ``num_samples`` and ``seed``.

    Raises:
        TypeError / ValueError: as ``mnist1d`` (an unknown parameter is named), or an empty
        ``domains``.
    """
    if domains is None:
        domains = MNIST1D_DOMAINS
    if not isinstance(domains, dict) or not domains:
        raise ValueError(f"mnist1d_domains: domains must be a non-empty dict {{name: parameters}}, got {domains!r}")
    for name, params in domains.items():
        if not isinstance(name, str) or not isinstance(params, dict):
            raise TypeError(f"mnist1d_domains: domains must map names (str) to dicts of mnist1d parameters, "
                            f"got {name!r}: {params!r}")
        if {"num_samples", "seed", "train_split"} & set(params):
            raise ValueError(f"mnist1d_domains: domain {name!r}: set its size and seed with target_samples= and "
                             f"target_seed=, not in its parameters")

    def one(n, s, params):
        d = dict(mnist1d(num_samples=n, seed=s, train_split=train_split, cache_dir=cache_dir, **params))
        d["params"] = dict(json.loads(json.dumps(params, default=_jsonable)), num_samples=int(n), seed=int(s))
        return d

    return {"source": one(num_samples, seed, {}),
            "targets": {name: one(target_samples, target_seed, params) for name, params in domains.items()}}


# ---------------------------------------------------------------- IDX files

# type code -> big-endian dtype of the data section
_IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_MAX_NDIM = 8
_CHUNK = 1 << 20


def _read_exactly(f, n: int) -> bytearray:
    """Read up to ``n`` bytes (fewer only at the end of the file), a chunk at a time.

    Memory grows with what the file really holds, not with ``n``: a header
    claiming terabytes costs nothing until the bytes are there.
    """
    buf = bytearray()
    while len(buf) < n:
        part = f.read(min(n - len(buf), _CHUNK))
        if not part:
            break
        buf += part
    return buf


def load_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format), plain or gzipped, into a native-endian array.

    Args:
        path: the file. Gzip is recognised by its magic bytes (``1f 8b``),
            whatever the file's extension.

    Returns:
        An array of the dtype the header names (uint8, int8, int16, int32,
        float32 or float64) and the shape it declares.

    Raises:
        ValueError: naming the file and what is wrong: a bad magic number, an
            unknown type code, a bad number of dimensions, or data shorter or
            longer than the header declares. Nothing is allocated for the data
            before its length has been checked (gzip: decompressed at most one
            byte past the declared length).
        FileNotFoundError: the file does not exist.
    """
    path = os.fspath(path)
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        f = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
        try:
            return _read_idx(f, path, gzipped, raw)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            if not gzipped:
                raise
            raise ValueError(f"{path}: not a valid gzip stream ({e})") from e
        finally:
            if gzipped:
                f.close()


def _read_idx(f, path: str, gzipped: bool, raw) -> np.ndarray:
    head = _read_exactly(f, 4)
    if len(head) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(head)} bytes; the header needs 4)")
    if head[0] != 0 or head[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number: the first two bytes must be "
                         f"00 00, found {head[0]:02x} {head[1]:02x})")
    code, ndim = head[2], head[3]
    if code not in _IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_TYPES)
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02X} (expected one of {known})")
    if not 1 <= ndim <= _IDX_MAX_NDIM:
        raise ValueError(f"{path}: bad number of dimensions {ndim} (expected 1 to {_IDX_MAX_NDIM})")
    dims_raw = _read_exactly(f, 4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise ValueError(f"{path}: the file ends inside the header ({ndim} dimension sizes declared)")
    shape = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
    dtype = _IDX_TYPES[code]
    expected = math.prod(shape) * dtype.itemsize          # Python ints: no overflow
    header = 4 + 4 * ndim

    if gzipped:
        # Decompress at most one byte past the claim: enough to tell "too long" from "exact".
        data = _read_exactly(f, expected + 1)
        if len(data) != expected:
            found = f"more than {expected}" if len(data) > expected else str(len(data))
            raise ValueError(f"{path}: shape {shape} of {dtype.name} expected {expected} bytes of "
                             f"data, found {found} (after decompression)")
        arr = np.frombuffer(data, dtype=dtype).reshape(shape)
    else:
        found = os.fstat(raw.fileno()).st_size - header
        if found != expected:
            raise ValueError(f"{path}: shape {shape} of {dtype.name} expected {expected} bytes of "
                             f"data, found {found}")
        buf = np.empty(expected, dtype=np.uint8)            # allocated only after the check
        if f.readinto(memoryview(buf)) != expected:
            raise ValueError(f"{path}: the file changed while it was being read")
        arr = buf.view(dtype).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def _find(folder: Path, names) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"load_mnist: no file {names[0]!r} (nor {', '.join(map(repr, names[1:]))}) "
                            f"in {str(folder)!r}")


def load_mnist(path_dir, kind: str = "train"):
    """Load MNIST (or Fashion-MNIST, which uses the same file names) from a folder of IDX files.

    Args:
        path_dir: the folder holding ``{kind}-images-idx3-ubyte`` and
            ``{kind}-labels-idx1-ubyte``, each optionally gzipped (``.gz``).
        kind: ``"train"`` or ``"t10k"`` (the test set; ``"test"`` is accepted too).

    Returns:
        ``(x, y)``: ``x`` float32 of shape ``(N, rows * cols)`` (784 for MNIST)
        scaled to [0, 1]; ``y`` int64 of shape ``(N,)``.

    Raises:
        FileNotFoundError: the folder or one of the two files is missing (named).
        ValueError: a bad ``kind``, a malformed file, or images and labels that do not match.
    """
    if kind == "test":
        kind = "t10k"
    if kind not in ("train", "t10k"):
        raise ValueError(f"load_mnist: kind must be 'train' or 't10k', got {kind!r}")
    folder = Path(os.fspath(path_dir)).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"load_mnist: {str(folder)!r} is not a folder")
    img_path = _find(folder, [f"{kind}-images-idx3-ubyte", f"{kind}-images-idx3-ubyte.gz",
                              f"{kind}-images.idx3-ubyte"])
    lbl_path = _find(folder, [f"{kind}-labels-idx1-ubyte", f"{kind}-labels-idx1-ubyte.gz",
                              f"{kind}-labels.idx1-ubyte"])
    images, labels = load_idx(img_path), load_idx(lbl_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"{img_path}: expected a 3-D uint8 image array, got {images.ndim}-D {images.dtype}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{lbl_path}: expected a 1-D uint8 label array, got {labels.ndim}-D {labels.dtype}")
    if len(images) != len(labels):
        raise ValueError(f"load_mnist: {len(images)} images in {img_path.name} but {len(labels)} "
                         f"labels in {lbl_path.name}")
    x = images.reshape(len(images), -1).astype(np.float32)
    x /= 255.0
    return x, labels.astype(np.int64)
