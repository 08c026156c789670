// The small-batch GEMMs of a Linear layer, written once over a vector type and compiled once
// per instruction set: gemm_avx512.cpp, gemm_avx2.cpp and gemm_scalar.cpp each define the
// vector traits VF (float) and VD (double) and the tile sizes, then include this file inside
// their own namespace. gemm.cpp picks one of them at run time (gemm.h has the contract).
//
// The structure is BLIS's, cut down to what an MLP step needs:
// - a register-blocked micro-kernel: an MR x NR tile of C (NR = NV vectors) stays in registers
//   while the reduction runs; each step loads one row of B (NV vectors) and broadcasts MR
//   elements of A: MR * NV fused multiply-adds per MR + NV loads;
// - B is read in place when its rows are usable as they are (the forward's weight, which
//   Linear stores as the C-contiguous (in, out) matrix W.T), and packed otherwise: the
//   backward packs the gradient once (ReLU mask applied, bias gradient summed in the same
//   pass) into a 64-byte-aligned buffer that both backward products read;
// - the epilogue (bias, ReLU, packed mask) runs on the output tile while it is in
//   registers: the forward writes each output element once, already final.
// Each output element is computed by one thread, always in the same order (k ascending, in
// blocks of KC), so results do not depend on the number of threads.
//
// Requires, before inclusion: using T-generic traits VF, VD with
//   R (register type), W (lanes), zero(), set1(x), load(p), store(p, v), fma(a, b, c) = a*b + c,
//   add(a, b), relu(v) (max(0, v) keeping NaN), gt0_bits(v) (bit l = lane l > 0),
//   mul01(v, bits) (v times 0/1 per lane from bits, NaN kept), transpose_block(s, lds, d, ldd) (a W x W block), and
// constants MR_F, NV_F, MR_D, NV_D (tile sizes) and KC (reduction block).

// No std:: templates in this file: it is compiled with other -m flags than the rest of the
// module, and an inline function instantiated here could be merged by the linker into the
// baseline code (then run on a CPU without these instructions).
static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// A tile of C held as MR x NV registers.
template <class V, int MR, int NV>
struct Tile {
    typename V::R r[MR][NV];
};

// acc += A[0:MR, 0:kc] @ B[0:kc, 0:NV*W]. A(i, p) = A[i * rsa + p * csa] (any strides:
// elements are broadcast one at a time); B rows are ldb apart, NV*W contiguous elements each.
template <class V, int MR, int NV>
static inline void micro_kernel(int64_t kc, const typename V::T* __restrict A, int64_t rsa, int64_t csa,
                                const typename V::T* __restrict B, int64_t ldb, Tile<V, MR, NV>& acc) {
    using R = typename V::R;
    for (int64_t p = 0; p < kc; ++p) {
        R b[NV];
        for (int v = 0; v < NV; ++v) b[v] = V::load(B + p * ldb + v * V::W);
        const typename V::T* a = A + p * csa;
        for (int i = 0; i < MR; ++i) {
            const R ai = V::set1(a[i * rsa]);
            for (int v = 0; v < NV; ++v) acc.r[i][v] = V::fma(ai, b[v], acc.r[i][v]);
        }
    }
}

// Loads / stores of the first nc (< NV*W possible) columns of a tile row.
template <class V, int NV>
static inline void load_row(const typename V::T* src, int64_t nc, typename V::R* dst) {
    for (int v = 0; v < NV; ++v) {
        const int64_t c0 = int64_t(v) * V::W;
        if (c0 + V::W <= nc) {
            dst[v] = V::load(src + c0);
        } else if (c0 < nc) {
            alignas(64) typename V::T tmp[V::W] = {};
            for (int64_t l = 0; l < nc - c0; ++l) tmp[l] = src[c0 + l];
            dst[v] = V::load(tmp);
        } else {
            dst[v] = V::zero();
        }
    }
}

template <class V, int NV>
static inline void store_row(typename V::T* dst, int64_t nc, const typename V::R* src) {
    for (int v = 0; v < NV; ++v) {
        const int64_t c0 = int64_t(v) * V::W;
        if (c0 + V::W <= nc) {
            V::store(dst + c0, src[v]);
        } else if (c0 < nc) {
            alignas(64) typename V::T tmp[V::W];
            V::store(tmp, src[v]);
            for (int64_t l = 0; l < nc - c0; ++l) dst[c0 + l] = tmp[l];
        }
    }
}

// What happens to a finished tile: plain store, or the forward's bias + ReLU + mask.
template <class V>
struct Epilogue {
    const typename V::T* bias = nullptr;  // (N,) or nullptr, indexed by the output column
    bool relu = false;
    uint8_t* mask = nullptr;              // (M, ceil(N / 8)) bytes, or nullptr
    int64_t mask_ld = 0;
};

template <class V, int MR, int NV>
static void store_tile(typename V::T* C, int64_t ldc, int64_t mr, int64_t j0, int64_t nc, Tile<V, MR, NV>& acc,
                       const Epilogue<V>& e, int64_t i0) {
    using R = typename V::R;
    R bias[NV];
    if (e.bias) load_row<V, NV>(e.bias + j0, nc, bias);
    for (int i = 0; i < MR; ++i) {
        if (i >= mr) break;
        R* row = acc.r[i];
        if (e.bias)
            for (int v = 0; v < NV; ++v) row[v] = V::add(row[v], bias[v]);
        if (e.relu)
            for (int v = 0; v < NV; ++v) row[v] = V::relu(row[v]);
        if (e.mask) {
            // j0 is a multiple of the full panel width, itself a multiple of 8: the tile owns whole
            // bytes of the mask (a narrower last tile too), so no two threads write one byte
            uint8_t* mrow = e.mask + (i0 + i) * e.mask_ld + j0 / 8;
            const int64_t nbytes = (nc + 7) / 8;
            for (int v = 0; v < NV; ++v) {
                const int64_t c0 = int64_t(v) * V::W;
                if (c0 >= nc) break;
                uint64_t bits = V::gt0_bits(row[v]);
                if (c0 + V::W > nc) bits &= (uint64_t(1) << (nc - c0)) - 1;  // padding bits are 0
                if (V::W >= 8) {
                    for (int b = 0; b < V::W / 8 && c0 / 8 + b < nbytes; ++b) mrow[c0 / 8 + b] = uint8_t(bits >> (8 * b));
                } else {  // narrower than a byte: gather the lanes of one byte over several vectors
                    uint8_t& byte = mrow[c0 / 8];
                    const int shift = int(c0 % 8);
                    if (shift == 0) byte = 0;
                    byte = uint8_t(byte | (bits << shift));
                }
            }
        }
        store_row<V, NV>(C + (i0 + i) * ldc + j0, nc, row);
    }
}

// One KC-block of the reduction, p0 <= p < p0 + kc, for one column panel of C = A @ B:
// columns [j0, j0 + nc), nc <= NV*W, all M rows in tiles of MR. A(i, p) = A[i * rsa + p * csa];
// Bp: the block's kc rows of the panel (NV*W readable elements each), ld apart. The tiles
// start from zero (first block) or from C (the partial sums of the earlier blocks), and get
// the epilogue after the last block.
template <class V, int MR, int NV>
static void gemm_block(int64_t M, int64_t p0, int64_t kc, bool last, const typename V::T* A, int64_t rsa,
                       int64_t csa, const typename V::T* Bp, int64_t ld, typename V::T* C, int64_t ldc,
                       const Epilogue<V>& e, int64_t j0, int64_t nc) {
    using T = typename V::T;
    const Epilogue<V> plain{};
    for (int64_t i0 = 0; i0 < M; i0 += MR) {
        const int64_t mr = imin(MR, M - i0);
        Tile<V, MR, NV> acc;
        for (int i = 0; i < MR; ++i) {
            if (p0 > 0 && i < mr) load_row<V, NV>(C + (i0 + i) * ldc + j0, nc, acc.r[i]);
            else for (int v = 0; v < NV; ++v) acc.r[i][v] = V::zero();
        }
        if (mr == MR) {
            micro_kernel<V, MR, NV>(kc, A + i0 * rsa + p0 * csa, rsa, csa, Bp, ld, acc);
        } else {  // the last rows: copied into MR zero-padded rows (the padding is never stored)
            alignas(64) T a[MR * KC];
            for (int i = 0; i < MR; ++i)
                for (int64_t p = 0; p < kc; ++p)
                    a[i * KC + p] = i < mr ? A[(i0 + i) * rsa + (p0 + p) * csa] : T(0);
            micro_kernel<V, MR, NV>(kc, a, KC, 1, Bp, ld, acc);
        }
        store_tile<V, MR, NV>(C, ldc, mr, j0, nc, acc, last ? e : plain, i0);
    }
}

// The last, narrower panel runs on a tile of just enough vectors (NV down to 1): a 10-wide
// head computes 16 columns, not NV*W.
template <class V, int MR, int NV>
static void gemm_tail(int64_t nv, int64_t M, int64_t p0, int64_t kc, bool last, const typename V::T* A,
                      int64_t rsa, int64_t csa, const typename V::T* Bp, int64_t ld, typename V::T* C, int64_t ldc,
                      const Epilogue<V>& e, int64_t j0, int64_t nc) {
    if constexpr (NV > 1) {
        if (nv < NV) return gemm_tail<V, MR, NV - 1>(nv, M, p0, kc, last, A, rsa, csa, Bp, ld, C, ldc, e, j0, nc);
    }
    gemm_block<V, MR, NV>(M, p0, kc, last, A, rsa, csa, Bp, ld, C, ldc, e, j0, nc);
}

// Column panels [jp0, jp1) of C = A @ B (NV*W columns each; the last may be narrower). The
// reduction is the outer loop, in blocks of KC rows of B. B is read in place when its rows
// start on cache lines and it is at most two panels wide; otherwise each block is first
// packed into `work` (KC x NV*W per panel, 64-byte aligned, the last panel zero padded), read
// row after row: a vector load that straddles two cache lines costs two (it halved this
// kernel's speed on NumPy's 16-byte-aligned arrays), and a panel of a wide B read alone is
// KC short rows a page apart, which no prefetcher follows. C's partial sums wait in C.
template <class V, int MR, int NV>
static void gemm_panels(int64_t M, int64_t N, int64_t K, const typename V::T* A, int64_t rsa, int64_t csa,
                        const typename V::T* B, int64_t ldb, typename V::T* C, int64_t ldc, const Epilogue<V>& e,
                        int64_t jp0, int64_t jp1, typename V::T* work) {
    using T = typename V::T;
    constexpr int64_t NR = int64_t(NV) * V::W;
    // (a few rows reuse each element of B too few times to pay for copying it)
    const bool pack = M > 2 * MR && ((reinterpret_cast<uintptr_t>(B) % 64) != 0 ||
                                     (ldb * int64_t(sizeof(T))) % 64 != 0 || jp1 - jp0 > 2);
    const int64_t c1 = imin(N, jp1 * NR);                   // the end of these panels' columns
    for (int64_t p0 = 0; p0 < K || p0 == 0; p0 += KC) {
        const int64_t kc = imin(KC, K - p0);
        const bool last = p0 + KC >= K;
        if (pack || c1 < jp1 * NR) {                           // (only the narrow last panel, when not pack)
            for (int64_t p = 0; p < kc; ++p) {
                const T* src = B + (p0 + p) * ldb;
                for (int64_t jp = pack ? jp0 : jp1 - 1; jp < jp1; ++jp) {
                    const int64_t nc = imin(NR, N - jp * NR);
                    T* dst = work + (jp - jp0) * KC * NR + p * NR;
                    for (int64_t c = 0; c < nc; ++c) dst[c] = src[jp * NR + c];
                    for (int64_t c = nc; c < NR; ++c) dst[c] = T(0);
                }
            }
        }
        for (int64_t jp = jp0; jp < jp1; ++jp) {
            const int64_t j0 = jp * NR, nc = imin(NR, N - j0);
            const bool packed = pack || nc < NR;
            const T* Bp = packed ? work + (jp - jp0) * KC * NR : B + p0 * ldb + j0;
            const int64_t ld = packed ? NR : ldb;
            if (nc == NR) gemm_block<V, MR, NV>(M, p0, kc, last, A, rsa, csa, Bp, ld, C, ldc, e, j0, nc);
            else gemm_tail<V, MR, NV>((nc + V::W - 1) / V::W, M, p0, kc, last, A, rsa, csa, Bp, ld, C, ldc, e, j0, nc);
        }
    }
}

// gm[m, 0:N] = relu ? grad[m] * mask bits of row m : grad[m] (rows ldg apart, ldg >= N), and
// colsum[n] += gm[m, n] in double, m ascending (the bias gradient, in the same pass).
template <class V>
static void pack_grad(const typename V::T* grad, const uint8_t* mask, bool relu, int64_t M, int64_t N,
                      typename V::T* gm, int64_t ldg, double* colsum) {
    using R = typename V::R;
    const int64_t mb = (N + 7) / 8;
    for (int64_t m = 0; m < M; ++m) {
        const typename V::T* g = grad + m * N;
        typename V::T* o = gm + m * ldg;
        for (int64_t n0 = 0; n0 < N; n0 += V::W) {
            const int64_t nc = imin(V::W, N - n0);
            R v;
            load_row<V, 1>(g + n0, nc, &v);
            if (relu) {
                const uint8_t* mrow = mask + m * mb;
                const int sh = int(n0 % 8);
                uint64_t bits = 0;
                for (int64_t b = 0; 8 * b < V::W + sh && n0 / 8 + b < mb; ++b)
                    bits |= uint64_t(mrow[n0 / 8 + b]) << (8 * b);
                bits >>= sh;
                v = V::mul01(v, bits);
            }
            store_row<V, 1>(o + n0, nc, &v);
        }
        if (colsum)
            for (int64_t n = 0; n < N; ++n) colsum[n] += double(o[n]);
    }
}

// dst[c, r] = src[r, c] for an R x Cc matrix (rows lds apart; dst rows ldd apart), in W x W
// blocks transposed in registers (V::transpose_block), the edges one element at a time.
template <class V>
static void transpose(const typename V::T* src, int64_t R, int64_t Cc, int64_t lds, typename V::T* dst, int64_t ldd) {
    const int64_t rv = lds < (int64_t(1) << 31) / V::W ? R / V::W * V::W : 0;  // AVX2's gathers: int32 offsets
    const int64_t cv = Cc / V::W * V::W;
    for (int64_t r = 0; r < rv; r += V::W) {
        for (int64_t c = 0; c < cv; c += V::W) V::transpose_block(src + r * lds + c, lds, dst + c * ldd + r, ldd);
        for (int64_t c = cv; c < Cc; ++c)
            for (int64_t i = r; i < r + V::W; ++i) dst[c * ldd + i] = src[i * lds + c];
    }
    for (int64_t r = rv; r < R; ++r)
        for (int64_t c = 0; c < Cc; ++c) dst[c * ldd + r] = src[r * lds + c];
}

// The entry points gemm.cpp calls (the same for every instruction set): C = A @ B with the
// epilogue, on column panels [jp0, jp1).
template <class V, int MR, int NV>
static void gemm_nn(int64_t M, int64_t N, int64_t K, const typename V::T* A, int64_t rsa, int64_t csa,
                    const typename V::T* B, int64_t ldb, typename V::T* C, int64_t ldc, const typename V::T* bias,
                    bool relu, uint8_t* mask, int64_t mask_ld, int64_t jp0, int64_t jp1, typename V::T* work) {
    Epilogue<V> e;
    e.bias = bias;
    e.relu = relu;
    e.mask = mask;
    e.mask_ld = mask_ld;
    gemm_panels<V, MR, NV>(M, N, K, A, rsa, csa, B, ldb, C, ldc, e, jp0, jp1, work);
}

// n iterations of 12 independent FMA chains in registers: the FMA peak of one core.
// Returns the floating-point operations done (2 per lane per FMA).
template <class V>
static uint64_t fma_peak(int64_t n) {
    using R = typename V::R;
    R acc[12], x = V::set1(typename V::T(0.999999)), y = V::set1(typename V::T(1e-7));
    for (int j = 0; j < 12; ++j) acc[j] = V::set1(typename V::T(j));
    for (int64_t i = 0; i < n; ++i)
        for (int j = 0; j < 12; ++j) acc[j] = V::fma(acc[j], x, y);
    R s = acc[0];
    for (int j = 1; j < 12; ++j) s = V::add(s, acc[j]);
    alignas(64) typename V::T out[V::W];
    V::store(out, s);
    volatile typename V::T sink = out[0];
    (void)sink;
    return uint64_t(n) * 12 * V::W * 2;
}
