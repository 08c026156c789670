// tinytl._C: the Python face of the C++ kernels. The only file that includes pybind11.
//
// Every wrapper checks its arguments completely before any memory is written:
// dtype (float32/float64, shared by all floating arguments; labels int64), layout
// (C-contiguous, aligned, writeable for outputs), shapes, overlaps and label range.
// Nothing is converted: a wrong array is a TypeError/ValueError naming the argument,
// never a silent copy (a copy of an output would lose the write).
// Twins: tinytl/kernels/reference.py (the specification), tinytl/kernels/cpu.py (callers).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "adam.h"
#include "gemm.h"
#include "linear.h"
#include "parallel.h"
#include "sgd.h"
#include "softmax_xent.h"

namespace py = pybind11;

namespace {

// Above this many elements the GIL is released while the kernel runs.
constexpr py::ssize_t kReleaseGil = py::ssize_t(1) << 14;

std::string shape_str(const std::vector<py::ssize_t>& s) {
    std::string r = "(";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + (s.size() == 1 ? ",)" : ")");
}
std::vector<py::ssize_t> shape_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }
std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

// The dtype every floating argument of the call must share: float32 or float64.
bool is_f32(const char* fn, const py::array& a, const char* name) {
    if (a.dtype().equal(py::dtype::of<float>())) return true;
    if (a.dtype().equal(py::dtype::of<double>())) return false;
    throw py::type_error(std::string(fn) + ": " + name + " must be a float32 or float64 array, got dtype " +
                         dtype_str(a));
}

void check_dtype(const char* fn, const py::array& a, const char* name, bool f32, const char* ref) {
    const py::dtype want = f32 ? py::dtype::of<float>() : py::dtype::of<double>();
    if (!a.dtype().equal(want))
        throw py::type_error(std::string(fn) + ": " + name + " must be " + (f32 ? "float32" : "float64") +
                             " (the dtype of " + ref + "), got dtype " + dtype_str(a));
}

void check_layout(const char* fn, const py::array& a, const char* name, bool writeable) {
    const int flags = a.flags();
    if (!(flags & py::array::c_style))
        throw py::value_error(std::string(fn) + ": " + name + " must be C-contiguous");
    if (!(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
        throw py::value_error(std::string(fn) + ": " + name + " must be aligned");
    if (writeable && !a.writeable())
        throw py::value_error(std::string(fn) + ": " + name + " is read-only; it is written in place");
}

void check_shape(const char* fn, const py::array& a, const char* name, const std::vector<py::ssize_t>& want) {
    const auto got = shape_of(a);
    if (got != want)
        throw py::value_error(std::string(fn) + ": " + name + " must have shape " + shape_str(want) + ", got " +
                              shape_str(got));
}

// `out` (written) may be exactly `in` (same memory, read before written per element) or
// separate from it; a partial overlap would read values the kernel has already written.
void check_overlap(const char* fn, const py::array& out, const char* oname, const py::array& in, const char* iname,
                   bool allow_same) {
    const auto* o = static_cast<const char*>(out.data());
    const auto* i = static_cast<const char*>(in.data());
    const py::ssize_t on = out.nbytes(), in_n = in.nbytes();
    if (on == 0 || in_n == 0 || o + on <= i || i + in_n <= o) return;
    if (allow_same && o == i && on == in_n) return;
    throw py::value_error(std::string(fn) + ": " + oname + " overlaps " + iname +
                          (allow_same ? " partially; pass the same array or a separate one" : "; pass a separate array"));
}

// An optional array argument: None, or an ndarray (never converted).
std::optional<py::array> optional_array(const char* fn, const py::object& o, const char* name) {
    if (o.is_none()) return std::nullopt;
    if (!py::isinstance<py::array>(o))
        throw py::type_error(std::string(fn) + ": " + name + " must be a numpy.ndarray or None, got " +
                             py::str(py::type::of(o).attr("__name__")).cast<std::string>());
    return py::reinterpret_borrow<py::array>(o);
}

template <typename T> T* ptr(py::array& a) { return static_cast<T*>(a.mutable_data()); }
template <typename T> const T* cptr(const py::array& a) { return static_cast<const T*>(a.data()); }
template <typename T> const T* cptr(const std::optional<py::array>& a) { return a ? cptr<T>(*a) : nullptr; }

// ---------------------------------------------------------------- linear ----

// The packed ReLU mask argument (layout in linear.h): uint8, C-contiguous, (n, ceil(m / 8)).
void check_mask(const char* fn, const py::array& mask, py::ssize_t n, py::ssize_t m, bool writeable) {
    if (!mask.dtype().equal(py::dtype::of<uint8_t>()))
        throw py::type_error(std::string(fn) + ": mask must be a uint8 array (the packed ReLU mask), got dtype " +
                             dtype_str(mask));
    check_layout(fn, mask, "mask", writeable);
    check_shape(fn, mask, "mask", {n, (m + 7) / 8});
}

py::array linear_forward_epilogue(py::array y, py::object bias_obj, bool relu, py::array out, py::object mask_obj) {
    const char* fn = "linear_forward_epilogue";
    const bool f32 = is_f32(fn, y, "y");
    auto bias = optional_array(fn, bias_obj, "bias");
    auto mask = optional_array(fn, mask_obj, "mask");
    if (bias) check_dtype(fn, *bias, "bias", f32, "y");
    check_dtype(fn, out, "out", f32, "y");
    check_layout(fn, y, "y", false);
    if (bias) check_layout(fn, *bias, "bias", false);
    check_layout(fn, out, "out", true);
    if (y.ndim() != 2) throw py::value_error(std::string(fn) + ": y must have shape (N, M), got " + shape_str(shape_of(y)));
    const py::ssize_t n = y.shape(0), m = y.shape(1);
    if (bias) check_shape(fn, *bias, "bias", {m});
    check_shape(fn, out, "out", {n, m});
    check_overlap(fn, out, "out", y, "y", true);
    if (bias) check_overlap(fn, out, "out", *bias, "bias", false);
    if (mask) {
        if (!relu) throw py::value_error(std::string(fn) + ": mask is written only with relu=True");
        check_mask(fn, *mask, n, m, true);
        check_overlap(fn, *mask, "mask", y, "y", false);
        check_overlap(fn, *mask, "mask", out, "out", false);
        if (bias) check_overlap(fn, *mask, "mask", *bias, "bias", false);
    }

    uint8_t* mp = mask ? ptr<uint8_t>(*mask) : nullptr;
    std::optional<py::gil_scoped_release> nogil;
    if (n * m >= kReleaseGil) nogil.emplace();
    if (f32) tinytl::linear_forward_epilogue(cptr<float>(y), cptr<float>(bias), relu, ptr<float>(out), mp, n, m);
    else     tinytl::linear_forward_epilogue(cptr<double>(y), cptr<double>(bias), relu, ptr<double>(out), mp, n, m);
    return out;
}

py::tuple linear_backward_epilogue(py::array grad, py::object mask_obj, bool relu, bool bias_grad, py::array out) {
    const char* fn = "linear_backward_epilogue";
    const bool f32 = is_f32(fn, grad, "grad");
    auto mask = optional_array(fn, mask_obj, "mask");
    check_dtype(fn, out, "out", f32, "grad");
    check_layout(fn, grad, "grad", false);
    check_layout(fn, out, "out", true);
    if (grad.ndim() != 2)
        throw py::value_error(std::string(fn) + ": grad must have shape (N, M), got " + shape_str(shape_of(grad)));
    const py::ssize_t n = grad.shape(0), m = grad.shape(1);
    check_shape(fn, out, "out", {n, m});
    check_overlap(fn, out, "out", grad, "grad", true);
    if (relu) {
        if (!mask) throw py::value_error(std::string(fn) + ": mask is required when relu=True (the forward's packed ReLU mask)");
        check_mask(fn, *mask, n, m, false);
        check_overlap(fn, out, "out", *mask, "mask", false);
    }

    py::object bg = py::none();
    py::array bga;
    if (bias_grad) {
        bga = f32 ? py::array(py::array_t<float>(m)) : py::array(py::array_t<double>(m));
        bg = bga;
    }
    const uint8_t* mp = relu ? cptr<uint8_t>(*mask) : nullptr;
    std::optional<py::gil_scoped_release> nogil;
    if (n * m >= kReleaseGil) nogil.emplace();
    if (f32)
        tinytl::linear_backward_epilogue(cptr<float>(grad), mp, relu, bias_grad ? ptr<float>(bga) : nullptr,
                                         ptr<float>(out), n, m);
    else
        tinytl::linear_backward_epilogue(cptr<double>(grad), mp, relu, bias_grad ? ptr<double>(bga) : nullptr,
                                         ptr<double>(out), n, m);
    nogil.reset();
    return py::make_tuple(out, bg);
}

// The Linear weight argument of the fused GEMMs: (N, K), Fortran-ordered (its .T is the
// C-contiguous (K, N) matrix the kernel reads), aligned: how tinytl.nn.Linear stores it.
void check_weight(const char* fn, const py::array& w, bool f32, const char* ref) {
    check_dtype(fn, w, "weight", f32, ref);
    if (w.ndim() != 2)
        throw py::value_error(std::string(fn) + ": weight must have shape (out_features, in_features), got " +
                              shape_str(shape_of(w)));
    const int flags = w.flags();
    if (!(flags & py::array::f_style))
        throw py::value_error(std::string(fn) + ": weight must be Fortran-ordered (weight.T C-contiguous, as "
                              "tinytl.nn.Linear stores it); other layouts take the BLAS path");
    if (!(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
        throw py::value_error(std::string(fn) + ": weight must be aligned");
}

py::array linear_forward(py::array x, py::array weight, py::object bias_obj, bool relu, py::array out,
                         py::object mask_obj, int threads) {
    const char* fn = "linear_forward";
    const bool f32 = is_f32(fn, x, "x");
    check_weight(fn, weight, f32, "x");
    auto bias = optional_array(fn, bias_obj, "bias");
    auto mask = optional_array(fn, mask_obj, "mask");
    if (bias) check_dtype(fn, *bias, "bias", f32, "x");
    check_dtype(fn, out, "out", f32, "x");
    check_layout(fn, x, "x", false);
    if (bias) check_layout(fn, *bias, "bias", false);
    check_layout(fn, out, "out", true);
    if (x.ndim() != 2) throw py::value_error(std::string(fn) + ": x must have shape (N, in_features), got " + shape_str(shape_of(x)));
    const py::ssize_t m = x.shape(0), k = x.shape(1), n = weight.shape(0);
    if (weight.shape(1) != k)
        throw py::value_error(std::string(fn) + ": weight must have shape (out_features, " + std::to_string(k) +
                              ") to match x " + shape_str(shape_of(x)) + ", got " + shape_str(shape_of(weight)));
    if (bias) check_shape(fn, *bias, "bias", {n});
    check_shape(fn, out, "out", {m, n});
    if (threads < 0) throw py::value_error(std::string(fn) + ": threads must be >= 0 (0: decided by size), got " + std::to_string(threads));
    check_overlap(fn, out, "out", x, "x", false);
    check_overlap(fn, out, "out", weight, "weight", false);
    if (bias) check_overlap(fn, out, "out", *bias, "bias", false);
    if (mask) {
        if (!relu) throw py::value_error(std::string(fn) + ": mask is written only with relu=True");
        check_mask(fn, *mask, m, n, true);
        check_overlap(fn, *mask, "mask", x, "x", false);
        check_overlap(fn, *mask, "mask", weight, "weight", false);
        check_overlap(fn, *mask, "mask", out, "out", false);
        if (bias) check_overlap(fn, *mask, "mask", *bias, "bias", false);
    }

    uint8_t* mp = mask ? ptr<uint8_t>(*mask) : nullptr;
    std::optional<py::gil_scoped_release> nogil;
    if (m * k * n >= kReleaseGil * 16) nogil.emplace();
    if (f32) tinytl::linear_forward(cptr<float>(x), cptr<float>(weight), cptr<float>(bias), relu, ptr<float>(out), mp, m, k, n, threads);
    else     tinytl::linear_forward(cptr<double>(x), cptr<double>(weight), cptr<double>(bias), relu, ptr<double>(out), mp, m, k, n, threads);
    return out;
}

py::tuple linear_backward(py::array grad, py::object mask_obj, bool relu, py::object x_obj, py::array weight,
                          bool bias_grad, bool input_grad, int threads) {
    const char* fn = "linear_backward";
    const bool f32 = is_f32(fn, grad, "grad");
    auto mask = optional_array(fn, mask_obj, "mask");
    auto x = optional_array(fn, x_obj, "x");
    check_layout(fn, grad, "grad", false);
    if (grad.ndim() != 2)
        throw py::value_error(std::string(fn) + ": grad must have shape (N, out_features), got " + shape_str(shape_of(grad)));
    const py::ssize_t m = grad.shape(0), n = grad.shape(1);
    py::ssize_t k = -1;
    if (x) {
        check_dtype(fn, *x, "x", f32, "grad");
        check_layout(fn, *x, "x", false);
        if (x->ndim() != 2 || x->shape(0) != m)
            throw py::value_error(std::string(fn) + ": x must have shape (" + std::to_string(m) +
                                  ", in_features) (the forward's input), got " + shape_str(shape_of(*x)));
        k = x->shape(1);
    }
    check_weight(fn, weight, f32, "grad");
    if (weight.shape(0) != n || (k >= 0 && weight.shape(1) != k))
        throw py::value_error(std::string(fn) + ": weight must have shape (" + std::to_string(n) + ", " +
                              (k >= 0 ? std::to_string(k) : std::string("in_features")) + "), got " +
                              shape_str(shape_of(weight)));
    k = weight.shape(1);
    if (relu) {
        if (!mask) throw py::value_error(std::string(fn) + ": mask is required when relu=True (the forward's packed ReLU mask)");
        check_mask(fn, *mask, m, n, false);
    }
    if (threads < 0) throw py::value_error(std::string(fn) + ": threads must be >= 0 (0: decided by size), got " + std::to_string(threads));

    py::object gx = py::none(), gw = py::none(), gb = py::none();
    py::array gxa, gwa, gba;
    auto alloc = [&](std::vector<py::ssize_t> shape, bool fortran) -> py::array {
        if (f32) return fortran ? py::array(py::array_t<float, py::array::f_style>(shape)) : py::array(py::array_t<float>(shape));
        return fortran ? py::array(py::array_t<double, py::array::f_style>(shape)) : py::array(py::array_t<double>(shape));
    };
    if (input_grad) { gxa = alloc({m, k}, false); gx = gxa; }
    if (x) { gwa = alloc({n, k}, true); gw = gwa; }          // the weight's layout: (N, K), Fortran order
    if (bias_grad) { gba = alloc({n}, false); gb = gba; }

    std::optional<py::gil_scoped_release> nogil;
    if (m * k * n >= kReleaseGil * 16) nogil.emplace();
    const uint8_t* mp = relu ? cptr<uint8_t>(*mask) : nullptr;
    if (f32)
        tinytl::linear_backward(cptr<float>(grad), mp, relu, cptr<float>(x), cptr<float>(weight),
                                bias_grad ? ptr<float>(gba) : nullptr, x ? ptr<float>(gwa) : nullptr,
                                input_grad ? ptr<float>(gxa) : nullptr, m, k, n, threads);
    else
        tinytl::linear_backward(cptr<double>(grad), mp, relu, cptr<double>(x), cptr<double>(weight),
                                bias_grad ? ptr<double>(gba) : nullptr, x ? ptr<double>(gwa) : nullptr,
                                input_grad ? ptr<double>(gxa) : nullptr, m, k, n, threads);
    nogil.reset();
    return py::make_tuple(gx, gw, gb);
}

// ------------------------------------------------- softmax cross-entropy ----

py::tuple softmax_xent(py::array logits, py::array target, const std::string& reduction, py::array out) {
    const char* fn = "softmax_xent";
    const bool f32 = is_f32(fn, logits, "logits");
    check_dtype(fn, out, "out", f32, "logits");
    if (!target.dtype().equal(py::dtype::of<int64_t>()))
        throw py::type_error(std::string(fn) + ": target must be an int64 array of class indices, got dtype " +
                             dtype_str(target));
    if (reduction != "mean" && reduction != "sum")
        throw py::value_error(std::string(fn) + ": reduction must be 'mean' or 'sum', got '" + reduction + "'");
    check_layout(fn, logits, "logits", false);
    check_layout(fn, target, "target", false);
    check_layout(fn, out, "out", true);
    if (logits.ndim() != 2)
        throw py::value_error(std::string(fn) + ": logits must have shape (N, C), got " + shape_str(shape_of(logits)));
    const py::ssize_t n = logits.shape(0), c = logits.shape(1);
    if (n == 0) throw py::value_error(std::string(fn) + ": logits have an empty batch (N = 0)");
    if (c == 0) throw py::value_error(std::string(fn) + ": logits have no classes (C = 0)");
    check_shape(fn, target, "target", {n});
    check_shape(fn, out, "out", {n, c});
    check_overlap(fn, out, "out", logits, "logits", true);
    check_overlap(fn, out, "out", target, "target", false);
    const int64_t* t = cptr<int64_t>(target);
    for (py::ssize_t i = 0; i < n; ++i)
        if (t[i] < 0 || t[i] >= c)
            throw py::value_error(std::string(fn) + ": target[" + std::to_string(i) + "] = " + std::to_string(t[i]) +
                                  " is not a class index in [0, " + std::to_string(c) + ")");

    const bool mean = reduction == "mean";
    double loss;
    {
        std::optional<py::gil_scoped_release> nogil;
        if (n * c >= kReleaseGil) nogil.emplace();
        loss = f32 ? tinytl::softmax_xent(cptr<float>(logits), t, mean, ptr<float>(out), n, c)
                   : tinytl::softmax_xent(cptr<double>(logits), t, mean, ptr<double>(out), n, c);
    }
    py::array l;
    if (f32) { py::array_t<float> a(std::vector<py::ssize_t>{}); *a.mutable_data() = float(loss); l = a; }
    else     { py::array_t<double> a(std::vector<py::ssize_t>{}); *a.mutable_data() = loss; l = a; }
    return py::make_tuple(l, out);
}

// ------------------------------------------------------------------- sgd ----

py::array sgd_step(py::array param, py::array grad, py::object buf_obj, double lr, double momentum, double dampening,
                   double weight_decay, bool nesterov, bool first_step, bool stream) {
    const char* fn = "sgd_step";
    const bool f32 = is_f32(fn, param, "param");
    check_dtype(fn, grad, "grad", f32, "param");
    std::optional<py::array> buf;
    if (momentum != 0) {
        buf = optional_array(fn, buf_obj, "buf");
        if (!buf) throw py::value_error(std::string(fn) + ": buf is required when momentum != 0");
        check_dtype(fn, *buf, "buf", f32, "param");
    }
    check_layout(fn, param, "param", true);
    check_layout(fn, grad, "grad", false);
    if (buf) check_layout(fn, *buf, "buf", true);
    const auto shape = shape_of(param);
    check_shape(fn, grad, "grad", shape);
    if (buf) check_shape(fn, *buf, "buf", shape);
    check_overlap(fn, param, "param", grad, "grad", true);
    if (buf) {
        check_overlap(fn, *buf, "buf", param, "param", false);
        check_overlap(fn, *buf, "buf", grad, "grad", false);
    }

    const py::ssize_t n = param.size();
    std::optional<py::gil_scoped_release> nogil;
    if (n >= kReleaseGil) nogil.emplace();
    if (f32)
        tinytl::sgd_step(ptr<float>(param), cptr<float>(grad), buf ? ptr<float>(*buf) : nullptr, lr, momentum,
                         dampening, weight_decay, nesterov, first_step, stream, n);
    else
        tinytl::sgd_step(ptr<double>(param), cptr<double>(grad), buf ? ptr<double>(*buf) : nullptr, lr, momentum,
                         dampening, weight_decay, nesterov, first_step, stream, n);
    nogil.reset();
    return param;
}

// ------------------------------------------------------------------ adam ----

py::array adam_step(py::array param, py::array grad, py::array exp_avg, py::array exp_avg_sq,
                    py::object max_exp_avg_sq_obj, int64_t step, double lr, double beta1, double beta2, double eps,
                    double weight_decay, bool amsgrad, bool maximize, bool decoupled_weight_decay) {
    const char* fn = "adam_step";
    const bool f32 = is_f32(fn, param, "param");
    check_dtype(fn, grad, "grad", f32, "param");
    check_dtype(fn, exp_avg, "exp_avg", f32, "param");
    check_dtype(fn, exp_avg_sq, "exp_avg_sq", f32, "param");
    std::optional<py::array> vmax;
    if (amsgrad) {
        vmax = optional_array(fn, max_exp_avg_sq_obj, "max_exp_avg_sq");
        if (!vmax) throw py::value_error(std::string(fn) + ": max_exp_avg_sq is required when amsgrad is True");
        check_dtype(fn, *vmax, "max_exp_avg_sq", f32, "param");
    }
    if (step < 1) throw py::value_error(std::string(fn) + ": step must be >= 1 (the number of this step), got " +
                                        std::to_string(step));
    check_layout(fn, param, "param", true);
    check_layout(fn, grad, "grad", false);
    check_layout(fn, exp_avg, "exp_avg", true);
    check_layout(fn, exp_avg_sq, "exp_avg_sq", true);
    if (vmax) check_layout(fn, *vmax, "max_exp_avg_sq", true);
    const auto shape = shape_of(param);
    check_shape(fn, grad, "grad", shape);
    check_shape(fn, exp_avg, "exp_avg", shape);
    check_shape(fn, exp_avg_sq, "exp_avg_sq", shape);
    if (vmax) check_shape(fn, *vmax, "max_exp_avg_sq", shape);
    // Every array apart from every other: AdamW scales param before the reference reads
    // the gradient, so not even grad may be param itself.
    std::vector<std::pair<const py::array*, const char*>> arrays{
        {&param, "param"}, {&grad, "grad"}, {&exp_avg, "exp_avg"}, {&exp_avg_sq, "exp_avg_sq"}};
    if (vmax) arrays.emplace_back(&*vmax, "max_exp_avg_sq");
    for (size_t a = 1; a < arrays.size(); ++a)
        for (size_t b = 0; b < a; ++b)
            check_overlap(fn, *arrays[a].first, arrays[a].second, *arrays[b].first, arrays[b].second, false);

    const py::ssize_t n = param.size();
    std::optional<py::gil_scoped_release> nogil;
    if (n >= kReleaseGil) nogil.emplace();
    if (f32)
        tinytl::adam_step(ptr<float>(param), cptr<float>(grad), ptr<float>(exp_avg), ptr<float>(exp_avg_sq),
                          vmax ? ptr<float>(*vmax) : nullptr, step, lr, beta1, beta2, eps, weight_decay, amsgrad,
                          maximize, decoupled_weight_decay, n);
    else
        tinytl::adam_step(ptr<double>(param), cptr<double>(grad), ptr<double>(exp_avg), ptr<double>(exp_avg_sq),
                          vmax ? ptr<double>(*vmax) : nullptr, step, lr, beta1, beta2, eps, weight_decay, amsgrad,
                          maximize, decoupled_weight_decay, n);
    nogil.reset();
    return param;
}

}  // namespace

// The table of contents: same names, same order as tinytl/kernels/reference.py.
PYBIND11_MODULE(_C, m) {
    m.doc() = "tinytl's fused C++ kernels; call them through tinytl.kernels.cpu (see reference.py for the maths)";

    m.def("linear_forward_epilogue", &linear_forward_epilogue, "out = relu?(y + bias); mask = packed (out > 0)",
          py::arg("y").noconvert(), py::arg("bias").none(true), py::arg("relu"), py::arg("out").noconvert(),
          py::arg("mask").none(true) = py::none());
    m.def("linear_backward_epilogue", &linear_backward_epilogue,
          "out = relu ? grad * unpack(mask) : grad; (out, out.sum(0) | None)",
          py::arg("grad").noconvert(), py::arg("mask").none(true), py::arg("relu"), py::arg("bias_grad"),
          py::arg("out").noconvert());
    m.def("linear_forward", &linear_forward, "out = relu?(x @ weight.T + bias) on tinytl's GEMM; mask = packed (out > 0)",
          py::arg("x").noconvert(), py::arg("weight").noconvert(), py::arg("bias").none(true), py::arg("relu"),
          py::arg("out").noconvert(), py::arg("mask").none(true) = py::none(), py::arg("threads") = 0);
    m.def("linear_backward", &linear_backward,
          "g = relu ? grad * unpack(mask) : grad; (g @ weight | None, g.T @ x | None, g.sum(0) | None)",
          py::arg("grad").noconvert(), py::arg("mask").none(true), py::arg("relu"), py::arg("x").none(true),
          py::arg("weight").noconvert(), py::arg("bias_grad"), py::arg("input_grad"), py::arg("threads") = 0);
    m.def("softmax_xent", &softmax_xent, "(loss, grad) of softmax cross-entropy",
          py::arg("logits").noconvert(), py::arg("target").noconvert(), py::arg("reduction"), py::arg("out").noconvert());
    m.def("sgd_step", &sgd_step, "torch.optim.SGD's update, in place on param and buf",
          py::arg("param").noconvert(), py::arg("grad").noconvert(), py::arg("buf").none(true), py::arg("lr"),
          py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"),
          py::arg("first_step"), py::arg("stream") = false);
    m.def("adam_step", &adam_step, "torch.optim.Adam's / AdamW's update, in place on param and the moments",
          py::arg("param").noconvert(), py::arg("grad").noconvert(), py::arg("exp_avg").noconvert(),
          py::arg("exp_avg_sq").noconvert(), py::arg("max_exp_avg_sq").none(true), py::arg("step"), py::arg("lr"),
          py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("amsgrad"),
          py::arg("maximize"), py::arg("decoupled_weight_decay"));

    m.def("gemm_isa", &tinytl::gemm_isa, "the instruction set of the GEMM kernels: avx512, avx2 or scalar");
    m.def("gemm_threads", [](double flops) { return tinytl::gemm_threads(flops); },
          "threads one fused Linear product of this many floating-point operations uses", py::arg("flops"));
    m.def("fma_peak", [](bool float32, int64_t n) {
              if (n < 0) throw py::value_error("fma_peak: n must be >= 0, got " + std::to_string(n));
              py::gil_scoped_release nogil;
              return tinytl::fma_peak(float32, n);
          },
          "n iterations of register-resident FMA chains on this thread; returns the floating-point operations done",
          py::arg("float32"), py::arg("n"));
    m.def("max_threads", &tinytl::max_threads,
          "threads a large kernel may use (TINYTL_NUM_THREADS, else the CPUs this process may run on)");
}
