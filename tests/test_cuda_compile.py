"""The CUDA kernels without a GPU: they compile, and the host side launches them right.

1. Every ``tinytl/kernels/cuda/*.cu`` compiles with ``nvcc -ptx`` for sm_90 (Hopper) and
   sm_80 (Ampere, so older GPUs work) with no error and no warning, from exactly the
   text CuPy compiles (``cuda._source``: the file behind a ``#line``), and the PTX holds
   every kernel in both dtypes. Skipped, with the reason, where nvcc is not on PATH.
   NVRTC (what CuPy uses) has no host headers: the sources include none, which is checked.
2. ``tinytl/kernels/cuda.py`` is the table of contents of reference.py (same names, same
   signatures, same order) and imports without CuPy.
3. The host code runs against a fake ``cupy`` (tests/emucupy.py, with ``run=False``: NumPy
   arrays posing as device arrays) whose kernels check each launch against the C signature in the .cu file: the number of
   arguments, the type of each (a Python int would arrive as ``long long``, a float as
   ``double``), the dtype behind each pointer, contiguity, the launch dimensions and the
   launches per call. The same fake shows that bad arguments raise the CPU kernels'
   exceptions with the CPU kernels' messages, before any launch.
The numbers the kernels compute are checked in test_kernels_cuda.py: on a GPU where there
is one, else on the CPU by the emulator in tests/emucupy.py.
"""
import inspect
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import emucupy
from emucupy import FakeArray, kernels_of
from tinytl import backend
from tinytl.kernels import cuda as G
from tinytl.kernels import reference as R

CUDA_DIR = Path(G.__file__).with_name("cuda")
CU_FILES = sorted(CUDA_DIR.glob("*.cu"))
ARCHS = ["sm_90", "sm_80"]


def reference_names():
    return [n for n, f in vars(R).items() if inspect.isfunction(f) and not n.startswith("_")]


# ------------------------------------------------------------- the sources ----

def test_one_cu_file_per_section_and_every_reference_kernel_in_both_dtypes():
    assert [f.stem for f in CU_FILES] == ["adam", "linear", "sgd", "softmax_xent"]
    names = {}
    for f in CU_FILES:
        names.update(kernels_of(f.read_text()))
    for n in reference_names():
        if n in G.COMPOSED:   # cuBLAS's GEMM and the epilogue kernels: no kernel of its own
            assert f"{n}_f32" not in names, n
            continue
        assert f"{n}_f32" in names and f"{n}_f64" in names, n
    for n, parts in G.COMPOSED.items():
        src = inspect.getsource(getattr(G, n))
        assert all(f"{p}(" in src for p in parts), (n, parts)
    for n, params in names.items():  # the float kernel and its double twin differ only in the type
        if n.endswith("_f32"):
            assert names[n[:-4] + "_f64"] == [(t.replace("float", "double"), p) for t, p in params], n


@pytest.mark.parametrize("path", CU_FILES, ids=lambda p: p.name)
def test_sources_need_no_header_and_name_their_reference_twin(path):
    text = path.read_text()
    assert not re.search(r"^\s*#\s*include", text, re.M), f"{path.name}: NVRTC has no host headers"
    assert text.startswith("// Twin of reference.py"), f"{path.name} must open by naming its reference twin"
    assert "\t" not in text


# ------------------------------------------------------------------- nvcc ----

@pytest.fixture(scope="module")
def nvcc():
    exe = shutil.which("nvcc")
    if exe is None:
        pytest.skip("nvcc is not on PATH: the CUDA sources are compiled in CI where a CUDA toolkit is installed")
    return exe


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("path", CU_FILES, ids=lambda p: p.name)
def test_nvcc_compiles_without_warnings(nvcc, path, arch, tmp_path):
    src = tmp_path / path.name
    src.write_text(G._source(path.stem))  # exactly what CuPy compiles
    ptx = tmp_path / f"{path.stem}.ptx"
    cmd = [nvcc, "-ptx", f"-arch={arch}", "--std=c++17", "-Werror", "all-warnings", "-o", str(ptx), str(src)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout}{r.stderr}"
    assert not (r.stdout + r.stderr).strip(), f"nvcc printed diagnostics:\n{r.stdout}{r.stderr}"
    text = ptx.read_text()
    for name in kernels_of(path.read_text()):
        assert re.search(rf"\.entry\s+{name}\(", text), f"{name} missing from the PTX (extern \"C\" lost?)"
    if path.stem in ("sgd", "adam"):  # the updates must round as NumPy does: no fused multiply-add
        assert "fma." not in text


# ---------------------------------------------------------------- cuda.py ----

def test_cuda_module_is_a_table_of_contents_and_imports_without_cupy():
    funcs = [n for n, f in vars(G).items() if inspect.isfunction(f) and not n.startswith("_")]
    ref = reference_names()
    assert [f for f in funcs if f in ref] == ref  # same order; extras (sgd_step_many) come after their section
    assert funcs.index("sgd_step_many") == funcs.index("sgd_step") + 1
    for n in ref:
        assert inspect.signature(getattr(G, n)) == inspect.signature(getattr(R, n)), n
    assert set(funcs) - set(ref) == {"sgd_step_many"}
    src = Path(G.__file__).read_text()
    banners = re.findall(r"^# -+ ([a-z -]+) -+$", Path(R.__file__).read_text(), re.M)
    assert banners and all(f" {b} " in src for b in banners)
    assert "import cupy" not in src


def test_source_has_a_line_directive():
    s = G._source("linear")
    assert s.startswith('#line 1 "tinytl/kernels/cuda/linear.cu"\n')
    assert s.endswith((CUDA_DIR / "linear.cu").read_text())


# ------------------------------------------------- the host side, faked GPU ----

def fake(a):
    return emucupy.asarray(a)


@pytest.fixture
def launches(monkeypatch):
    """Swap a fake cupy into tinytl.backend; yields the list of launches made."""
    made = []
    monkeypatch.setattr(backend, "_cupy", emucupy.make_cupy(made, run=False))
    for f in (G._module, G._kernel, G._max_blocks, G._sgd_table, G._pointers):
        f.cache_clear()
    yield made
    for f in (G._module, G._kernel, G._max_blocks, G._sgd_table, G._pointers):
        f.cache_clear()


def names(launches):
    return [n for n, _, _ in launches]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_launches_match_the_kernel_signatures(launches, dtype):
    s = "f32" if dtype == np.float32 else "f64"
    rng = np.random.default_rng(0)
    y = fake(rng.standard_normal((5, 7)).astype(dtype))
    b = fake(rng.standard_normal(7).astype(dtype))
    for bias in (b, None):
        for relu in (True, False):
            launches.clear()
            out = G.linear_forward_epilogue(y, bias, relu)
            assert isinstance(out, FakeArray) and out.shape == (5, 7) and out.dtype == dtype
            assert names(launches) == [f"linear_forward_epilogue_{s}"]
            launches.clear()
            if relu:  # with the packed ReLU mask: one launch too, one thread per mask byte
                mask = fake(np.zeros((5, 1), np.uint8))
                G.linear_forward_epilogue(y, bias, relu, None, mask)
                assert names(launches) == [f"linear_forward_epilogue_{s}"]
                assert launches[0][1][0] * launches[0][2][0] >= mask.size
    launches.clear()
    assert G.linear_forward_epilogue(y, None, False, y) is y and not launches  # nothing to do

    for n, two in ((5, False), (64, False), (256, False), (257, True), (70000, True)):
        g = fake(np.ones((n, 3), dtype))
        mask = fake(np.full((n, 1), 0b101, np.uint8))
        launches.clear()
        out, bg = G.linear_backward_epilogue(g, mask, True, True)
        assert out.shape == (n, 3) and bg.shape == (3,) and bg.dtype == dtype
        want = [f"linear_backward_epilogue_{s}"] + ([f"linear_backward_epilogue_sum_strips_{s}"] if two else [])
        assert names(launches) == want
        assert launches[0][1][1] <= 1024 and launches[0][2] == (32, 8)
        launches.clear()
        assert G.linear_backward_epilogue(g, mask, True, False)[1] is None
        assert names(launches) == [f"linear_backward_epilogue_{s}"]
    launches.clear()
    out, bg = G.linear_backward_epilogue(fake(np.ones((0, 3), dtype)), fake(np.ones((0, 1), np.uint8)), True, True)
    assert not launches and (bg == 0).all()

    for c, block in ((10, (32, 8)), (1024, (32, 8)), (1025, (256, 1)), (100000, (1024, 1))):
        z = fake(np.zeros((3, c), dtype))
        t = fake(np.array([0, c - 1, 1 % c], np.int64))
        launches.clear()
        loss, grad = G.softmax_xent(z, t, "mean")
        assert loss.shape == () and loss.dtype == dtype and grad.shape == (3, c)
        assert names(launches) == ["softmax_xent_check_target", f"softmax_xent_{s}", f"softmax_xent_loss_{s}"]
        assert launches[1][2] == block

    p, g, buf = (fake(np.ones(10, dtype)) for _ in range(3))
    for mom in (0.0, 0.9):
        launches.clear()
        assert G.sgd_step(p, g, buf, 0.1, mom, 0.0, 1e-4, True, False) is p
        assert names(launches) == [f"sgd_step_{s}"]
    launches.clear()
    ps = [fake(np.ones(sh, dtype)) for sh in [(3, 4), (0,), (5000,), ()]]
    gs = [fake(np.ones(q.shape, dtype)) for q in ps]
    bs = [fake(np.zeros(q.shape, dtype)) for q in ps]
    assert G.sgd_step_many(ps, gs, bs, 0.1, 0.9, 0.0, 0.0, False, True) == ps
    assert G.sgd_step_many(ps, gs, None, 0.1, 0.0, 0.0, 0.0, False, True) == ps
    assert names(launches) == [f"sgd_step_many_{s}"] * 2
    assert G.sgd_step_many([], [], None, 0.1, 0.0, 0.0, 0.0, False, True) == []

    for amsgrad in (False, True):
        p, g, m, v, x = (fake(np.ones(10, dtype)) for _ in range(5))
        launches.clear()
        assert G.adam_step(p, g, m, v, x, 3, 1e-3, 0.9, 0.999, 1e-8, 0.01, amsgrad, False, True) is p
        assert names(launches) == [f"adam_step_{s}"]
    launches.clear()
    e = fake(np.ones(0, dtype))
    assert G.adam_step(e, e.copy(), e.copy(), e.copy(), None, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False, False) is e
    assert not launches


def test_sgd_step_many_chunk_table(launches):
    """Each chunk names its tensor and first element; together they cover every element once."""
    sizes = (12, 0, 9000, 1, 4096)
    ptrs = tuple(range(1000, 1000 + 8 * len(sizes), 8))
    table = G._sgd_table(0, ptrs, (), sizes, 4096).get()
    k = len(sizes)
    assert list(table[:k]) == list(ptrs) and list(table[k:2 * k]) == [0] * k   # no momentum: null buffers
    assert list(table[2 * k:3 * k]) == list(sizes)
    chunks = (table.size - 3 * k) // 2
    tensor, start = table[3 * k:3 * k + chunks], table[3 * k + chunks:]
    covered = {(int(t), i) for t, s0 in zip(tensor, start) for i in range(s0, min(s0 + 4096, sizes[t]))}
    assert covered == {(t, i) for t, n in enumerate(sizes) for i in range(n)}
    assert len(covered) == sum(sizes)


def test_strided_inputs_are_copied_and_written_arguments_are_not(launches):
    y = fake(np.ones((6, 8), np.float32))[:, ::2]  # strided: copied, as RawKernel ignores strides
    out = G.linear_forward_epilogue(y, None, True)
    assert out.flags.c_contiguous and out.shape == (6, 4)
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        G.linear_forward_epilogue(fake(np.ones((4, 6), np.float32)), None, True, fake(np.ones((6, 4), np.float32)).T)
    with pytest.raises(ValueError, match="param must be C-contiguous"):
        G.sgd_step(y, fake(np.ones((6, 4), np.float32)), None, 0.1, 0.0, 0.0, 0.0, False, True)
    z = fake(np.zeros((6, 4), np.float32))
    for k in (0, 2, 3):        # param, exp_avg, exp_avg_sq: written in place, never copied
        args = [z.copy(), z.copy(), z.copy(), z.copy()]
        args[k] = y
        with pytest.raises(ValueError, match=["param", "", "exp_avg", "exp_avg_sq"][k] + " must be C-contiguous"):
            G.adam_step(*args, None, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False, False)
    G.adam_step(z.copy(), y, z.copy(), z.copy(), None, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False, False)  # grad: copied


def test_labels_are_checked_before_launch(launches, monkeypatch):
    z = fake(np.zeros((3, 4), np.float32))
    # the fake check kernel finds nothing; make the device answer "row 1 is bad"
    monkeypatch.setattr(backend._cupy, "full", lambda shape, v, dtype: emucupy.asarray(np.full(shape, 1, dtype)))
    with pytest.raises(ValueError, match=r"softmax_xent: target\[1\] = 7 is not a class index in \[0, 4\)"):
        G.softmax_xent(z, fake(np.array([0, 7, 1], np.int64)), "sum")
    assert names(launches) == ["softmax_xent_check_target"]


def test_numpy_arrays_are_refused_not_moved(launches):
    with pytest.raises(TypeError, match=r"linear_forward_epilogue: y must be a cupy.ndarray, got numpy.ndarray \(it is on the CPU"):
        G.linear_forward_epilogue(np.ones((2, 2), np.float32), None, True)
    with pytest.raises(TypeError, match=r"bias must be a cupy.ndarray or None"):
        G.linear_forward_epilogue(fake(np.ones((2, 2), np.float32)), [1.0, 2.0], True)
    with pytest.raises(TypeError, match=r"grads\[1\] must be a cupy.ndarray"):
        G.sgd_step_many([fake(np.ones(2))] * 2, [fake(np.ones(2)), np.ones(2)], None, 0.1, 0.0, 0.0, 0.0, False, True)
    a = fake(np.ones((2, 2), np.float32))
    a.dev = 1
    with pytest.raises(ValueError, match="y is on cuda:1 but the current device is cuda:0"):
        G.linear_forward_epilogue(a, None, True)
    assert not launches


def bad_calls(xp):
    """(kernel name, args) pairs every twin must refuse, with arrays made by ``xp``."""
    f32, f64, i64 = (lambda s, d=np.float32: xp(np.ones(s, d))), (lambda s: xp(np.ones(s))), \
        (lambda s: xp(np.zeros(s, np.int64)))
    u8 = lambda s, d=np.uint8: xp(np.zeros(s, d))  # noqa: E731  (a packed ReLU mask)
    big = xp(np.ones(20, np.float32))
    return [
        ("linear_forward_epilogue", (xp(np.ones((2, 3), np.int32)), None, True)),
        ("linear_forward_epilogue", (f32((2, 3)), f64(3), True)),
        ("linear_forward_epilogue", (f32((2, 3)), None, True, f64((2, 3)))),
        ("linear_forward_epilogue", (f32(3), None, True)),
        ("linear_forward_epilogue", (f32((2, 3)), f32(4), True)),
        ("linear_forward_epilogue", (f32((2, 3)), None, True, f32((3, 2)))),
        ("linear_forward_epilogue", (big[:6].reshape(2, 3), big[3:6], True, big[:6].reshape(2, 3))),
        ("linear_forward_epilogue", (big[:6].reshape(2, 3), None, True, big[1:7].reshape(2, 3))),
        ("linear_forward_epilogue", (f32((2, 3)), None, True, None, u8((2, 2)))),
        ("linear_forward_epilogue", (f32((2, 3)), None, True, None, u8((2, 1), np.float32))),
        ("linear_forward_epilogue", (f32((2, 3)), None, False, None, u8((2, 1)))),
        ("linear_forward_epilogue", (f32((2, 9)), None, True, None, u8((2, 2), np.uint8).T.copy().T)),
        ("linear_backward_epilogue", (f64((2, 3)), u8((2, 1)), True, True, f32((2, 3)))),
        ("linear_backward_epilogue", (f32((2, 3)), None, True, True)),
        ("linear_backward_epilogue", (f32((2, 3)), u8((3, 1)), True, True)),
        ("linear_backward_epilogue", (f32((2, 3)), u8((2, 1), np.int8), True, True)),
        ("linear_backward_epilogue", (f32((2, 3, 1)), u8((2, 1)), True, True)),
        ("linear_backward_epilogue", (f32((2, 3)), u8((2, 1)), True, True, f32((2, 3), np.float16))),
        ("softmax_xent", (f32((2, 3)), xp(np.zeros(2, np.int32)), "mean")),
        ("softmax_xent", (f32((2, 3)), i64(2), "avg")),
        ("softmax_xent", (f32((0, 3)), i64(0), "mean")),
        ("softmax_xent", (f32((2, 0)), i64(2), "mean")),
        ("softmax_xent", (f32((2, 3)), i64(3), "mean")),
        ("softmax_xent", (f32((2, 3)), i64(2), "sum", f64((2, 3)))),
        ("softmax_xent", (f32((2, 3)), i64(2), "sum", f32((3, 2)))),
        ("softmax_xent", (f32(3), i64(3), "sum")),
        ("sgd_step", (xp(np.ones(3, np.float16)), f32(3), None, 0.1, 0.0, 0.0, 0.0, False, True)),
        ("sgd_step", (f32(3), f64(3), None, 0.1, 0.0, 0.0, 0.0, False, True)),
        ("sgd_step", (f32(3), f32(4), None, 0.1, 0.0, 0.0, 0.0, False, True)),
        ("sgd_step", (f32(3), f32(3), None, 0.1, 0.9, 0.0, 0.0, False, True)),
        ("sgd_step", (f32(3), f32(3), f32(4), 0.1, 0.9, 0.0, 0.0, False, True)),
        ("sgd_step", (f32(3), f32(3), f64(3), 0.1, 0.9, 0.0, 0.0, False, True)),
        ("sgd_step", (big[:3], big[1:4], None, 0.1, 0.0, 0.0, 0.0, False, True)),
        ("sgd_step", (big[:3], f32(3), big[2:5], 0.1, 0.9, 0.0, 0.0, False, True)),
        ("adam_step", (xp(np.ones(3, np.float16)), f32(3), f32(3), f32(3), None, 1, *ADAM)),
        ("adam_step", (f32(3), f64(3), f32(3), f32(3), None, 1, *ADAM)),
        ("adam_step", (f32(3), f32(3), f64(3), f32(3), None, 1, *ADAM)),
        ("adam_step", (f32(3), f32(3), f32(3), f64(3), None, 1, *ADAM)),
        ("adam_step", (f32(3), f32(3), f32(3), f32(3), None, 1, *ADAM_AMS)),
        ("adam_step", (f32(3), f32(3), f32(3), f32(3), f64(3), 1, *ADAM_AMS)),
        ("adam_step", (f32(3), f32(3), f32(3), f32(3), None, 0, *ADAM)),
        ("adam_step", (f32(3), f32(4), f32(3), f32(3), None, 1, *ADAM)),
        ("adam_step", (f32(3), f32(3), f32((3, 1)), f32(3), None, 1, *ADAM)),
        ("adam_step", (f32(3), f32(3), f32(3), f32(3), f32(2), 1, *ADAM_AMS)),
        ("adam_step", (f32(3), f32(3), f32((1, 3))[:, ::1].T, f32(3), None, 1, *ADAM)),
        ("adam_step", (big[:3], big[:3], f32(3), f32(3), None, 1, *ADAM)),
        ("adam_step", (big[:3], f32(3), big[2:5], f32(3), None, 1, *ADAM)),
        ("adam_step", (f32(3), f32(3), big[:3], big[1:4], None, 1, *ADAM)),
        ("adam_step", (f32(3), big[:3], f32(3), f32(3), big[2:5], 1, *ADAM_AMS)),
    ]


ADAM = (1e-3, 0.9, 0.999, 1e-8, 0.01, False, False, True)      # lr, betas, eps, weight_decay, amsgrad, maximize, decoupled
ADAM_AMS = (1e-3, 0.9, 0.999, 1e-8, 0.01, True, True, False)


def test_bad_arguments_raise_as_the_cpu_kernels_do_before_any_launch(launches):
    try:
        from tinytl.kernels import cpu as C
    except ImportError:
        C = None
    for (name, args), (_, cpu_args) in zip(bad_calls(fake), bad_calls(np.asarray)):
        with pytest.raises((TypeError, ValueError)) as got:
            getattr(G, name)(*args)
        assert str(got.value).startswith(f"{name}: "), str(got.value)
        if C is not None:
            with pytest.raises((TypeError, ValueError)) as want:
                getattr(C, name)(*cpu_args)
            assert (type(got.value), str(got.value)) == (type(want.value), str(want.value)), name
    assert not launches


def test_sgd_step_many_names_the_bad_tensor(launches):
    p = [fake(np.ones(3, np.float32)), fake(np.ones(4, np.float32))]
    g = [fake(np.ones(3, np.float32)), fake(np.ones(5, np.float32))]
    with pytest.raises(ValueError, match=r"sgd_step_many: grads\[1\] must have shape \(4,\), got \(5,\)"):
        G.sgd_step_many(p, g, None, 0.1, 0.0, 0.0, 0.0, False, True)
    with pytest.raises(TypeError, match=r"params\[1\] must be float32 \(the dtype of params\[0\]\)"):
        G.sgd_step_many([p[0], fake(np.ones(4))], g, None, 0.1, 0.0, 0.0, 0.0, False, True)
    with pytest.raises(ValueError, match="bufs is required when momentum != 0"):
        G.sgd_step_many(p, p, None, 0.1, 0.9, 0.0, 0.0, False, True)
    with pytest.raises(ValueError, match="grads must have one array per parameter"):
        G.sgd_step_many(p, p[:1], None, 0.1, 0.0, 0.0, 0.0, False, True)
    assert not launches
