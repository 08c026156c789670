"""A stand-in for ``cupy`` without a GPU: device arrays in host memory with CuPy's rules,
and RawModules whose kernels either only check each launch (``run=False``) or also run
it on the CPU (``run=True``), compiled with g++ from the very ``.cu`` text CuPy would get.

What it is for: CI has no GPU, and GPU code that never ran is untested: a kernel's index
arithmetic, reductions and barriers; the engine's moves between devices, its optimizer
state on the GPU, its checkpoints from the GPU. ``installed()`` makes this module
tinytl's cupy, so test_kernels_cuda.py checks every kernel's numbers against
reference.py, and the ``device`` fixture's "cuda" cases (ids ``cuda-emu``) run the whole
engine on it, on any machine with g++. Where CuPy sees a GPU they run on it instead.

- ``FakeArray``: cupy.ndarray's behaviour over a NumPy array (see its docstring): no
  implicit conversion to NumPy, no mixing with NumPy arrays, 0-d results, ``.get()``,
  ``.data.ptr``, ``.device.id``, ``__cuda_array_interface__``. The device memory IS host
  memory, so the kernels (run on the CPU) read and write it through ``.data.ptr``,
  pointer tables included.
- Every array this module allocates sits between two 64-byte guards of random values
  (for floats, in [1, 2) of the array's dtype); after each launch every live guard is
  checked, so a kernel writing out of bounds fails the launch that did it. (Reads out of
  bounds are not caught; they read those values. Not a NaN pattern nor random bytes:
  NaN arithmetic writes a NaN back unchanged, and p - lr * d leaves a huge random p
  unchanged too; a copy from another array's guard differs, the values being random.)
- Each launch is checked against the kernel's C signature (``check_launch``): the number
  and types of the arguments (a Python int would reach the kernel as ``long long``), the
  dtype and contiguity behind each pointer, the launch dimensions.
- ``run=True``: ``tests/emu/cuda_on_cpu.h`` (read its header comment) runs the threads of
  a block as fibers, a warp at a time, blocks one after another. Launches alternate the
  order warps, lanes and blocks run in (index order, reversed, shuffled), so a kernel
  whose result depends on that order (a race) gives results that differ from launch to
  launch, or wrong ones. Shared memory is filled with garbage before every block (its
  variables found in the compiled library's symbol table), as a GPU leaves it undefined.
- Counters for tests: ``FakeArray.reads`` (values read back to the host),
  ``FakeArray.ops`` (CuPy's own device work: elementwise and reduction kernels, GEMMs,
  fills and copies; views count nothing) and ``cp.launches`` (the RawKernel launches).
- What it cannot tell: speed, NVRTC's own math library (the last bits of expf), cuBLAS
  (matmul is NumPy's), CUDA streams (every launch completes at once), several GPUs, a
  lost update between threads (a thread runs without interruption from one barrier to
  the next, so a plain ``x += v`` by many threads adds up as if it were atomic).
"""
import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import types
import weakref
from pathlib import Path

import numpy as np

HEADER = Path(__file__).with_name("emu") / "cuda_on_cpu.h"
KERNEL_RE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)
C_TYPES = {"int": np.int32, "long long": np.int64, "float": np.float32, "double": np.float64,
           "unsigned char": np.uint8}
CTYPES = {"int": ctypes.c_int, "long long": ctypes.c_longlong, "float": ctypes.c_float, "double": ctypes.c_double}
GUARD = 64


def kernels_of(text):
    """{name: [(c_type, param_name), ...]} of the extern "C" kernels in a .cu source."""
    return {name: [re.fullmatch(r"(.*?)\s*(\w+)", p.strip()).groups() for p in params.split(",") if p.strip()]
            for name, params in KERNEL_RE.findall(text)}


def compiler():
    """The C++ compiler the emulator uses, or None."""
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("g++")


# ------------------------------------------------------------------ arrays ----

_SCALARS = (bool, int, float, complex, np.generic)


class FakeArray:
    """A cupy.ndarray whose memory is host memory: a NumPy array inside (``_a``), with
    CuPy's rules where they differ from NumPy's, so that code which works here works on
    a GPU too:
    - ``np.asarray(a)`` (any implicit conversion) raises CuPy's TypeError; ``.get()``
      and ``asnumpy`` copy to NumPy;
    - mixing with NumPy arrays (``a + np_array``, ``np.concatenate([a, np_array])``)
      raises TypeError, as CuPy does; Python and NumPy scalars mix; ``a[...] = np_array``
      raises CuPy's ValueError (a value that is not a cupy.ndarray goes to ``fill``);
      NumPy index arrays (``a[np_idx]``) are allowed, as CuPy allows them;
    - memory layout as CuPy's: ``asarray``/``array`` and the ``*_like`` functions keep
      an F-contiguous array F-contiguous (order 'K'), ``get()`` and ``asnumpy`` give
      C order unless asked otherwise;
    - reductions and indexing down to one element give 0-d arrays, not scalars;
      ``float()``, ``int()``, ``bool()`` and ``.item()`` read one value back (counted in
      ``FakeArray.reads``: on a GPU each one waits for all the work queued before it);
    - NumPy functions and ufuncs called on these arrays dispatch to NumPy on the inner
      arrays (``__array_function__``, ``__array_ufunc__``) and give FakeArrays back, as
      CuPy's implementations would; ``cp.add.at`` and the other ufunc methods work;
    - every new array an operation makes is copied between guards (see below), so a
      kernel later writing past it is caught as for arrays made by ``empty``;
    - ``.data.ptr``, ``.device.id``, ``__cuda_array_interface__`` as in CuPy (the
      kernels read memory through ptr).
    """

    __array_priority__ = 100
    __hash__ = None
    reads = 0  # values read back to the host (each would wait for the GPU): a counter for tests
    ops = []   # CuPy's own device work, by name, in order (see _op): for tests to count

    def __init__(self, a):
        assert isinstance(a, np.ndarray) and not isinstance(a, FakeArray)
        self._a = a

    # --- what CuPy refuses
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kw):
        if not all(isinstance(x, (FakeArray,) + _SCALARS) for x in inputs + tuple(kw.get("out", ()))):
            return NotImplemented  # NumPy then raises TypeError, as CuPy does for a NumPy array
        if method == "at":
            return _Ufunc(ufunc).at(*inputs)
        out = kw.get("out")
        _op(ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}")
        r = getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kw))
        return out[0] if out and len(out) == 1 else out if out else _wrap(r, c_order=True)

    def __array_function__(self, func, types, args, kwargs):
        if not all(issubclass(t, FakeArray) for t in types):
            return NotImplemented
        _op(func.__name__)
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    # --- CuPy's attributes
    @property
    def data(self):
        return types.SimpleNamespace(ptr=self._a.ctypes.data)

    @property
    def device(self):
        return types.SimpleNamespace(id=self.__dict__.get("dev", 0))

    def get(self, stream=None, order="C", out=None, blocking=True):
        """A NumPy copy, C-ordered unless ``order`` says otherwise ('A': F for an F-contiguous array)."""
        FakeArray.reads += 1
        if order == "A":
            order = "F" if self._a.flags.f_contiguous and not self._a.flags.c_contiguous else "C"
        if out is not None:
            out[...] = self._a
            return out
        return np.array(self._a, order=order)

    @property
    def __cuda_array_interface__(self):
        a = self._a.__array_interface__
        return {"shape": a["shape"], "typestr": a["typestr"], "data": a["data"], "version": 3,
                "strides": None if self._a.flags.c_contiguous else a["strides"]}

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: FakeArray(self._a.T))

    def __getattr__(self, name):  # methods: NumPy's, on the inner array, with FakeArrays in and out
        if name not in _CUPY_ATTRS:
            raise AttributeError(f"'cupy.ndarray' object has no attribute '{name}' (emulated CuPy: only "
                                 "what cupy.ndarray has)")
        attr = getattr(self._a, name)
        if name in ("item", "tolist", "tobytes"):
            FakeArray.reads += 1
        if not callable(attr):
            return _wrap(attr)

        def method(*args, **kw):
            _op(name, self._a, args, kw)
            return _wrap(attr(*_unwrap(args), **_unwrap(kw)))
        return method

    # --- indexing
    def __getitem__(self, key):
        key = _index(key)
        r = self._a[key]
        if isinstance(r, np.generic):  # CuPy gives a 0-d view of that element, not a copy
            r = self._a[(key if isinstance(key, tuple) else (key,)) + (Ellipsis,)]
        elif not np.shares_memory(r, self._a):
            _op("take")  # advanced indexing gathers with a kernel; basic indexing gives a view
        return _wrap(r)

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray) and value.ndim and not any(
                isinstance(k, (np.ndarray, FakeArray, list)) for k in (key if isinstance(key, tuple) else (key,))):
            # with basic indexing CuPy hands a value that is not a cupy.ndarray to fill(),
            # which takes scalars only (with an index array, it copies the value over)
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        _op("setitem")
        self._a[_index(key)] = value._a if isinstance(value, FakeArray) else value

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    # --- one value back to the host
    def __bool__(self):
        FakeArray.reads += 1
        return bool(self._a)

    def __float__(self):
        FakeArray.reads += 1
        return float(self._a)

    def __int__(self):
        FakeArray.reads += 1
        return int(self._a)

    def __index__(self):
        FakeArray.reads += 1
        return self._a.__index__()

    def __complex__(self):
        FakeArray.reads += 1
        return complex(self._a)

    def __repr__(self):
        return repr(self._a).replace("array(", "FakeArray(", 1)

    def __str__(self):
        return str(self._a)

    def __format__(self, spec):
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)


# The attributes cupy.ndarray has beyond those defined on FakeArray (CuPy 13-14): what NumPy
# arrays have and CuPy's lack (.ctypes, .tofile's siblings, .byteswap, ...) must fail here too.
_CUPY_ATTRS = frozenset("""
    all any argmax argmin argpartition argsort astype base choose clip compress conj conjugate copy cumprod
    cumsum diagonal dot dump dumps fill flat flatten imag item max mean min nonzero partition prod put ravel
    real repeat reshape round sort squeeze std sum swapaxes take tobytes tofile tolist trace transpose var
    view""".split())


def _device_call(name, fn, c_order=False):
    """``fn`` (a NumPy function) taking and giving FakeArrays, recorded as device work ``name``."""
    def call(*args, **kw):
        _op(name)
        return _wrap(fn(*_unwrap(args), **_unwrap(kw)), c_order=c_order)
    return call


def _binary(ufunc):
    call = _device_call(ufunc.__name__, ufunc, c_order=True)

    def forward(self, other):
        if not isinstance(other, (FakeArray,) + _SCALARS):
            return NotImplemented  # a NumPy array: it refuses us in turn; a Tensor: its __radd__
        return call(self, other)

    def reflected(self, other):
        if not isinstance(other, (FakeArray,) + _SCALARS):
            return NotImplemented
        return call(other, self)

    def inplace(self, other):
        if not isinstance(other, (FakeArray,) + _SCALARS):
            return NotImplemented
        _op(ufunc.__name__)
        ufunc(self._a, _unwrap(other), out=self._a)
        return self
    return forward, reflected, inplace


for _name, _ufunc in [("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("truediv", np.true_divide),
                      ("floordiv", np.floor_divide), ("mod", np.remainder), ("pow", np.power),
                      ("matmul", np.matmul), ("and", np.bitwise_and), ("or", np.bitwise_or),
                      ("xor", np.bitwise_xor), ("lshift", np.left_shift), ("rshift", np.right_shift)]:
    _f, _r, _i = _binary(_ufunc)
    setattr(FakeArray, f"__{_name}__", _f)
    setattr(FakeArray, f"__r{_name}__", _r)
    setattr(FakeArray, f"__i{_name}__", _i)
for _name, _ufunc in [("eq", np.equal), ("ne", np.not_equal), ("lt", np.less), ("le", np.less_equal),
                      ("gt", np.greater), ("ge", np.greater_equal)]:
    setattr(FakeArray, f"__{_name}__", _binary(_ufunc)[0])
for _name, _ufunc in [("neg", np.negative), ("pos", np.positive), ("abs", np.absolute), ("invert", np.invert)]:
    setattr(FakeArray, f"__{_name}__", _device_call(_ufunc.__name__, _ufunc, c_order=True))


# What does not launch anything on a GPU: views, and reads back (counted in reads).
_NO_KERNEL = frozenset("""
    reshape view transpose swapaxes squeeze diagonal broadcast_to expand_dims moveaxis atleast_1d atleast_2d
    item tolist tobytes shape ndim size result_type can_cast iscomplexobj isrealobj may_share_memory
    shares_memory""".split())


def _op(name, a=None, args=(), kw=None):
    """Record a call that makes a GPU do work with CuPy's own kernels (an elementwise or
    reduction kernel, a cuBLAS GEMM, a fill or copy); views and reads back record
    nothing. An estimate of what a profiler would count, to keep the work per training
    step from growing unseen; tinytl's own kernels are counted apart (cp.launches)."""
    if name in _NO_KERNEL:
        return
    if name == "astype" and a is not None and np.dtype(args[0] if args else kw["dtype"]) == a.dtype \
            and not (kw or {}).get("copy", True) and len(args) < 2:
        return  # astype(same dtype, copy=False): the array itself
    if name == "ravel" and a is not None and a.flags.c_contiguous:
        return
    FakeArray.ops.append(name)


def _unwrap(x):
    """FakeArrays (also inside lists, tuples and dicts) to their NumPy arrays; NumPy arrays refused."""
    if isinstance(x, FakeArray):
        return x._a
    if isinstance(x, np.ndarray):
        raise TypeError(f"Unsupported type {type(x)}")  # CuPy's words: no NumPy array in a CuPy call
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def _wrap(r, c_order=False):
    """NumPy results to FakeArrays; NumPy scalars to 0-d FakeArrays (CuPy returns arrays).

    An array that owns its memory (a new result) is copied between guards, as ``empty``
    makes arrays; a view stays a view of its base (which was guarded when it was made).
    ``c_order``: the result of an elementwise kernel, which CuPy always makes C-ordered
    (NumPy keeps the inputs' F order)."""
    if isinstance(r, np.generic):
        r = np.asarray(r)
    if isinstance(r, np.ndarray):
        if r.base is None and r.dtype.kind in "biufc":
            out = empty(r.shape, r.dtype, order="F" if _f_only(r) and not c_order else "C")
            out._a[...] = r
            return out
        return FakeArray(r)
    if isinstance(r, (list, tuple)):   # namedtuples too (NumPy 2's linalg: EighResult, SVDResult)
        return type(r)(*(_wrap(v) for v in r)) if hasattr(r, "_fields") else type(r)(_wrap(v) for v in r)
    return r


def _index(key):
    """An index with FakeArrays unwrapped (CuPy takes NumPy index arrays too: it copies them)."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    return key._a if isinstance(key, FakeArray) else key


_guarded = []  # (weak reference to the raw buffer, its guard bytes) of each array allocated here
_guard_rng = np.random.default_rng(0)


def _f_only(a):
    """True for an array laid out in Fortran order and not also in C order."""
    return a.flags.f_contiguous and not a.flags.c_contiguous


def _order(a, order):
    """CuPy's reading of ``order`` for a new array like ``a``: 'K' and 'A' keep F order."""
    if order in (None, "K", "A"):
        return "F" if _f_only(a) else "C"
    return order


def empty(shape, dtype=np.float64, order="C"):
    """An uninitialised FakeArray between two guards of random values."""
    dtype = np.dtype(dtype)
    shape = tuple(shape) if np.iterable(shape) else (int(shape),)
    if order not in ("C", "F"):
        raise ValueError(f"order must be 'C' or 'F', got {order!r}")
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + 2 * GUARD, np.uint8)
    if dtype.kind == "f":  # values in [1, 2): any arithmetic written over them changes them
        guard = _guard_rng.uniform(1, 2, 2 * GUARD // dtype.itemsize).astype(dtype).view(np.uint8)
    else:
        guard = _guard_rng.integers(0, 256, 2 * GUARD, np.uint8)
    raw[:GUARD], raw[GUARD + nbytes:] = guard[:GUARD], guard[GUARD:]
    _guarded.append((weakref.ref(raw), guard))
    flat = raw[GUARD:GUARD + nbytes].view(dtype)
    return FakeArray(flat.reshape(shape[::-1]).T if order == "F" else flat.reshape(shape))


def asarray(a, dtype=None, order=None):
    """cupy.asarray: ``a`` itself if it is a FakeArray of that dtype and order, else a copy
    on the 'device' (order 'K', the default: F order kept for an F-contiguous array)."""
    if isinstance(a, FakeArray):
        if (dtype is None or a.dtype == dtype) and (
                order in (None, "K", "A") or a.flags[{"C": "C_CONTIGUOUS", "F": "F_CONTIGUOUS"}[order]]):
            return a
        a = a._a
    a = np.asarray(a, dtype)
    out = empty(a.shape, a.dtype, _order(a, order))
    out._a[...] = a
    return out


def check_guards():
    """Raise if a kernel wrote outside an array allocated here; forget freed arrays."""
    live = []
    for ref, guard in _guarded:
        raw = ref()
        if raw is None:
            continue
        live.append((ref, guard))
        now = np.concatenate([raw[:GUARD], raw[len(raw) - GUARD:]])
        if (now != guard).any():
            raw[:GUARD], raw[len(raw) - GUARD:] = guard[:GUARD], guard[GUARD:]
            raise AssertionError("a kernel wrote outside an array (a guard byte changed)")
    _guarded[:] = live


# --------------------------------------------------------------- launches ----

def check_launch(name, params, grid, block, args):
    """Assert that (grid, block, args) is a valid launch of kernel ``name`` with C ``params``."""
    assert isinstance(grid, tuple) and isinstance(block, tuple) and isinstance(args, tuple)
    assert 1 <= len(grid) <= 3 and 1 <= len(block) <= 3
    assert all(type(g) is int and g >= 1 for g in grid + block), (grid, block)
    assert grid[0] < 2**31 and all(g <= 65535 for g in grid[1:]) and np.prod(block) <= 1024
    assert len(args) == len(params), f"{name}: {len(args)} arguments for {params}"
    for a, (ctype, pname) in zip(args, params):
        where = f"{name}({pname})"
        if ctype.endswith("*"):
            if isinstance(a, np.uint64):
                assert a == 0, where  # the null pointer
                continue
            assert isinstance(a, FakeArray), f"{where}: {type(a)}"
            assert a.flags.c_contiguous and a.data.ptr % a.itemsize == 0, where
            base = ctype.replace("const", "").replace(" ", "")
            if base.count("*") == 2:
                assert a.dtype == np.int64, where  # a table of pointers
            else:
                assert a.dtype == C_TYPES[" ".join(ctype.replace("const", "").replace("*", " ").split())], where
        else:
            assert type(a) is C_TYPES[ctype], f"{where}: {ctype} given {type(a).__name__}"


class CompileError(RuntimeError):
    pass


def _launcher_source(code, sigs):
    """The .cu text between the emulator's header and one ``emu_<kernel>`` launcher per kernel."""
    out = [f'#include "{HEADER}"', code, ""]
    for name, params in sigs.items():
        decl = "".join(f", {t} {p}" for t, p in params)
        call = ", ".join(p for _, p in params)
        out.append(
            f'extern "C" int emu_{name}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, '
            f'unsigned bz, int order, unsigned seed, char* err, size_t errlen{decl}) {{\n'
            f"    return emu::launch(dim3{{gx, gy, gz}}, dim3{{bx, by, bz}}, order, seed, [=] {{ {name}({call}); }},"
            f" err, errlen);\n}}")
    return "\n".join(out) + "\n"


def _cache_dir():
    d = Path(tempfile.gettempdir()) / f"tinytl-cuda-emu-{os.getuid()}"
    d.mkdir(exist_ok=True)
    return d


def build(code, defines=()):
    """Compile ``code`` (a .cu text) for the CPU; returns (ctypes library, signatures).

    ``defines``: extra -D macros (``EMU_UCONTEXT`` switches fibers with ucontext).
    The library is cached on disk by a hash of everything that goes into it.
    """
    sigs = kernels_of(code)
    src = _launcher_source(code, sigs)
    flags = ["-std=c++17", "-O1", "-g0", "-fPIC", "-shared", "-ffp-contract=off", "-Wall", "-Wno-unused-function",
             "-Werror", *(f"-D{d}" for d in defines)]
    key = hashlib.sha256((src + HEADER.read_text() + " ".join(flags)).encode()).hexdigest()[:20]
    lib = _cache_dir() / f"{key}.so"
    if not lib.exists():
        cpp = lib.with_suffix(".cpp")
        cpp.write_text(src)
        tmp = lib.with_suffix(f".{os.getpid()}.tmp")
        r = subprocess.run([compiler(), *flags, "-o", str(tmp), str(cpp)], capture_output=True, text=True,
                           timeout=300)
        if r.returncode:
            raise CompileError(r.stderr)
        os.replace(tmp, lib)
    dll = ctypes.CDLL(str(lib))
    _register_shared(dll, lib)
    return dll, sigs


def _register_shared(dll, lib):
    """Tell the library where its __shared__ variables are, so that each block starts
    with garbage in them (see cuda_on_cpu.h). They are the writable function-local
    statics (names mangled _ZZ...) of the kernels' code, not of the C++ library's or the
    emulator's, found in the symbol table (objdump -t: address, section, size, name);
    their addresses are offsets from where the library was loaded."""
    out = subprocess.run([shutil.which("objdump") or "objdump", "-t", str(lib)], capture_output=True,
                         text=True, check=True).stdout
    syms = [(int(f[0], 16), f[-3], int(f[-2], 16), f[-1]) for f in (line.split() for line in out.splitlines())
            if len(f) >= 5 and re.fullmatch(r"[0-9a-f]{16}", f[0]) and re.fullmatch(r"[0-9a-f]+", f[-2])]
    base = ctypes.cast(dll.emu_set_shared, ctypes.c_void_p).value - next(
        addr for addr, _, _, name in syms if name == "emu_set_shared")
    shared = [(base + addr, size) for addr, section, size, name in syms
              if name.startswith("_ZZ") and section.startswith((".bss", ".data"))
              and not re.match(r"_ZZN?K?(St|3emu|9__gnu_cxx)", name)]
    table = (ctypes.c_ulonglong * (2 * len(shared)))(*(v for pair in shared for v in pair))
    dll.emu_set_shared(table, ctypes.c_size_t(len(shared)))


class Kernel:
    """A RawKernel: checks each launch; with ``dll``, runs it on the CPU."""

    def __init__(self, name, params, launches, dll=None):
        self.name, self.params, self.launches = name, params, launches
        self.calls = 0
        self.fn = None
        if dll is not None:
            self.fn = getattr(dll, f"emu_{name}")
            self.fn.restype = ctypes.c_int
            self.fn.argtypes = [ctypes.c_uint] * 6 + [ctypes.c_int, ctypes.c_uint, ctypes.c_char_p, ctypes.c_size_t] + [
                ctypes.c_void_p if t.endswith("*") else CTYPES[t] for t, _ in params]

    def __call__(self, grid, block, args, shared_mem=0, stream=None):
        check_launch(self.name, self.params, grid, block, args)
        self.launches.append((self.name, grid, block))
        if self.fn is None:
            return
        grid3, block3 = (tuple(grid) + (1, 1))[:3], (tuple(block) + (1, 1))[:3]
        cargs = [None if isinstance(a, np.uint64) else a.data.ptr if isinstance(a, FakeArray) else a.item()
                 for a in args]
        self.calls += 1
        order = self.calls % 3  # index order, reversed, shuffled: in turn, per kernel
        err = ctypes.create_string_buffer(512)
        rc = self.fn(*grid3, *block3, order, self.calls, err, len(err), *cargs)
        if rc:
            raise AssertionError(f"{self.name}{grid}{block}: {err.value.decode()}")
        check_guards()


class _Module(types.ModuleType):
    """The fake cupy module: what make_cupy defines, else NumPy's function of that name
    taking and giving FakeArrays (``cp.matmul``, ``cp.maximum``, ...), as CuPy mirrors NumPy."""

    def __getattr__(self, name):
        attr = getattr(np, name)
        if isinstance(attr, type) or not callable(attr):
            return attr  # dtypes (cp.float32 is numpy.float32), constants
        if isinstance(attr, np.ufunc):
            return _Ufunc(attr)
        return _device_call(name, attr)


# The ufunc.at CuPy has (scatter kernels built on CUDA atomics) and the dtypes each takes.
_I32_64 = ("int32", "int64", "uint32", "uint64")
_SCATTER = {"add": ("int32", "float16", "float32", "float64", "uint32", "uint64"),
            "subtract": ("int32", "uint32"), "maximum": ("int32", "float32", "float64", "uint32", "uint64"),
            "minimum": ("int32", "float32", "float64", "uint32", "uint64"),
            "bitwise_and": _I32_64, "bitwise_or": _I32_64, "bitwise_xor": _I32_64}


class _Ufunc:
    """cupy.ufunc: a call and the methods (``at``, ``reduce``, ...), on FakeArrays."""

    def __init__(self, ufunc):
        self._u = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args, **kw):
        _op(self.__name__)
        return _wrap(self._u(*_unwrap(args), **_unwrap(kw)), c_order="out" not in kw)

    def at(self, a, indices, b=None):
        if not isinstance(a, FakeArray):
            raise TypeError(f"{self.__name__}.at: a must be a cupy.ndarray, got {type(a)}")
        kinds = _SCATTER.get(self.__name__)
        if kinds is None:
            raise NotImplementedError(f"cupy.{self.__name__}.at is not supported (CuPy's scatter kernels)")
        if a.dtype.name not in kinds:
            raise TypeError(f"cupy.{self.__name__}.at only supports {', '.join(kinds)} as data type")
        args = (_unwrap(a), _index(indices)) + (() if b is None else (_unwrap(b),))
        _op(f"{self.__name__}.at")
        self._u.at(*args)  # in place, like CuPy's scatter kernels

    def __getattr__(self, name):  # reduce, accumulate, outer, reduceat
        return _device_call(f"{self.__name__}.{name}", getattr(self._u, name))


def make_cupy(launches=None, run=True, defines=()):
    """A module that stands in for ``cupy`` (see the module's docstring).

    ``launches`` (a list) records (kernel name, grid, block) of every launch. With
    ``run=False`` the kernels are checked but not run, and nothing is compiled;
    ``defines`` go to ``build``.
    """
    launches = [] if launches is None else launches
    cp = _Module("emucupy")
    cp.ndarray = FakeArray
    cp.launches = launches

    class RawModule:
        def __init__(self, code, options=()):
            assert code.startswith('#line 1 "tinytl/kernels/cuda/') and "--std=c++17" in options
            self.dll, self.sigs = build(code, defines) if run else (None, kernels_of(code))

        def get_function(self, name):
            assert name in self.sigs, f"no kernel {name}"
            return Kernel(name, self.sigs[name], launches, self.dll)

    class Device:
        def __init__(self, i=0):
            self.id = i

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class Stream:  # the kernels run when launched: every stream is always synchronised
        def __init__(self, non_blocking=False):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def synchronize(self):
            pass

    def full(shape, v, dtype=None, order="C"):
        out = empty(shape, np.asarray(v).dtype if dtype is None else dtype, order)
        _op("fill")
        out._a.fill(v)
        return out

    def like(a, dtype, order):  # the *_like functions: a's shape, dtype and (order 'K') layout
        return a.shape, a.dtype if dtype is None else dtype, _order(a._a, order)

    cp.RawModule = RawModule
    cp.empty = empty
    cp.full = full
    cp.zeros = lambda shape, dtype=np.float64, order="C": full(shape, 0, dtype, order)
    cp.ones = lambda shape, dtype=np.float64, order="C": full(shape, 1, dtype, order)
    cp.empty_like = lambda a, dtype=None, order="K": empty(*like(a, dtype, order))
    cp.full_like = lambda a, v, dtype=None, order="K": full(like(a, dtype, order)[0], v, *like(a, dtype, order)[1:])
    cp.zeros_like = lambda a, dtype=None, order="K": cp.full_like(a, 0, dtype, order)
    cp.ones_like = lambda a, dtype=None, order="K": cp.full_like(a, 1, dtype, order)
    cp.asarray = asarray
    cp.array = lambda a, dtype=None, copy=True, order="K": (
        asarray(a, dtype, order) if not copy else
        asarray(np.array(a._a if isinstance(a, FakeArray) else a, dtype, order=order)))
    cp.ascontiguousarray = lambda a, dtype=None: asarray(a, dtype, "C")
    cp.asnumpy = lambda a, stream=None, order="C", out=None: (
        a.get(order=order, out=out) if isinstance(a, FakeArray) else np.asarray(a, order=order))
    cp.get_array_module = lambda *arrays: cp if any(isinstance(a, FakeArray) for a in arrays) else np
    cp.cuda = types.SimpleNamespace(
        Device=Device, Stream=Stream, get_current_stream=Stream,
        runtime=types.SimpleNamespace(
            getDevice=lambda: 0, getDeviceCount=lambda: 1,
            getDeviceProperties=lambda d: {"multiProcessorCount": 132, "name": b"emulated (tests/emucupy.py)"}))
    return cp



@contextlib.contextmanager
def installed(**kw):
    """``make_cupy(**kw)`` as tinytl's cupy inside the block. tinytl's caches of compiled
    kernels are emptied on the way in and out, so nothing compiled for one cupy reaches
    another; ``backend``'s state and ``cuda._source`` are restored on the way out."""
    from tinytl import backend
    from tinytl.kernels import cuda as G
    caches = (G._module, G._kernel, G._max_blocks, G._sgd_table, G._pointers)
    saved = backend._cupy, backend._cupy_error, G._source
    cp = make_cupy(**kw)
    FakeArray.ops.clear()
    backend._cupy, backend._cupy_error = cp, None
    for f in caches:
        f.cache_clear()
    try:
        yield cp
    finally:
        backend._cupy, backend._cupy_error, G._source = saved
        for f in caches:
            f.cache_clear()
