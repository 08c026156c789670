// Twin of reference.py's sgd_step (and of csrc/sgd.cpp): torch.optim.SGD's update, in
// place, one pass over the elements:
//   d = grad + weight_decay * param                (when weight_decay != 0)
//   buf = d (first step) | momentum * buf + (1 - dampening) * d
//   d = d + momentum * buf (nesterov) | buf        (when momentum != 0)
//   param -= lr * d
// Launched from tinytl/kernels/cuda.py; no header, only CUDA built-ins (NVRTC and nvcc).
//
// The products go through __fmul_rn / __dmul_rn, which the compiler never fuses with the
// following addition into an FMA: every operation rounds as NumPy's does, so the update
// matches reference.py bit for bit (the scalars arrive already cast to T, as NumPy casts
// them). `grad` may be `param` itself (element i is read before it is written).
//
// sgd_step_many (no twin in reference.py yet: it is a loop of sgd_step over a list) updates
// a whole list of parameters in ONE launch: the pointers travel in device arrays and the
// work is cut into chunks of chunk_size elements, each (tensor, start) pair one entry of a
// table that cuda.py builds; block b takes chunks b, b + gridDim.x, ...

// ------------------------------------------------------------------- sgd ----

__device__ inline float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ inline double mul_rn(double a, double b) { return __dmul_rn(a, b); }

// The flags are the same for every element of a launch: the branches do not diverge.
template <typename T>
__device__ inline void sgd_update(T* p, const T* g, T* b, long long i, T lr, T momentum, T damp1, T weight_decay,
                                  int has_weight_decay, int has_momentum, int nesterov, int first_step) {
    T d = g[i];
    if (has_weight_decay) d = d + mul_rn(weight_decay, p[i]);
    if (has_momentum) {
        const T bi = first_step ? d : mul_rn(b[i], momentum) + mul_rn(damp1, d);
        b[i] = bi;
        d = nesterov ? d + mul_rn(momentum, bi) : bi;
    }
    p[i] = p[i] - mul_rn(lr, d);
}

// One tensor of size n, grid-stride loop. buf is null when momentum == 0.
template <typename T>
__device__ void sgd_step(T* param, const T* grad, T* buf, T lr, T momentum, T damp1, T weight_decay,
                         int has_weight_decay, int has_momentum, int nesterov, int first_step, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        sgd_update(param, grad, buf, i, lr, momentum, damp1, weight_decay, has_weight_decay, has_momentum, nesterov,
                   first_step);
}

extern "C" __global__ void sgd_step_f32(float* param, const float* grad, float* buf, float lr, float momentum,
                                        float damp1, float weight_decay, int has_weight_decay, int has_momentum,
                                        int nesterov, int first_step, long long n) {
    sgd_step<float>(param, grad, buf, lr, momentum, damp1, weight_decay, has_weight_decay, has_momentum, nesterov,
                    first_step, n);
}
extern "C" __global__ void sgd_step_f64(double* param, const double* grad, double* buf, double lr, double momentum,
                                        double damp1, double weight_decay, int has_weight_decay, int has_momentum,
                                        int nesterov, int first_step, long long n) {
    sgd_step<double>(param, grad, buf, lr, momentum, damp1, weight_decay, has_weight_decay, has_momentum, nesterov,
                     first_step, n);
}

// Many tensors, one launch. params[k], grads[k], bufs[k] point to tensor k (of sizes[k]
// elements); bufs is read only when has_momentum. Chunk c covers elements
// [chunk_start[c], min(chunk_start[c] + chunk_size, sizes[k])) of tensor k = chunk_tensor[c].
template <typename T>
__device__ void sgd_step_many(T* const* params, const T* const* grads, T* const* bufs, const long long* sizes,
                              const long long* chunk_tensor, const long long* chunk_start, long long chunks,
                              long long chunk_size, T lr, T momentum, T damp1, T weight_decay, int has_weight_decay,
                              int has_momentum, int nesterov, int first_step) {
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {
        const long long k = chunk_tensor[c];
        const long long end = chunk_start[c] + chunk_size < sizes[k] ? chunk_start[c] + chunk_size : sizes[k];
        T* p = params[k];
        const T* g = grads[k];
        T* b = has_momentum ? bufs[k] : (T*)0;
        for (long long i = chunk_start[c] + threadIdx.x; i < end; i += blockDim.x)
            sgd_update(p, g, b, i, lr, momentum, damp1, weight_decay, has_weight_decay, has_momentum, nesterov,
                       first_step);
    }
}

extern "C" __global__ void sgd_step_many_f32(float* const* params, const float* const* grads, float* const* bufs,
                                             const long long* sizes, const long long* chunk_tensor,
                                             const long long* chunk_start, long long chunks, long long chunk_size,
                                             float lr, float momentum, float damp1, float weight_decay,
                                             int has_weight_decay, int has_momentum, int nesterov, int first_step) {
    sgd_step_many<float>(params, grads, bufs, sizes, chunk_tensor, chunk_start, chunks, chunk_size, lr, momentum,
                         damp1, weight_decay, has_weight_decay, has_momentum, nesterov, first_step);
}
extern "C" __global__ void sgd_step_many_f64(double* const* params, const double* const* grads,
                                             double* const* bufs, const long long* sizes,
                                             const long long* chunk_tensor, const long long* chunk_start,
                                             long long chunks, long long chunk_size, double lr, double momentum,
                                             double damp1, double weight_decay, int has_weight_decay,
                                             int has_momentum, int nesterov, int first_step) {
    sgd_step_many<double>(params, grads, bufs, sizes, chunk_tensor, chunk_start, chunks, chunk_size, lr, momentum,
                          damp1, weight_decay, has_weight_decay, has_momentum, nesterov, first_step);
}
