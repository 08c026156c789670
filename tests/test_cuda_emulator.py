"""The CUDA-on-the-CPU emulator (tests/emu/cuda_on_cpu.h, tests/emucupy.py) has teeth.

test_kernels_cuda.py trusts it in CI to say the CUDA kernels compute what reference.py
computes; these tests show it would say so only of correct kernels:
1. small kernels written here: every (block, thread) runs once with the right indices in
   1-D, 2-D and 3-D launches; __syncthreads and the warp shuffles give what CUDA
   specifies; a barrier some threads skip, a shuffle in a partial warp, a write past the
   end of an array are errors; the ucontext fallback agrees with the x86-64 switch.
   Shared memory starts as garbage in every block; threads at different __syncthreads,
   lanes at different warp primitives, and atomics CUDA lacks are errors.
2. the arrays: CuPy's layout rules (order 'K', get() in C order), its refusal of a NumPy
   array as a value, ufunc.at, guards around every operation's result.
3. mutants of tinytl's own kernels (one bug planted per test, in the text CuPy would
   compile): a missing barrier, a wrong shuffle offset, an off-by-one, an early return
   before a barrier, a read of shared memory nothing wrote. Each must be caught, by the
   results or by the emulator itself.
"""
import ctypes

import numpy as np
import pytest

import emucupy
from tinytl.kernels import cuda as G
from tinytl.kernels import reference as R

if emucupy.compiler() is None:
    pytest.skip("no g++: the CUDA emulator cannot be built", allow_module_level=True)

HEAD = '#line 1 "tinytl/kernels/cuda/emutest.cu"\n'


def run(code, name, grid, block, *args, defines=()):
    """Launch kernel ``name`` of ``code`` once per thread order (index, reversed, shuffled)."""
    dll, sigs = emucupy.build(HEAD + code, defines)
    launches = []
    k = emucupy.Kernel(name, sigs[name], launches, dll)
    for _ in range(3):
        k(grid, block, args)


# --------------------------------------------------------- the emulator ----

INDEX = r'''
extern "C" __global__ void ids(long long* out) {
    const long long b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * (long long)blockIdx.z);
    const long long t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * (long long)threadIdx.z);
    const long long threads = (long long)blockDim.x * blockDim.y * blockDim.z;
    out[b * threads + t] += b * 100000 + t;
}
'''


@pytest.mark.parametrize("grid,block", [((3,), (64,)), ((2, 3), (8, 4)), ((2, 1, 3), (4, 2, 4)), ((1,), (1024,))])
def test_every_thread_of_every_block_runs_once_with_its_indices(grid, block):
    blocks, threads = int(np.prod(grid)), int(np.prod(block))
    out = emucupy.asarray(np.zeros(blocks * threads, np.int64))
    run(INDEX, "ids", grid, block, out)
    b, t = np.divmod(np.arange(blocks * threads), threads)
    np.testing.assert_array_equal(out.get(), 3 * (b * 100000 + t))  # three launches


BARRIER = r'''
// out[i] = sum of in over the block, via shared memory; needs both barriers.
extern "C" __global__ void block_sum(const float* in, float* out) {
    __shared__ float s[256];
    const int t = threadIdx.x;
    s[t] = in[blockIdx.x * blockDim.x + t];
    __syncthreads();
    float total = 0;
    for (int k = 0; k < (int)blockDim.x; ++k) total += s[(t + k) % blockDim.x];
    __syncthreads();
    out[blockIdx.x * blockDim.x + t] = total;
}
'''


def test_syncthreads_makes_every_write_visible():
    x = np.arange(512, dtype=np.float32)
    out = emucupy.empty(512, np.float32)
    run(BARRIER, "block_sum", (2,), (256,), emucupy.asarray(x), out)
    got = out.get()
    assert (got[:256] == x[:256].sum()).all() and (got[256:] == x[256:].sum()).all()


def test_a_missing_barrier_shows_as_a_race():
    x = np.arange(256, dtype=np.float32)
    results = set()
    dll, sigs = emucupy.build(HEAD + BARRIER.replace("    __syncthreads();\n    float total", "    float total"))
    k = emucupy.Kernel("block_sum", sigs["block_sum"], [], dll)
    for _ in range(3):  # index order, reversed, shuffled
        out = emucupy.empty(256, np.float32)
        k((1,), (256,), (emucupy.asarray(x), out))
        results.add(out.get().tobytes())
    assert len(results) > 1 or np.frombuffer(results.pop(), np.float32)[0] != x.sum()


SHUFFLE = r'''
extern "C" __global__ void shuffles(const double* in, double* out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const double v = in[i];
    out[4 * i + 0] = __shfl_xor_sync(0xffffffffu, v, 5);
    out[4 * i + 1] = __shfl_down_sync(0xffffffffu, v, 3);
    out[4 * i + 2] = __shfl_sync(0xffffffffu, v, 7);
    double s = v;
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    out[4 * i + 3] = s;
}
'''


@pytest.mark.parametrize("defines", [(), ("EMU_UCONTEXT",)], ids=["asm", "ucontext"])
def test_warp_shuffles_as_cuda_specifies(defines):
    x = np.random.default_rng(0).standard_normal(128)
    out = emucupy.empty(4 * 128, np.float64)
    run(SHUFFLE, "shuffles", (2,), (64,), emucupy.asarray(x), out, defines=defines)
    got = out.get().reshape(128, 4)
    lane, base = np.arange(128) % 32, np.arange(128) - np.arange(128) % 32
    np.testing.assert_array_equal(got[:, 0], x[base + (lane ^ 5)])
    np.testing.assert_array_equal(got[:, 1], np.where(lane + 3 < 32, x[np.minimum(base + lane + 3, 127)], x))
    np.testing.assert_array_equal(got[:, 2], x[base + 7])
    np.testing.assert_allclose(got[:, 3], x.reshape(4, 32).sum(1).repeat(32), rtol=1e-14)
    assert len(set(got[:, 3].reshape(4, 32)[0])) == 1  # the butterfly gives every lane the same bits


def test_a_barrier_some_threads_skip_is_an_error():
    code = BARRIER.replace("    const int t = threadIdx.x;\n", "    const int t = threadIdx.x;\n    if (t == 5) return;\n")
    x = emucupy.asarray(np.ones(256, np.float32))
    with pytest.raises(AssertionError, match=r"block_sum.*__syncthreads that 1 of the block's 256 threads did not"):
        run(code, "block_sum", (1,), (256,), x, emucupy.empty(256, np.float32))


def test_a_shuffle_in_a_partial_warp_or_with_a_partial_mask_is_an_error():
    x = emucupy.asarray(np.ones(48))
    with pytest.raises(AssertionError, match="block of 48 threads, not a multiple of the warp size"):
        run(SHUFFLE, "shuffles", (1,), (48,), x, emucupy.empty(4 * 48, np.float64))
    code = SHUFFLE.replace("__shfl_sync(0xffffffffu", "__shfl_sync(0xffffu")
    with pytest.raises(AssertionError, match="__shfl_sync with a mask other than all 32 lanes"):
        run(code, "shuffles", (1,), (32,), emucupy.asarray(np.ones(32)), emucupy.empty(4 * 32, np.float64))


def test_a_write_past_the_end_is_caught():
    code = 'extern "C" __global__ void k(float* out, long long n) { out[threadIdx.x] = 7.0f; }'
    with pytest.raises(AssertionError, match="a kernel wrote outside an array"):
        run(code, "k", (1,), (33,), emucupy.empty(32, np.float32), np.int64(32))


def test_a_launch_with_a_wrong_argument_type_is_refused():
    out = emucupy.empty(32, np.float32)
    code = 'extern "C" __global__ void k(float* out, long long n) { if (threadIdx.x < n) out[threadIdx.x] = 1; }'
    with pytest.raises(AssertionError, match=r"k\(n\): long long given int"):
        run(code, "k", (1,), (32,), out, 32)  # a Python int: CuPy would pass it as long long, by luck
    with pytest.raises(AssertionError, match=r"k\(out\)"):
        run(code, "k", (1,), (32,), emucupy.empty(32, np.float64), np.int64(32))


STALE = r'''
// Block 0 writes shared memory, the others only read it: on a GPU they read garbage.
extern "C" __global__ void stale(float* out, int* ints) {
    __shared__ float s[32];
    __shared__ int k[32];
    if (blockIdx.x == 0) { s[threadIdx.x] = 1.0f; k[threadIdx.x] = 0; }
    __syncthreads();
    out[blockIdx.x * 32 + threadIdx.x] = s[threadIdx.x];
    ints[blockIdx.x * 32 + threadIdx.x] = k[threadIdx.x];
}
'''


def test_shared_memory_starts_as_garbage_in_every_block():
    """Not zeros (a static's start), nor what the previous block left: NaN bytes or random
    bytes, in turn, so a kernel reading shared memory it did not write fails."""
    dll, sigs = emucupy.build(HEAD + STALE)
    k = emucupy.Kernel("stale", sigs["stale"], [], dll)
    for _ in range(4):
        out, ints = emucupy.empty(3 * 32, np.float32), emucupy.empty(3 * 32, np.int32)
        k((3,), (32,), (out, ints))
        got, got_ints = out.get().reshape(3, 32), ints.get().reshape(3, 32)
        assert (got[0] == 1).all() and (got_ints[0] == 0).all()
        assert not (got[1:] == 1).any() and not (got[1:] == 0).all() and not (got_ints[1:] == 0).all()


def test_threads_at_different_syncthreads_are_an_error():
    code = BARRIER.replace("    __syncthreads();\n    float total",
                           "    if (t < 64) __syncthreads();\n    else __syncthreads();\n    float total")
    x = emucupy.asarray(np.ones(256, np.float32))
    with pytest.raises(AssertionError, match=r"wait at different __syncthreads \(.*emutest\.cu:\d+ and .*emutest"):
        run(code, "block_sum", (1,), (256,), x, emucupy.empty(256, np.float32))


def test_lanes_at_different_warp_primitives_are_an_error():
    code = r'''
extern "C" __global__ void k(double* out) {
    double v = threadIdx.x;
    if (threadIdx.x < 16) __syncwarp();
    else v = __shfl_xor_sync(0xffffffffu, v, 1);
    out[threadIdx.x] = v;
}'''
    with pytest.raises(AssertionError, match="wait at different warp primitives"):
        run(code, "k", (1,), (32,), emucupy.empty(32, np.float64))


@pytest.mark.parametrize("call", ["atomicMax(out, 1.0f)", "atomicAdd((long long*)out, 1LL)"])
def test_atomics_cuda_lacks_do_not_compile(call):
    with pytest.raises(emucupy.CompileError):
        emucupy.build(HEAD + f'extern "C" __global__ void k(float* out) {{ {call}; }}')


# ------------------------------------------------------------ the arrays ----

def test_arrays_keep_cupys_layout_rules():
    cp = emucupy.make_cupy(run=False)
    f = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    g = cp.asarray(f)
    assert g.flags.f_contiguous and not g.flags.c_contiguous          # order 'K'
    assert cp.empty_like(g).flags.f_contiguous and cp.zeros_like(g).flags.f_contiguous
    assert cp.asarray(f, order="C").flags.c_contiguous and cp.ascontiguousarray(g).flags.c_contiguous
    assert cp.asnumpy(g).flags.c_contiguous and g.get().flags.c_contiguous   # get's order is 'C'
    assert cp.asnumpy(g, order="A").flags.f_contiguous
    assert cp.empty((2, 3), np.float32, order="F").flags.f_contiguous
    np.testing.assert_array_equal(cp.asnumpy(g), f)
    assert cp.asarray(g) is g


def test_elementwise_results_are_c_ordered_as_cupy_makes_them():
    cp = emucupy.make_cupy(run=False)
    g = cp.asarray(np.asfortranarray(np.ones((3, 4))))
    for r in (g + 1, g * g, -g, cp.maximum(g, 0), np.exp(g)):
        assert r.flags.c_contiguous and not r.flags.f_contiguous
    assert g.astype(np.float32).flags.f_contiguous and g.T.flags.c_contiguous   # astype keeps 'K'; .T is a view


def test_arrays_refuse_a_numpy_value_and_scatter_add():
    cp = emucupy.make_cupy(run=False)
    a = cp.zeros(5)
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        a[:] = np.ones(5)
    a[np.array([0, 4])] = np.array([2.0, 2.0])   # with an index array, CuPy copies the value over
    a[1:4] = np.float64(2)                        # a NumPy scalar is a scalar
    cp.add.at(a, np.array([1, 1, 3]), 1.0)
    np.testing.assert_array_equal(a.get(), [2, 4, 2, 3, 2])
    np.testing.assert_array_equal(cp.add.reduce(cp.ones((2, 3)), axis=0).get(), [2, 2, 2])
    with pytest.raises(TypeError, match="add.at only supports"):
        cp.add.at(cp.zeros(3, np.int64), np.array([0]), 1)
    with pytest.raises(NotImplementedError):
        cp.multiply.at(a, np.array([0]), 2.0)


def test_views_and_reads_count_no_device_work():
    cp = emucupy.make_cupy(run=False)
    a = cp.ones((4, 3))
    n = len(emucupy.FakeArray.ops)
    a[0], a[1, 2], a[1:], a.T, a.reshape(12)
    assert emucupy.FakeArray.ops[n:] == []
    a[np.array([0, 2])], a + 1, a.sum()
    assert emucupy.FakeArray.ops[n:] == ["take", "add", "sum"]


def test_a_write_past_the_result_of_an_array_operation_is_caught():
    """Results of CuPy operations (here a sum and a product) sit between guards too."""
    x = emucupy.asarray(np.ones(32, np.float32))
    y = x + x * 2
    code = 'extern "C" __global__ void k(float* out, long long n) { out[threadIdx.x] = 7.0f; }'
    with pytest.raises(AssertionError, match="a kernel wrote outside an array"):
        run(code, "k", (1,), (33,), y, np.int64(32))


def test_compile_errors_point_into_the_cu_file():
    with pytest.raises(emucupy.CompileError, match=r"emutest\.cu:1"):
        emucupy.build(HEAD + 'extern "C" __global__ void k() { oops; }')


# ------------------------------------------------ mutants of tinytl's kernels ----

@pytest.fixture
def mutant(monkeypatch):
    """mutant(file, old, new): tinytl's kernels, with ``old`` replaced by ``new`` in cuda/<file>.cu."""
    with emucupy.installed():
        source = G._source

        def plant(file, old, new):
            text = source(file)
            assert text.count(old) == 1, f"the mutation no longer applies to {file}.cu: update the test"
            G._source = lambda f: text.replace(old, new) if f == file else source(f)
            for f in (G._module, G._kernel):
                f.cache_clear()

        yield plant


def caught(check, tries=3):
    """True when ``check`` (a comparison with reference.py) fails in one of ``tries`` launches."""
    for _ in range(tries):
        try:
            check()
        except AssertionError:
            return True
    return False


def backward_check(n, m):
    rng = np.random.default_rng(0)
    grad, y = rng.standard_normal((n, m)), np.maximum(rng.standard_normal((n, m)), 0)
    mask = np.packbits(y > 0, axis=1, bitorder="little")
    wg, wb = R.linear_backward_epilogue(grad, mask, True, True)

    def check():
        g, b = G.linear_backward_epilogue(emucupy.asarray(grad), emucupy.asarray(mask), True, True)
        np.testing.assert_array_equal(g.get(), wg)
        np.testing.assert_allclose(b.get(), wb, rtol=1e-12)
    return check


def softmax_check(n, c):
    rng = np.random.default_rng(0)
    z, t = rng.standard_normal((n, c)), rng.integers(0, c, n)
    wl, wg = R.softmax_xent(z, t, "mean")

    def check():
        loss, g = G.softmax_xent(emucupy.asarray(z), emucupy.asarray(t), "mean")
        np.testing.assert_allclose(float(loss), wl, rtol=1e-12)
        np.testing.assert_allclose(g.get(), wg, rtol=1e-10, atol=1e-15)
    return check


def mask_check(n, m):
    """The forward's packed ReLU mask (one thread per byte) against reference.py's."""
    rng = np.random.default_rng(1)
    y = rng.standard_normal((n, m))
    want = np.zeros((n, (m + 7) // 8), np.uint8)
    R.linear_forward_epilogue(y, None, True, None, want)

    def check():
        got = emucupy.asarray(np.zeros_like(want))
        G.linear_forward_epilogue(emucupy.asarray(y), None, True, None, got)
        np.testing.assert_array_equal(got.get(), want)
    return check


def test_the_unmutated_kernels_pass_these_checks(mutant):
    for check in (backward_check(300, 45), mask_check(37, 45), softmax_check(20, 37), softmax_check(3, 3000)):
        assert not caught(check)


def test_mutant_with_the_mask_bits_in_the_wrong_order(mutant):
    mutant("linear", "bits |= (unsigned)(v > T(0)) << (j - j0);", "bits |= (unsigned)(v > T(0)) << (7 - (j - j0));")
    assert caught(mask_check(37, 45))


def test_mutant_without_the_bias_sum_barrier(mutant):
    mutant("linear", "    part[threadIdx.y][threadIdx.x] = s;\n    __syncthreads();\n",
           "    part[threadIdx.y][threadIdx.x] = s;\n")
    assert caught(backward_check(300, 45))


def test_mutant_returning_before_the_bias_sum_barrier(mutant):
    mutant("linear", "    if (!bias_grad) return;", "    if (!bias_grad || j >= m) return;")
    with pytest.raises(AssertionError, match="__syncthreads that .* did not reach"):
        backward_check(300, 45)()


def test_mutant_with_a_wrong_shuffle_offset(mutant):
    mutant("softmax_xent", "for (int offset = 16; offset > 0;", "for (int offset = 8; offset > 0;")
    assert caught(softmax_check(20, 37))


def test_mutant_reusing_shared_memory_without_a_barrier(mutant):
    mutant("softmax_xent", "    __syncthreads();  // red is reused by the next reduction\n", "")
    assert caught(softmax_check(3, 3000))  # a block per row: the per-warp results go through red


def test_mutant_reading_shared_memory_it_did_not_write(mutant):
    """Every thread adds all 32 slots of red, not just one per warp: the unwritten ones
    were zeros (the static's start) when shared memory was not poisoned, which neither
    the max (of positive logits) nor the sum noticed."""
    mutant("softmax_xent", "for (int w = 1; w < warps; ++w)", "for (int w = 1; w < 32 + 0 * warps; ++w)")
    assert caught(softmax_check(3, 3000))


def test_mutant_writing_one_element_too_many(mutant):
    mutant("sgd", "i < n; i += stride)", "i <= n; i += stride)")
    p = emucupy.asarray(np.ones(1000, np.float32))
    with pytest.raises(AssertionError, match="wrote outside an array"):
        G.sgd_step(p, emucupy.asarray(np.ones(1000, np.float32)), None, 0.1, 0.0, 0.0, 0.0, False, True)


def test_mutant_with_a_fused_multiply_add(mutant):
    """The SGD kernels avoid FMA so they round as NumPy does; a plain product would do too
    (-ffp-contract=off), but an explicit fma() rounds once and must be caught."""
    mutant("sgd", "    p[i] = p[i] - mul_rn(lr, d);", "    p[i] = fma(-lr, d, p[i]);")
    rng = np.random.default_rng(2)
    p0, g = rng.standard_normal(4096).astype(np.float32), rng.standard_normal(4096).astype(np.float32)
    p = emucupy.asarray(p0)
    G.sgd_step(p, emucupy.asarray(g), None, 0.01, 0.0, 0.0, 0.0, False, True)
    R.sgd_step(p0, g, None, 0.01, 0.0, 0.0, 0.0, False, True)
    assert (p.get() != p0).any()


def test_pointer_arguments_reach_the_kernel_as_addresses():
    """The pointer tables of sgd_step_many hold host addresses here: check one round trip."""
    code = 'extern "C" __global__ void k(long long* out, const float* a) { out[0] = (long long)a; }'
    out, a = emucupy.empty(1, np.int64), emucupy.empty(3, np.float32)
    run(code, "k", (1,), (1,), out, a)
    assert int(out[0]) == a.data.ptr == ctypes.addressof(ctypes.c_char.from_address(a.data.ptr))


def adam_check(amsgrad):
    """adam_step on the emulated GPU against reference.py, bit for bit, over a few steps."""
    rng = np.random.default_rng(4)
    p0 = rng.standard_normal(3000).astype(np.float32)
    arrays = [emucupy.asarray(p0)] + [emucupy.asarray(np.zeros(3000, np.float32)) for _ in range(3)]
    ref = [p0.copy()] + [np.zeros(3000, np.float32) for _ in range(3)]

    def check():
        for t in (1, 2, 3):
            g = rng.standard_normal(3000).astype(np.float32) * np.float32(4 - t)   # shrinking: vmax holds
            opts = (t, 1e-2, 0.9, 0.999, 1e-8, 0.01, amsgrad, False, False)
            G.adam_step(arrays[0], emucupy.asarray(g), arrays[1], arrays[2], arrays[3] if amsgrad else None, *opts)
            R.adam_step(ref[0], g, ref[1], ref[2], ref[3] if amsgrad else None, *opts)
        for a, r in zip(arrays, ref):
            np.testing.assert_array_equal(a.get(), r)
    return check


def test_adam_kernel_matches_and_its_mutants_are_caught(mutant):
    """The kernel as it is passes the check; one that takes amsgrad's maximum the wrong way
    round (the minimum) fails it. (Each mutant is a g++ build: one is enough here.)"""
    with emucupy.installed():
        adam_check(True)()
    mutant("adam", "(a >= v || a != a) ? a : v", "(a >= v || a != a) ? v : a")
    assert caught(adam_check(True))
