"""Tests of tinytl.transfer.distill: Hinton et al.'s loss (against NumPy, by finite differences, against
torch) and the distill training loop (its checks, the teacher's mode, that the student learns)."""
import numpy as np
import pytest

import tinytl as tl
from tinytl import nn
from tinytl import transfer as T
from tinytl.testing import gradcheck


def np_loss(s, t, y, T_, alpha, ignore=-100):
    """The formula, written independently: KL(softmax(t/T) || softmax(s/T)) * T^2 (batchmean), mixed
    with the cross-entropy of the labelled rows."""
    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    p, q = softmax(t / T_), softmax(s / T_)
    kd = np.sum(p * (np.log(p) - np.log(q))) / len(s) * T_ ** 2
    if y is None:
        return kd
    lab = y != ignore
    ce = -np.mean(np.log(softmax(s[lab])[np.arange(lab.sum()), y[lab]])) if lab.any() else 0.0
    return alpha * kd + (1 - alpha) * ce


def logits(n=8, c=5, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, scale, (n, c)), rng.normal(0, scale, (n, c))


@pytest.mark.parametrize("T_, alpha, labels", [(4.0, 0.9, "all"), (1.0, 0.5, "some"), (2.5, 0.3, None),
                                               (7.0, 0.0, "all"), (3.0, 1.0, "some"), (2.0, 0.6, "none")])
def test_loss_matches_numpy_formula(T_, alpha, labels):
    s, t = logits()
    y = None
    if labels is not None:
        y = np.arange(8) % 5
        if labels == "some":
            y[[1, 4, 5]] = -100
        elif labels == "none":
            y[:] = -100
    got = T.distillation_loss(tl.tensor(s), tl.tensor(t), y, temperature=T_, alpha=alpha).item()
    assert abs(got - np_loss(s, t, y, T_, alpha)) < 1e-12 * max(1.0, abs(got))


def test_loss_gradient_by_finite_differences(device):
    s, t = logits(6, 4)
    y = np.array([0, 3, -100, 1, 2, -100])
    for target, alpha in ((y, 0.7), (None, 0.9)):
        S = tl.tensor(s, requires_grad=True, device=device)
        Tt = tl.tensor(t, device=device)
        yt = None if target is None else tl.tensor(target, device=device)
        assert gradcheck(lambda S: T.distillation_loss(S, Tt, yt, temperature=3.0, alpha=alpha), [S])


def test_loss_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    s, t = logits(10, 6, seed=3)
    y = np.arange(10) % 6
    y[2] = -100
    st = torch.tensor(s, requires_grad=True)
    tt = torch.tensor(t)
    Tq, a = 4.0, 0.8
    kd = F.kl_div(F.log_softmax(st / Tq, 1), F.log_softmax(tt / Tq, 1), reduction="batchmean", log_target=True)
    ref = a * kd * Tq * Tq + (1 - a) * F.cross_entropy(st, torch.tensor(y))   # ignore_index=-100 by default
    ref.backward()
    S = tl.tensor(s, requires_grad=True)
    got = T.distillation_loss(S, t, y, temperature=Tq, alpha=a)
    got.backward()
    np.testing.assert_allclose(got.item(), ref.item(), rtol=1e-10)
    np.testing.assert_allclose(S.grad, st.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_loss_is_zero_when_student_equals_teacher_and_float32_keeps_dtype():
    s, _ = logits()
    assert abs(T.distillation_loss(tl.tensor(s), tl.tensor(s)).item()) < 1e-12
    out = T.distillation_loss(tl.tensor(s.astype(np.float32), requires_grad=True), s.astype(np.float32))
    out.backward()
    assert out.dtype == np.float32


def test_loss_bad_input():
    s, t = logits()
    S = tl.tensor(s)
    with pytest.raises(ValueError, match="distillation_loss: temperature must be a positive number"):
        T.distillation_loss(S, t, temperature=0)
    with pytest.raises(ValueError, match=r"distillation_loss: alpha must be a number in \[0, 1\]"):
        T.distillation_loss(S, t, alpha=1.5)
    with pytest.raises(ValueError, match="teacher_logits have shape"):
        T.distillation_loss(S, t[:, :3])
    with pytest.raises(ValueError, match=r"target\[0\] = 7 is neither a class index"):
        T.distillation_loss(S, t, np.full(8, 7))
    with pytest.raises(TypeError, match="integer class labels"):
        T.distillation_loss(S, t, np.zeros(8))


# --------------------------------------------------------------- distill ----

def mlp(sizes, seed, device="cpu"):
    tl.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).to(device)


class ModeSpy(nn.Module):
    """A teacher that records the mode and grad mode it is called in."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = []

    def forward(self, x):
        self.calls.append((self.training, tl.is_grad_enabled()))
        return self.inner(x)


def task(n=256, d=8, c=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X[:, :c] + 0.3 * rng.normal(size=(n, c))).argmax(axis=1)
    return X, y


def accuracy(model, X, y):
    return float((T.extract_features(model, X).argmax(axis=1) == y).mean())


def test_distill_student_learns_the_teacher_and_the_teacher_is_untouched(device):
    X, y = task()
    teacher = mlp((8, 32, 32, 3), seed=0)
    opt = tl.optim.SGD(teacher.parameters(), lr=0.1, momentum=0.9)
    for _ in range(150):                                       # a teacher that knows the task (on the CPU)
        loss = nn.CrossEntropyLoss()(teacher(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert accuracy(teacher, X, y) > 0.9
    teacher.to(device)
    spy = ModeSpy(teacher)
    spy.train()
    before = {k: v.copy() for k, v in teacher.state_dict().items()}
    student = mlp((8, 8, 3), seed=1, device=device)
    labels = np.full(len(X), -100)
    labels[:12] = y[:12]                                        # a few labels, the rest unlabelled
    out, hist = T.distill(spy, student, X, labels, temperature=4.0, alpha=0.9, epochs=8, lr=0.2,
                          batch_size=64, seed=0)
    assert out is student and len(hist["loss"]) == 8
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    agree = float((T.extract_features(student, X).argmax(1) == T.extract_features(teacher, X).argmax(1)).mean())
    assert agree > 0.8                                          # untrained: about 1 in 3
    assert all(c == (False, False) for c in spy.calls)         # eval mode, no graph
    assert spy.training and teacher.training                    # its mode restored after
    for k, v in teacher.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_distill_without_labels_and_reproducible():
    X, _ = task(64)
    teacher = mlp((8, 16, 3), seed=0)
    runs = []
    for _ in range(2):
        student = mlp((8, 4, 3), seed=2)
        _, hist = T.distill(teacher, student, X, epochs=3, lr=0.05, batch_size=16, seed=3)
        runs.append((hist["loss"], student.state_dict()))
    assert runs[0][0] == runs[1][0]
    for k in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][k], runs[1][1][k])


def test_distill_bad_input_raises_before_training(device):
    X, y = task(32)
    teacher = mlp((8, 16, 3), seed=0, device=device)
    student = mlp((8, 4, 3), seed=1, device=device)
    before = {k: v.copy() for k, v in student.state_dict().items()}
    kw = dict(epochs=1, lr=0.1)
    with pytest.raises(ValueError, match="distill: temperature must be a positive number, got 0"):
        T.distill(teacher, student, X, temperature=0, **kw)
    with pytest.raises(ValueError, match="distill: temperature"):
        T.distill(teacher, student, X, temperature=-2.0, **kw)
    with pytest.raises(ValueError, match="distill: alpha"):
        T.distill(teacher, student, X, y, alpha=-0.1, **kw)
    with pytest.raises(ValueError, match=r"distill: the student's output has shape \(4,\) per row, the teacher's \(3,\)"):
        T.distill(teacher, mlp((8, 4, 4), seed=1, device=device), X, **kw)
    with pytest.raises(ValueError, match=r"distill: y must have shape \(32,\)"):
        T.distill(teacher, student, X, y[:5], **kw)
    with pytest.raises(ValueError, match="distill: lr"):
        T.distill(teacher, student, X, epochs=1, lr=0)
    with pytest.raises(TypeError, match="distill: student must be a tinytl Module"):
        T.distill(teacher, "student", X, **kw)
    if device != "cpu":
        with pytest.raises(RuntimeError, match="distill: teacher is on 'cpu' but student is on 'cuda'"):
            T.distill(mlp((8, 16, 3), seed=0), student, X, **kw)
    for k, v in student.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
