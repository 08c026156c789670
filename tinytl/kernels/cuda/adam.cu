// Twin of reference.py's adam_step (and of csrc/adam.cpp): torch.optim.Adam's / AdamW's
// update, in place, one pass over the elements (t = step):
//   g = -grad (maximize) | grad                   (sign = -1 | 1: exact)
//   param *= 1 - lr * weight_decay                (AdamW) | g += weight_decay * param (Adam)
//   m += (1 - beta1) * (g - m)
//   v = v * beta2 + (1 - beta2) * g * g
//   vmax = max(vmax, v)                           (amsgrad: v_hat = vmax, else v)
//   param += (-lr / (1 - beta1^t)) * m / (sqrt(v_hat) / sqrt(1 - beta2^t) + eps)
// Launched from tinytl/kernels/cuda.py, which computes the scalars in double from t and
// casts them to T, as NumPy does; no header, only CUDA built-ins (NVRTC and nvcc).
//
// The products go through __fmul_rn / __dmul_rn and the sums through __fadd_rn /
// __dadd_rn, which the compiler never fuses into an FMA; sqrt and `/` are IEEE-rounded
// (NVRTC's defaults, -prec-sqrt and -prec-div): every operation rounds as NumPy's does, so
// the update matches reference.py bit for bit. No array may overlap another (cuda.py checks).

// ------------------------------------------------------------------ adam ----

__device__ inline float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ inline double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ inline float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ inline double add_rn(double a, double b) { return __dadd_rn(a, b); }

// wd_mode: 0 no weight decay, 1 L2 (Adam), 2 decoupled (AdamW); the same for every
// element of a launch, so the branches do not diverge. max_exp_avg_sq is null unless amsgrad.
template <typename T>
__device__ void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, T sign, T decay,
                          T weight_decay, T b1c, T beta2, T b2c, T neg_step_size, T bc2_sqrt, T eps, int wd_mode,
                          int amsgrad, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        T g = mul_rn(sign, grad[i]);
        T p = param[i];
        if (wd_mode == 2) p = mul_rn(p, decay);
        if (wd_mode == 1) g = add_rn(g, mul_rn(weight_decay, p));
        const T m = add_rn(exp_avg[i], mul_rn(b1c, g - exp_avg[i]));
        const T v = add_rn(mul_rn(exp_avg_sq[i], beta2), mul_rn(mul_rn(b2c, g), g));
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        T vh = v;
        if (amsgrad) {
            const T a = max_exp_avg_sq[i];
            vh = (a >= v || a != a) ? a : v;   // np.maximum: a NaN on either side wins
            max_exp_avg_sq[i] = vh;
        }
        const T denom = add_rn(sqrt(vh) / bc2_sqrt, eps);
        param[i] = add_rn(p, mul_rn(neg_step_size, m) / denom);
    }
}

extern "C" __global__ void adam_step_f32(float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
                                         float* max_exp_avg_sq, float sign, float decay, float weight_decay,
                                         float b1c, float beta2, float b2c, float neg_step_size, float bc2_sqrt,
                                         float eps, int wd_mode, int amsgrad, long long n) {
    adam_step<float>(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, sign, decay, weight_decay, b1c, beta2, b2c,
                     neg_step_size, bc2_sqrt, eps, wd_mode, amsgrad, n);
}
extern "C" __global__ void adam_step_f64(double* param, const double* grad, double* exp_avg, double* exp_avg_sq,
                                         double* max_exp_avg_sq, double sign, double decay, double weight_decay,
                                         double b1c, double beta2, double b2c, double neg_step_size,
                                         double bc2_sqrt, double eps, int wd_mode, int amsgrad, long long n) {
    adam_step<double>(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, sign, decay, weight_decay, b1c, beta2, b2c,
                      neg_step_size, bc2_sqrt, eps, wd_mode, amsgrad, n);
}
