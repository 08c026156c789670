"""A stand-in for ``cupy`` without a GPU: NumPy arrays posing as device arrays, and
RawModules whose kernels either only check each launch (``run=False``) or also run it
on the CPU (``run=True``), compiled with g++ from the very ``.cu`` text CuPy would get.

What it is for: CI has no GPU, and a CUDA kernel that was never run is a kernel whose
index arithmetic, reductions and barriers are untested. ``make_cupy(run=True)`` lets
test_kernels_cuda.py check every kernel's numbers against reference.py on any machine
with g++; on a machine with a GPU the same tests run on the real CuPy instead.

- ``FakeArray``: a NumPy array with cupy.ndarray's ``.data.ptr``, ``.device.id`` and
  ``.get()``. The device memory IS host memory, so the kernels (run on the CPU) read and
  write it through ``.data.ptr``, pointer tables included.
- Every array this module allocates sits between two 64-byte guards of random bytes;
  after each launch every live guard is checked, so a kernel writing out of bounds fails
  the launch that did it. (Reads out of bounds are not caught, but they read garbage,
  which spoils the results the tests compare. The bytes are random, not a NaN pattern:
  NaN arithmetic would write a NaN guard back unchanged.)
- Each launch is checked against the kernel's C signature (``check_launch``): the number
  and types of the arguments (a Python int would reach the kernel as ``long long``), the
  dtype and contiguity behind each pointer, the launch dimensions.
- ``run=True``: ``tests/emu/cuda_on_cpu.h`` (read its header comment) runs the threads of
  a block as fibers, blocks one after another. Launches alternate the order the threads
  and blocks run in (index order, reversed, shuffled), so a kernel whose result depends
  on that order (a race) gives results that differ from launch to launch.
"""
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
C_TYPES = {"int": np.int32, "long long": np.int64, "float": np.float32, "double": np.float64}
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

class FakeArray(np.ndarray):
    """A NumPy array posing as a cupy.ndarray: ``.data.ptr``, ``.device.id``, ``.get()``."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])

    @property
    def device(self):
        return types.SimpleNamespace(id=getattr(self, "dev", 0))

    def get(self):
        return np.array(self.view(np.ndarray))


_guarded = []  # (weak reference to the raw buffer, its guard bytes) of each array allocated here
_guard_rng = np.random.default_rng(0)


def empty(shape, dtype=np.float64):
    """An uninitialised FakeArray between two guards of random bytes."""
    dtype = np.dtype(dtype)
    shape = tuple(shape) if np.iterable(shape) else (int(shape),)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + 2 * GUARD, np.uint8)
    guard = _guard_rng.integers(0, 256, 2 * GUARD, np.uint8)
    raw[:GUARD], raw[GUARD + nbytes:] = guard[:GUARD], guard[GUARD:]
    _guarded.append((weakref.ref(raw), guard))
    return raw[GUARD:GUARD + nbytes].view(dtype).reshape(shape).view(FakeArray)


def asarray(a, dtype=None):
    if isinstance(a, FakeArray) and (dtype is None or a.dtype == dtype):
        return a
    a = np.asarray(a, dtype)
    out = empty(a.shape, a.dtype)
    out[...] = a
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
            assert a.flags.c_contiguous and a.__array_interface__["data"][0] % a.itemsize == 0, where
            base = ctype.replace("const", "").replace(" ", "")
            if base.count("*") == 2:
                assert a.dtype == np.int64, where  # a table of pointers
            else:
                assert a.dtype == C_TYPES[base[:-1].replace("longlong", "long long")], where
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
    return dll, sigs


class Kernel:
    """A RawKernel: checks each launch; with ``dll``, runs it on the CPU."""

    def __init__(self, name, params, launches, dll=None):
        self.name, self.params, self.launches = name, params, launches
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
        order = len(self.launches) % 3  # index order, reversed, shuffled: in turn
        err = ctypes.create_string_buffer(512)
        rc = self.fn(*grid3, *block3, order, len(self.launches), err, len(err), *cargs)
        if rc:
            raise AssertionError(f"{self.name}{grid}{block}: {err.value.decode()}")
        check_guards()


def make_cupy(launches=None, run=True, defines=()):
    """A module that stands in for ``cupy`` (see the module's docstring).

    ``launches`` (a list) records (kernel name, grid, block) of every launch. With
    ``run=False`` the kernels are checked but not run, and nothing is compiled;
    ``defines`` go to ``build``.
    """
    launches = [] if launches is None else launches
    cp = types.ModuleType("emucupy")
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

    def full(shape, v, dtype=None):
        out = empty(shape, np.asarray(v).dtype if dtype is None else dtype)
        out.fill(v)
        return out

    def zeros(shape, dtype=np.float64):
        return full(shape, 0, dtype)

    cp.RawModule = RawModule
    cp.empty = empty
    cp.empty_like = lambda a, dtype=None: empty(a.shape, a.dtype if dtype is None else dtype)
    cp.full = full
    cp.zeros = zeros
    cp.ones = lambda shape, dtype=np.float64: full(shape, 1, dtype)
    cp.asarray = asarray
    cp.ascontiguousarray = lambda a: asarray(np.ascontiguousarray(a))
    cp.asnumpy = lambda a: np.array(np.asarray(a).view(np.ndarray))
    cp.cuda = types.SimpleNamespace(
        Device=Device, Stream=Stream,
        runtime=types.SimpleNamespace(getDevice=lambda: 0, getDeviceCount=lambda: 1,
                                      getDeviceProperties=lambda d: {"multiProcessorCount": 132}))
    return cp
