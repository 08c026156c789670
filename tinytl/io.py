"""Checkpoints: save and load weights without trusting the file.

This file teaches three things:

1. **The safetensors layout**, written by hand in a few lines::

       [8 bytes: N, little-endian u64][N bytes: JSON header, padded with spaces][data]

   The header maps each tensor name to ``{"dtype": "F32", "shape": [...],
   "data_offsets": [begin, end]}`` (offsets relative to the start of the data
   section) plus an optional ``"__metadata__"`` dict of strings. Tensors are laid
   out contiguously in sorted-name order, little-endian, C order, with no gaps.
   tinytl adds ``__metadata__["tinytl.sha256"]``, the SHA-256 of the whole data
   section, and checks it on load. Files from ``safetensors.torch.save_file``
   load here, and files from here load in ``safetensors.numpy`` / ``.torch``.

2. **Loading an untrusted file.** Nothing in a checkpoint is ever executed (no
   pickle). Every claim the header makes (dtypes, shapes, offsets) is checked
   against the others and against the size of the file *before* a single tensor
   is allocated, so a 100-byte file claiming a terabyte tensor costs nothing.
   Every problem raises ``CheckpointError`` (a ``ValueError``) naming the file.
   ``.npz`` files are read member by member through ``zipfile`` and NumPy's
   ``.npy`` header parser with the same rules (``allow_pickle`` is never on).

3. **Atomic saves.** The new file is written to a temporary file in the same
   folder, flushed to disk, then renamed over the target in one step
   (``os.replace``). A crash, a full disk or a kill at any moment leaves either
   the old checkpoint or the new one, never half of each.

Read next: ``SECURITY.md`` (what this promises and what it does not), then
``tinytl/nn/module.py`` (``state_dict`` / ``load_state_dict``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
import zipfile
from collections.abc import Mapping

import numpy as np

__all__ = ["CheckpointError", "save", "load", "read_header", "load_metadata"]

# safetensors dtype codes <-> NumPy dtypes (always little-endian on disk).
DTYPES = {
    "F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8"),
    "I8": np.dtype("i1"), "I16": np.dtype("<i2"), "I32": np.dtype("<i4"), "I64": np.dtype("<i8"),
    "U8": np.dtype("u1"), "U16": np.dtype("<u2"), "U32": np.dtype("<u4"), "U64": np.dtype("<u8"),
    "BOOL": np.dtype("?"),
}
_CODES = {d.newbyteorder("="): code for code, d in DTYPES.items()}   # native dtype -> code

MAX_HEADER_BYTES = 100_000_000   # the cap the reference (Rust) implementation uses
MAX_NDIM = 32                    # NumPy 1.x's limit; no real checkpoint comes close
CHECKSUM_KEY = "tinytl.sha256"
_NPZ_COMMENT = b"tinytl-metadata:"   # npz metadata lives in the zip comment, after this tag
_DEFLATE_MAX_RATIO = 1032            # zlib cannot expand more than this per compressed byte
_CHUNK = 1 << 24


class CheckpointError(ValueError):
    """A checkpoint file is malformed, truncated, corrupted or not a checkpoint.

    ``str(err)`` names the file and the problem; ``err.path`` and ``err.problem``
    hold them separately.
    """

    def __init__(self, path, problem: str):
        self.path, self.problem = os.fspath(path), problem
        super().__init__(f"{self.path}: {problem}")


# ---------------------------------------------------------------- public API

def save(obj, path, metadata: dict[str, str] | None = None) -> None:
    """Save a Module's weights or a dict of arrays, atomically.

    The format follows the extension: ``.npz`` writes a NumPy zip archive
    (without pickle); anything else writes safetensors. Everything is checked
    before the first byte is written, and the target is replaced in one step:
    if saving fails, the previous file is left as it was.

    Args:
        obj: a dict ``name -> array`` (NumPy, CuPy, or anything with a ``.data``
            array such as a tinytl ``Tensor``/``Parameter``), or an object with a
            ``state_dict()`` method (a ``Module``), which is called.
        path: where to write (str or ``os.PathLike``).
        metadata: optional ``str -> str`` pairs stored in the file (the
            safetensors ``__metadata__``; the zip comment of an ``.npz``).

    Raises:
        TypeError: a name that is not a string, a value that is not an array,
            or a dtype tinytl does not store (object, complex, strings, ...).
        ValueError: an empty or reserved name, or malformed metadata.
    """
    path = os.fspath(path)
    if callable(getattr(obj, "state_dict", None)) and not isinstance(obj, Mapping):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(f"save() expects a dict of arrays or a Module, got {type(obj).__name__}")
    arrays = {}                                  # name -> little-endian, C-contiguous ndarray
    for name, value in obj.items():
        _check_name(name)
        if name in arrays:                       # only possible for exotic Mappings
            raise ValueError(f"duplicate tensor name {name!r}")
        arrays[name] = _as_numpy(name, value)
    meta = _check_metadata(metadata)
    if _is_npz(path):
        comment = _NPZ_COMMENT + json.dumps(meta, ensure_ascii=False, sort_keys=True).encode()
        if len(comment) > 0xFFFF:
            raise ValueError(f"metadata is too large for an .npz file ({len(comment)} bytes, at most 65535)")
        atomic_write(path, lambda f: _write_npz(f, arrays, comment))
    else:
        atomic_write(path, lambda f: _write_safetensors(f, arrays, meta))


def load(path) -> dict[str, np.ndarray]:
    """Load every array of a checkpoint into memory; never runs code from the file.

    Args:
        path: a ``.safetensors`` (or any other extension) or ``.npz`` file.

    Returns:
        A dict ``name -> np.ndarray``; each array is owned, writeable,
        C-contiguous and in native byte order. The file is closed on return,
        so saving over it right away is fine. Metadata: ``load_metadata(path)``.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: (a ValueError) the file is malformed, truncated or
            fails its checksum; the message names the file and the problem.
    """
    path = os.fspath(path)
    if _is_npz(path):
        return _load_npz(path)
    with open(path, "rb") as f:
        entries, metadata, data_start, _ = _read_st_header(f, path)
        f.seek(data_start)
        digest = hashlib.sha256()
        out = {}
        for name, (dtype, shape, begin, end) in entries.items():   # in file order
            arr = np.empty(shape, dtype)
            view = arr.reshape(-1).view(np.uint8)
            _read_into(f, view, path, name)
            digest.update(view)
            out[name] = arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))
    expected = metadata.get(CHECKSUM_KEY)
    if expected is not None and digest.hexdigest() != expected:
        raise CheckpointError(path, "checksum mismatch: the tensor data is corrupted "
                                    f"(sha256 {digest.hexdigest()}, header says {expected})")
    return out


def read_header(path) -> tuple[dict[str, tuple[str, tuple[int, ...], int]], dict[str, str]]:
    """Describe a checkpoint without reading its tensor data (``tinytl inspect``).

    The header is validated exactly as ``load`` does; the checksum, which needs
    the data, is not checked.

    Args:
        path: a safetensors or ``.npz`` file.

    Returns:
        ``(tensors, metadata)``: ``tensors`` maps each name, in file order, to
        ``(dtype name such as "float32", shape tuple, size in bytes)``;
        ``metadata`` is the file's ``str -> str`` metadata.

    Raises:
        FileNotFoundError, CheckpointError: as ``load``.
    """
    path = os.fspath(path)
    if _is_npz(path):
        with open(path, "rb") as f, _npz_errors(path):
            with zipfile.ZipFile(f) as zf:
                members, metadata = _npz_scan(zf, path, os.fstat(f.fileno()).st_size)
        return {k: (m[1].name, m[2], m[4]) for k, m in members.items()}, metadata
    with open(path, "rb") as f:
        entries, metadata, _, _ = _read_st_header(f, path)
    tensors = {k: (dt.newbyteorder("=").name, shape, end - begin)
               for k, (dt, shape, begin, end) in entries.items()}
    return tensors, metadata


def load_metadata(path) -> dict[str, str]:
    """The ``str -> str`` metadata stored in a checkpoint (``read_header(path)[1]``).

    Args:
        path: a safetensors or ``.npz`` file.

    Returns:
        A dict: whatever was passed to ``save``; safetensors files written by
        tinytl also hold ``"tinytl.sha256"`` and ``"format": "pt"``.
    """
    return read_header(path)[1]


# ---------------------------------------------------------------- checking what we save

_SAVE_DTYPES = set(_CODES)


def _is_npz(path: str) -> bool:
    return path.lower().endswith(".npz")


def _check_name(name) -> None:
    if not isinstance(name, str):
        raise TypeError(f"tensor names must be strings, got {type(name).__name__} {name!r}")
    if not name:
        raise ValueError("tensor names must not be empty")
    if name == "__metadata__":
        raise ValueError("'__metadata__' is reserved by the safetensors format and cannot name a tensor")
    if "\x00" in name:
        raise ValueError(f"tensor name {name!r} contains a NUL character")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"tensor name {name!r} is not valid UTF-8 text") from None


def _as_numpy(name: str, value) -> np.ndarray:
    """A little-endian, C-contiguous NumPy copy or view of ``value``, or a TypeError naming it."""
    arr = _unwrap(value)
    if arr is None and not isinstance(value, (np.ndarray, np.generic)):
        inner = getattr(value, "data", None)         # a tinytl Tensor / Parameter
        arr = _unwrap(inner) if inner is not None else None
    if arr is None:
        kind = f"{type(value).__module__}.{type(value).__qualname__}".replace("builtins.", "")
        raise TypeError(f"tensor {name!r}: expected a NumPy/CuPy array or a tinytl Tensor, got {kind}")
    if arr.dtype.hasobject:
        raise TypeError(f"tensor {name!r}: object arrays are refused (storing them would need pickle)")
    native = arr.dtype.newbyteorder("=") if arr.dtype.byteorder in "<>" else arr.dtype
    if native not in _SAVE_DTYPES or arr.dtype.names is not None:
        raise TypeError(f"tensor {name!r}: dtype {arr.dtype} is not supported "
                        "(use float16/32/64, int8-64, uint8-64 or bool)")
    # (not np.ascontiguousarray, which turns a 0-d array into shape (1,))
    return arr.astype(DTYPES[_CODES[native]], order="C", copy=False)


def _unwrap(value):
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, np.generic):
        return np.asarray(value)
    if hasattr(value, "__cuda_array_interface__"):   # a CuPy array: copy it to the host
        from . import backend
        if backend.is_cupy_array(value):
            return backend.to_numpy(value)
        if callable(getattr(value, "get", None)):     # CuPy imported by the user, not yet by tinytl
            return np.asarray(value.get())
    return None


def _check_metadata(metadata) -> dict[str, str]:
    meta = {} if metadata is None else metadata
    if not isinstance(meta, Mapping):
        raise TypeError(f"metadata must be a dict of str -> str, got {type(meta).__name__}")
    for k, v in meta.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"metadata must map str -> str, got {k!r}: {v!r}")
        for s in (k, v):
            try:
                s.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"metadata {k!r}: {s!r} is not valid UTF-8 text") from None
    if CHECKSUM_KEY in meta:
        raise ValueError(f"metadata key {CHECKSUM_KEY!r} is reserved: tinytl computes it")
    return dict(meta)


# ---------------------------------------------------------------- writing

def _write_safetensors(f, arrays: dict, meta: dict) -> None:
    """Header, then every tensor's bytes back to back in sorted-name order."""
    names = sorted(arrays)
    digest = hashlib.sha256()
    header, offset = {}, 0
    for name in names:
        a = arrays[name]
        header[name] = {"dtype": _CODES[a.dtype.newbyteorder("=")], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        digest.update(a.reshape(-1).view(np.uint8))
    # "format": "pt" is what safetensors.torch writes; some readers look for it.
    header = {"__metadata__": {"format": "pt", **meta, CHECKSUM_KEY: digest.hexdigest()}, **header}
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)                     # pad so the data starts 8-byte aligned
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    for name in names:
        f.write(arrays[name].reshape(-1).view(np.uint8))


def _write_npz(f, arrays: dict, comment: bytes) -> None:
    """The same archive ``np.savez`` writes (one ``name.npy`` per array), minus pickle."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, a in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))  # reproducible bytes
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, a, allow_pickle=False)
        zf.comment = comment


def atomic_write(path, write) -> None:
    """Write through ``write(binary_file)`` into a temp file beside ``path``, then rename it over ``path``.

    Used for every file tinytl writes (checkpoints, dataset caches, demo results): a crash or
    kill at any moment leaves the old file or the new one, never a partial file.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    mode = _new_file_mode(path)
    tmp = tempfile.NamedTemporaryFile(dir=folder, prefix="." + os.path.basename(path) + ".",
                                      suffix=".tmp", delete=False)
    try:
        with tmp as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())         # the bytes are on disk before the name points at them
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
        os.replace(tmp.name, path)       # atomic: readers see the old file or the new one
    except BaseException:                # including KeyboardInterrupt: never leave the temp file
        try:
            os.unlink(tmp.name)
        except OSError:
            pass
        raise
    _fsync_dir(folder)                   # make the rename itself durable


def _new_file_mode(path: str):
    """Permissions for the new file: the old file's, else what the umask allows (None: keep 0600)."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        pass
    try:                                 # read the umask without os.umask(), which is not thread-safe
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:                      # Windows cannot open a folder; its rename is durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------- reading safetensors

class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise _DuplicateKey(k)
        d[k] = v
    return d


def _is_int(x) -> bool:
    return type(x) is int            # not bool, not float


def _read_st_header(f, path: str):
    """Parse and validate the header from the file size alone; reads no tensor data.

    Returns:
        (entries, metadata, data_start, data_len): ``entries`` maps name ->
        (dtype, shape, begin, end) sorted by ``begin``.
    """
    size = os.fstat(f.fileno()).st_size
    if size < 8:
        raise CheckpointError(path, f"file is {size} bytes, shorter than the 8-byte safetensors header length")
    (n,) = struct.unpack("<Q", _read_exact(f, 8, path))
    if n > MAX_HEADER_BYTES:
        raise CheckpointError(path, f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte cap")
    if n > size - 8:
        raise CheckpointError(path, f"header length {n} runs past the end of the {size}-byte file")
    raw = _read_exact(f, n, path)
    if not raw.startswith(b"{"):
        raise CheckpointError(path, "header does not start with '{' (not a safetensors file?)")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise CheckpointError(path, "header is not valid UTF-8") from None
    except _DuplicateKey as e:
        raise CheckpointError(path, f"header names {e.args[0]!r} twice") from None
    except (ValueError, RecursionError) as e:
        raise CheckpointError(path, f"header is not valid JSON ({type(e).__name__}: {e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(path, f"header is a JSON {type(header).__name__}, not an object")

    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(path, "__metadata__ must be an object mapping strings to strings")

    data_start, data_len = 8 + n, size - 8 - n
    entries = {}
    for name, info in header.items():
        entries[name] = _check_entry(path, name, info, data_len)

    # The tensors must tile the data section exactly: start at 0, no overlaps, no gaps, no tail.
    entries = dict(sorted(entries.items(), key=lambda kv: (kv[1][2], kv[1][3])))
    expected, previous = 0, None
    for name, (_, _, begin, end) in entries.items():
        if begin < expected:
            raise CheckpointError(path, f"tensor {name!r} overlaps tensor {previous!r}")
        if begin > expected:
            where = "the data does not start at offset 0" if previous is None else f"after {previous!r}"
            raise CheckpointError(path, f"gap of {begin - expected} bytes before tensor {name!r} ({where})")
        expected, previous = end, name
    if expected != data_len:
        raise CheckpointError(path, f"{data_len - expected} trailing bytes after the last tensor")
    return entries, metadata, data_start, data_len


def _check_entry(path: str, name: str, info, data_len: int):
    """(dtype, shape, begin, end) for one header entry, or a CheckpointError saying what is wrong."""
    def bad(problem):
        return CheckpointError(path, f"tensor {name!r}: {problem}")

    if not name:
        raise CheckpointError(path, "a tensor has an empty name")
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise bad("entry must be an object with exactly 'dtype', 'shape' and 'data_offsets'")
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(code, str) or code not in DTYPES:
        raise bad(f"unsupported dtype {code!r} (tinytl reads {', '.join(DTYPES)})")
    if not isinstance(shape, list) or not all(_is_int(d) for d in shape):
        raise bad(f"shape must be a list of integers, got {shape!r:.80}")
    if len(shape) > MAX_NDIM:
        raise bad(f"shape has {len(shape)} dimensions, more than {MAX_NDIM}")
    if any(d < 0 for d in shape):
        raise bad(f"shape {shape} has a negative dimension")
    nbytes = _nbytes(shape, DTYPES[code].itemsize)
    if nbytes is None:
        raise bad(f"shape {shape!r:.200} overflows 64 bits")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets):
        raise bad(f"data_offsets must be a list of two integers, got {offsets!r:.80}")
    begin, end = offsets
    if begin < 0 or end < begin:
        raise bad(f"data_offsets [{begin}, {end}] are not an increasing pair of offsets")
    if end > data_len:
        raise bad(f"data_offsets end {end} runs past the end of the file ({data_len} data bytes)")
    if end - begin != nbytes:
        raise bad(f"shape {shape} of {code} needs {nbytes} bytes, data_offsets give {end - begin}")
    return DTYPES[code], tuple(shape), begin, end


def _nbytes(shape, itemsize: int):
    """Size in bytes of an array, or None if it (or any step of it) does not fit a signed 64-bit int.

    Python ints never wrap, so a shape such as [2**40, 2**40, 2**40] is caught
    here instead of becoming a small number in C arithmetic.
    """
    n = itemsize
    for d in shape:
        n *= d
        if d >= 1 << 63 or n >= 1 << 63:
            return None
    return n


def _read_exact(f, n: int, path: str) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise CheckpointError(path, f"file is truncated (wanted {n} bytes, got {len(b)})")
    return b


def _read_into(f, view: np.ndarray, path: str, name: str) -> None:
    """Fill the uint8 array ``view`` from ``f``; a short read means the file shrank or lied."""
    mv, done = memoryview(view), 0
    while done < len(mv):
        got = f.readinto(mv[done:done + _CHUNK])
        if not got:
            raise CheckpointError(path, f"file is truncated inside tensor {name!r}")
        done += got


# ---------------------------------------------------------------- reading npz

@contextlib.contextmanager
def _npz_errors(path: str):
    """Turn anything that goes wrong inside the zip reader into a CheckpointError naming the file."""
    try:
        yield
    except (CheckpointError, MemoryError):
        raise
    except Exception as e:           # BadZipFile, zlib.error, EOFError, ValueError, OSError, ...
        raise CheckpointError(path, f"not a valid .npz archive ({type(e).__name__}: {e})") from e


def _load_npz(path: str) -> dict[str, np.ndarray]:
    # Not np.load: for a zip member it allocates whatever size the .npy header
    # claims before reading a byte. Here _npz_scan checks every claim first.
    out = {}
    with open(path, "rb") as f, _npz_errors(path):    # opening: FileNotFoundError passes through
        with zipfile.ZipFile(f) as zf:
            members, _ = _npz_scan(zf, path, os.fstat(f.fileno()).st_size)
            for name, (info, dtype, shape, fortran, nbytes, start) in members.items():
                arr = np.empty(shape[::-1] if fortran else shape, dtype)
                with zf.open(info) as member:
                    _read_exact(member, start, path)                 # skip the .npy header
                    _read_into(member, arr.reshape(-1).view(np.uint8), path, name)
                    if member.read(1):                               # also runs the CRC-32 check
                        raise CheckpointError(path, f"array {name!r} has trailing bytes")
                if fortran:                                          # stored column-major
                    arr = arr.T.copy(order="C")
                out[name] = arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))
    return out


def _npz_scan(zf: zipfile.ZipFile, path: str, size: int):
    """Validate every member's zip entry and ``.npy`` header before any array is allocated.

    Returns:
        ({name: (zipinfo, dtype, shape, fortran_order, nbytes, data_start)}, metadata)
    """
    infos = zf.infolist()
    # Members that share compressed bytes (the "overlapping zip bomb") claim more than the file holds.
    if sum(i.compress_size for i in infos) > size:
        raise CheckpointError(path, "zip members claim more compressed bytes than the file holds")
    members = {}
    for info in infos:
        fname = info.filename
        if not fname.endswith(".npy") or len(fname) == 4:
            raise CheckpointError(path, f"member {fname!r} is not a named .npy array")
        name = fname[:-4]
        if name in members:
            raise CheckpointError(path, f"array {name!r} appears twice")
        if info.flag_bits & 0x1:
            raise CheckpointError(path, f"member {fname!r} is encrypted")
        if info.compress_type == zipfile.ZIP_STORED:
            limit = info.compress_size
        elif info.compress_type == zipfile.ZIP_DEFLATED:     # np.savez_compressed
            limit = info.compress_size * _DEFLATE_MAX_RATIO + 1024
        else:
            raise CheckpointError(path, f"member {fname!r} uses an unsupported compression method")
        if info.file_size > limit:
            raise CheckpointError(path, f"member {fname!r} claims {info.file_size} bytes "
                                        f"from {info.compress_size} compressed bytes")
        with zf.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise CheckpointError(path, f"array {name!r}: unsupported .npy version {version}")
            start = member.tell()
        if dtype.hasobject:
            raise CheckpointError(path, f"array {name!r} holds Python objects (pickle); tinytl never unpickles")
        native = dtype.newbyteorder("=") if dtype.byteorder in "<>" else dtype
        if native not in _SAVE_DTYPES or dtype.names is not None:
            raise CheckpointError(path, f"array {name!r}: unsupported dtype {dtype}")
        nbytes = _nbytes(shape, dtype.itemsize)
        if any(d < 0 for d in shape) or len(shape) > MAX_NDIM or nbytes is None:
            raise CheckpointError(path, f"array {name!r}: invalid shape {shape!r:.200}")
        if start + nbytes != info.file_size:
            raise CheckpointError(path, f"array {name!r}: shape {shape} of {dtype} needs {nbytes} bytes, "
                                        f"the member holds {info.file_size - start}")
        members[name] = (info, dtype, tuple(shape), fortran, nbytes, start)
    return members, _npz_metadata(zf.comment, path)


def _npz_metadata(comment: bytes, path: str) -> dict[str, str]:
    if not comment.startswith(_NPZ_COMMENT):
        return {}                                      # a plain np.savez file: no metadata
    try:
        meta = json.loads(comment[len(_NPZ_COMMENT):].decode("utf-8"))
    except (ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError(path, "the tinytl metadata in the zip comment is malformed")
    return meta
