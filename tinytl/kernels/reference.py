"""Reference kernels: pure NumPy, written to be read. They are the specification.

Each function here has twins with the same name and signature, in the same
order, in ``tinytl/kernels/cpu.py`` (C++ through ``tinytl._C``, source in
``csrc/``) and ``tinytl/kernels/cuda.py`` (CUDA C in ``tinytl/kernels/cuda/``).
The tests check every twin against these functions.

Conventions shared by all twins:
- float32 and float64 are supported; all floating arguments of one call share a dtype.
- ``out=`` lets the caller provide the output buffer (it may be the input itself,
  for an in-place update); without it a new array is returned.
- Labels are int64 class indices in [0, C).

Read next: ``csrc/linear.cpp`` (the same maths, in one fused pass).
"""
import numpy as np


# ---------------------------------------------------------------- linear ----
# The ReLU mask: what a ReLU's backward needs, one bit per element instead of the
# output itself. Layout (the same in every twin): for an (N, M) output, a C-contiguous
# uint8 array of shape (N, ceil(M / 8)); bit k (least significant first) of byte
# [i, b] is 1 exactly where out[i, 8 * b + k] > 0; the padding bits of a row's last
# byte are 0. It is np.packbits(out > 0, axis=1, bitorder="little"), and each row owns
# its bytes, so rows can be written in parallel. (kernels.relu_mask_shape(n, m) gives its shape.)


def linear_forward_epilogue(y, bias, relu, out=None, mask=None):
    """out = max(y + bias, 0) if relu else y + bias; with ``mask``, also writes mask = packbits(out > 0).

    ``y`` is the GEMM output x @ W.T of shape (N, M); ``bias`` has shape (M,) or is None.
    ``mask`` (only with relu) is a uint8 array of shape (N, ceil(M / 8)), written in
    the same pass as the ReLU (see the layout above); it is all the backward needs.
    """
    if mask is not None:
        if not relu:
            raise ValueError("linear_forward_epilogue: mask is written only with relu=True")
        want = (y.shape[0], (y.shape[1] + 7) // 8)
        if mask.dtype != np.uint8 or mask.shape != want:
            raise ValueError(f"linear_forward_epilogue: mask must be a uint8 array of shape {want}, "
                             f"got {mask.dtype} {mask.shape}")
    z = y if bias is None else y + bias
    if relu:
        z = np.maximum(z, 0)
    if mask is not None:
        mask[...] = np.packbits(z > 0, axis=1, bitorder="little")
    if out is None:
        return z if z is not y else y.copy()
    out[...] = z
    return out


def linear_backward_epilogue(grad, mask, relu, bias_grad, out=None):
    """g = grad * unpack(mask) if relu else grad;  returns (g, g.sum(0) if bias_grad else None).

    ``grad`` is dL/d(output) of shape (N, M); ``mask`` is the forward's packed ReLU mask
    (bit [i, j] = out[i, j] > 0, the layout above), or None when relu is False. The
    product is grad * (out > 0), exactly as if the output itself had been kept.
    """
    if relu:
        want = (grad.shape[0], (grad.shape[1] + 7) // 8)
        if mask is None or mask.dtype != np.uint8 or mask.shape != want:
            raise ValueError(f"linear_backward_epilogue: mask must be a uint8 array of shape {want}")
        keep = np.unpackbits(mask, axis=1, count=grad.shape[1], bitorder="little").view(bool)
        g = grad * keep
    else:
        g = grad
    if out is None:
        g = g if g is not grad else grad.copy()
    else:
        out[...] = g
        g = out
    return g, (g.sum(axis=0) if bias_grad else None)


def linear_forward(x, weight, bias, relu, out=None, mask=None):
    """The forward of a Linear layer (then a ReLU) in one call: the GEMM and its epilogue.

    out = max(x @ weight.T + bias, 0) if relu else x @ weight.T + bias, with ``mask``
    written as in ``linear_forward_epilogue``. ``x`` is (N, in_features), ``weight``
    (out_features, in_features) as PyTorch lays it out (tinytl.nn.Linear stores it in
    Fortran order, so that ``weight.T`` is a C-contiguous (in, out) matrix), ``bias``
    (out_features,) or None. The C++ twin computes the GEMM on its own small-batch kernel
    (csrc/gemm.cpp) with the epilogue applied while the output tile is in registers.
    """
    y = x @ weight.T
    return linear_forward_epilogue(y, bias, relu, y if out is None else out, mask)


def linear_backward(grad, mask, relu, x, weight, bias_grad, input_grad):
    """The backward of ``linear_forward``: returns (gx, gW, gb), each None when not asked for.

    With g = grad * unpack(mask) if relu else grad (``linear_backward_epilogue``):
    gx = g @ weight when ``input_grad``; gW = g.T @ x when ``x`` is given (the forward's
    input), laid out in memory as ``weight`` is (Fortran order for Linear's weight: it is
    computed as (x.T @ g).T, a row-major GEMM); gb = g.sum(0) when ``bias_grad``.
    """
    g, gb = linear_backward_epilogue(grad, mask, relu, bias_grad)
    return (*_linear_products(g, x, weight, input_grad), gb)


def _linear_products(g, x, weight, input_grad):
    """The two GEMMs of ``linear_backward`` on the array library's BLAS (NumPy or CuPy), g already
    masked: (g @ weight if input_grad, else None; dL/dW in weight's layout if x is given, else None).
    Also the BLAS path of the CPU and GPU twins above their fused sizes."""
    gx = g @ weight if input_grad else None
    gW = None
    if x is not None:
        gW = (x.T @ g).T if weight.T.flags.c_contiguous else g.T @ x
    return gx, gW


# ------------------------------------------------- softmax cross-entropy ----

def softmax_xent(logits, target, reduction="mean", out=None):
    """Softmax cross-entropy and its gradient in one pass.

    loss_i = logsumexp(z_i) - z_i[t_i], where logsumexp(z) = m + log(sum(exp(z - m)))
    with m = max(z) (subtracting the max keeps exp() from overflowing);
    dloss/dz_i = softmax(z_i) - onehot(t_i), divided by N when reduction is "mean".
    Returns (loss as a 0-d array of the logits' dtype, grad of shape (N, C)).
    """
    n = logits.shape[0]
    if n == 0:
        raise ValueError("softmax_xent: logits have an empty batch (N = 0)")
    m = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - m)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss_i = (np.log(s[:, 0]) + m[:, 0]) - logits[rows, target]
    grad = e / s
    grad[rows, target] -= 1
    if reduction == "mean":
        grad /= n
        loss = loss_i.mean()
    else:
        loss = loss_i.sum()
    if out is not None:
        out[...] = grad
        grad = out
    return np.asarray(loss, dtype=logits.dtype), grad


# ------------------------------------------------------------------- sgd ----

def sgd_step(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first_step, stream=False):
    """torch.optim.SGD's update, in place on ``param`` (and ``buf``):

    d = grad + weight_decay * param
    buf = d                                       on the first step (first_step=True)
    buf = momentum * buf + (1 - dampening) * d    afterwards
    d = d + momentum * buf if nesterov else buf   (only when momentum != 0)
    param -= lr * d
    ``buf`` is None when momentum == 0. ``stream`` is a hint for the compiled
    kernel (how it stores ``param``, not what); it changes nothing here.
    """
    d = grad + weight_decay * param if weight_decay != 0 else grad
    if momentum != 0:
        if first_step:
            buf[...] = d
        else:
            buf *= momentum
            buf += (1 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    param -= lr * d
    return param


# ------------------------------------------------------------------ adam ----

def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
              amsgrad, maximize, decoupled_weight_decay):
    """torch.optim.Adam's (and AdamW's) update, in place on ``param`` and the moments.

    ``step`` is the number of this step (1 on the first); with t = step:
    g = -grad if maximize else grad
    param *= 1 - lr * weight_decay             (AdamW: decoupled_weight_decay=True)
    g = g + weight_decay * param               (Adam: L2 added to the gradient)
    m = m + (1 - beta1) * (g - m)              (exp_avg; torch's lerp)
    v = beta2 * v + (1 - beta2) * g * g        (exp_avg_sq)
    vmax = max(vmax, v); v_hat = vmax          (amsgrad; else v_hat = v)
    param += -(lr / (1 - beta1**t)) * m / (sqrt(v_hat) / sqrt(1 - beta2**t) + eps)
    The bias corrections are computed in double from t, then every array operation runs
    in the parameter's dtype, in torch's order. ``max_exp_avg_sq`` is None unless amsgrad.
    """
    g = -grad if maximize else grad
    if weight_decay != 0:
        if decoupled_weight_decay:
            param *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * param
    exp_avg += (1 - beta1) * (g - exp_avg)
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * g * g
    if amsgrad:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
    v = max_exp_avg_sq if amsgrad else exp_avg_sq
    step_size = lr / (1 - beta1 ** step)
    denom = np.sqrt(v) / (1 - beta2 ** step) ** 0.5 + eps
    param += -step_size * exp_avg / denom
    return param
