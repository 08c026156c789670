// Twin of reference.py's softmax_xent (and of csrc/softmax_xent.cpp): per row i,
//   m = max(z), s = sum(exp(z - m)), loss_i = log(s) + m - z[t],
//   grad = exp(z - m) / s - onehot(t), times scale (1/n for "mean", 1 for "sum").
// Launched from tinytl/kernels/cuda.py; no header, only CUDA built-ins (NVRTC and nvcc).
//
// One group of blockDim.x threads per row (cuda.py picks it from C alone):
// - C <= 1024: one warp per row (blockDim = (32, 8): 8 rows per block), reductions by
//   warp shuffles only;
// - larger C: one block per row (blockDim = (256 or 1024, 1)), warp shuffles, then the
//   per-warp results through shared memory.
// Each row is read three times (max, sum, write) and exp is computed again in the last
// pass instead of being stored and read back. The row losses go to a buffer of n doubles
// that softmax_xent_loss adds in a fixed order: two launches, and the loss and the
// gradient are deterministic (the same bits on every run).
//
// `out` may be `logits` itself: z[t] is read first, a barrier separates every read of
// another thread's element from the writes, and each thread then overwrites only the
// elements it reads.

// ------------------------------------------------- softmax cross-entropy ----

__device__ inline float exp_(float x) { return expf(x); }
__device__ inline double exp_(double x) { return exp(x); }

template <typename T> __device__ inline T neg_inf();
template <> __device__ inline float neg_inf<float>() { return -__int_as_float(0x7f800000); }
template <> __device__ inline double neg_inf<double>() { return -__longlong_as_double(0x7ff0000000000000LL); }

// max that lets NaN win from either side (as np.max does), so every lane agrees on it.
struct MaxOp {
    template <typename T> __device__ T operator()(T a, T b) const { return (a > b || a != a) ? a : b; }
};
struct SumOp {
    template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};

// Reduce v over the blockDim.x threads that share a row; every one of them gets the
// result. The xor butterfly gives all lanes the same bits (both ops are commutative);
// across warps, every thread adds the per-warp results in warp order. `red` is a
// __shared__ array of 32; with more than one warp per row, blockDim.y must be 1.
template <typename T, typename Op>
__device__ T row_reduce(T v, Op op, T* red) {
    for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
    if (blockDim.x == 32) return v;
    const int warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    if ((threadIdx.x & 31) == 0) red[warp] = v;
    __syncthreads();
    v = red[0];
    for (int w = 1; w < warps; ++w) v = op(v, red[w]);
    __syncthreads();  // red is reused by the next reduction
    return v;
}

template <typename T>
__device__ void softmax_xent(const T* logits, const long long* target, T* out, double* row_loss, long long n,
                             long long c, T scale) {
    __shared__ T red[32];
    const long long row = (long long)blockIdx.x * blockDim.y + threadIdx.y;
    if (row >= n) return;  // only with blockDim.y > 1, i.e. a warp per row: no block barrier follows
    const T* z = logits + row * c;
    T* o = out + row * c;
    const long long t = target[row];
    // cuda.py checks the labels before launch; a bad one still reads nothing out of bounds
    const bool valid = 0 <= t && t < c;
    const T zt = valid ? z[t] : T(0) * neg_inf<T>();  // 0 * inf = NaN

    T m = neg_inf<T>();
    for (long long j = threadIdx.x; j < c; j += blockDim.x) m = MaxOp()(m, z[j]);
    m = row_reduce(m, MaxOp(), red);

    T s = 0;
    for (long long j = threadIdx.x; j < c; j += blockDim.x) s += exp_(z[j] - m);
    s = row_reduce(s, SumOp(), red);

    if (blockDim.x == 32) __syncwarp();  // every read of z[t] is done before out is written
    else __syncthreads();

    const T k = scale / s;
    for (long long j = threadIdx.x; j < c; j += blockDim.x) {
        T g = exp_(z[j] - m) * k;
        if (j == t) g -= scale;
        o[j] = g;
    }
    if (threadIdx.x == 0) row_loss[row] = valid ? log(double(s)) + double(m) - double(zt) : double(zt);
}

extern "C" __global__ void softmax_xent_f32(const float* logits, const long long* target, float* out,
                                            double* row_loss, long long n, long long c, float scale) {
    softmax_xent<float>(logits, target, out, row_loss, n, c, scale);
}
extern "C" __global__ void softmax_xent_f64(const double* logits, const long long* target, double* out,
                                            double* row_loss, long long n, long long c, double scale) {
    softmax_xent<double>(logits, target, out, row_loss, n, c, scale);
}

// loss = sum(row_loss) (/ n when mean), in double, cast to T once at the end. One block
// (blockDim = (power of two in [32, 1024], 1), chosen from n alone): thread i adds rows
// i, i + blockDim.x, ... in order, then row_reduce adds the threads in a fixed order.
template <typename T>
__device__ void softmax_xent_loss(const double* row_loss, long long n, int mean, T* loss) {
    __shared__ double red[32];
    double s = 0;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) s += row_loss[i];
    s = row_reduce(s, SumOp(), red);
    if (threadIdx.x == 0) *loss = T(mean ? s / double(n) : s);
}

extern "C" __global__ void softmax_xent_loss_f32(const double* row_loss, long long n, int mean, float* loss) {
    softmax_xent_loss<float>(row_loss, n, mean, loss);
}
extern "C" __global__ void softmax_xent_loss_f64(const double* row_loss, long long n, int mean, double* loss) {
    softmax_xent_loss<double>(row_loss, n, mean, loss);
}

// The host's label check, one pass: *first_bad = the smallest i with target[i] outside
// [0, c), left as it was (cuda.py sets it to n) when every label is a class index.
// cuda.py reads it back before softmax_xent is launched, to raise with the same message
// as the CPU kernels. Grid-stride loop; atomicMin on 64-bit integers needs sm_35+.
extern "C" __global__ void softmax_xent_check_target(const long long* target, long long n, long long c,
                                                     long long* first_bad) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        if (target[i] < 0 || target[i] >= c) atomicMin(first_bad, i);
}
