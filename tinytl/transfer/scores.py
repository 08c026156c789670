"""Transferability scores: how well will a pretrained model do on a target task, *before* fine-tuning it?

Each score looks at what the pretrained model computes on the labelled target examples and
returns one number, higher = expected to transfer better. Computing one costs a forward
pass and a small matrix factorisation, against a whole training run for fine-tuning.

- ``logme(features, labels)``: the evidence of a Bayesian linear model on the features
  (You et al., 2021). Feature-based, with a clear probabilistic meaning.
- ``hscore(features, labels)``: how much of the features' variance lies between the class
  means (Bao et al., 2019).
- ``transrate(features, labels)``: coding rate of the features minus that of each class
  (Huang et al., 2022).
- ``leep(source_probs, labels)``: how well the source head's soft predictions, through an
  empirical source-to-target label map, predict the target labels (Nguyen et al., 2020).
- ``nce(source_labels, labels)``: the negative conditional entropy of the target labels
  given the source model's hard predictions (Tran et al., 2019).

``weighted_tau(scores, accuracies)`` measures how well a score ranks candidates (the weighted
Kendall tau the benchmarks of these scores report).

The first three take features (N, D) (e.g. the penultimate layer); the last two take the
source model's outputs. All take NumPy or CuPy arrays (or Tensors), compute in float64 and
return a Python float. ``tinytl/transfer/search.py`` uses them to rank layers and sources.

Labels are class indices in [0, C) with every class present (renumber others with
``np.unique(labels, return_inverse=True)``); C >= 2.

Read next: ``tinytl/transfer/search.py`` (rank_layers, rank_sources, search).
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..tensor import as_array as _array

__all__ = ["logme", "leep", "nce", "hscore", "transrate", "weighted_tau"]


# ---------------------------------------------------------------- checks ----

def _features(x, fn: str, arg: str = "features"):
    """``x`` as a float64 (N, D) array on its own device; finite."""
    x = _array(x, arg, fn)
    xp = backend.get_array_module(x)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"{fn}: {arg} must hold numbers, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{fn}: {arg} must be a non-empty 2-D array (N examples, D values), "
                         f"got shape {tuple(x.shape)}")
    x = x.astype(xp.float64)
    if not bool(xp.isfinite(x).all()):
        raise ValueError(f"{fn}: {arg} hold NaN or infinite values")
    return x


def _labels(y, n: int, fn: str, arg: str = "labels", other: str = "features"):
    """(labels as int64 on their device, C): 1-D, length n, class indices in [0, C), every class present."""
    y = _array(y, arg, fn)
    xp = backend.get_array_module(y)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{fn}: {arg} must be integer class indices, got dtype {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{fn}: {arg} must be 1-D (one class index per example), got shape {tuple(y.shape)}")
    if len(y) != n:
        raise ValueError(f"{fn}: {other} has {n} rows but {arg} has {len(y)}")
    y = y.astype(xp.int64)
    lo, hi = int(y.min()), int(y.max())
    present = int(xp.unique(y).size)
    if lo < 0 or hi >= present:
        raise ValueError(f"{fn}: {arg} must be class indices in [0, C) with every class present; here C = "
                         f"{present} distinct labels but they span {lo}..{hi} (renumber them: "
                         "np.unique(labels, return_inverse=True)[1])")
    if present < 2:
        raise ValueError(f"{fn}: {arg} hold a single class; a score needs at least two")
    return y, present


def _one_hot(y, c: int, xp):
    return (y[:, None] == xp.arange(c)[None, :]).astype(xp.float64)


def _svd_range(F, xp):
    """(U_k, s_k): the left singular vectors and the singular values of F above the rank tolerance.

    From the eigendecomposition of the smaller Gram matrix (F F^T when N <= D, else F^T F with
    U = F V / s), 2-3x faster than an SVD at the sizes scored here. Eigenvalues of the Gram
    matrix below N_max * 1e3 * eps * their largest (s < ~1e-5 s_max, for N_max = max(N, D)
    ~ 100) are rounding noise there and count as zero.
    """
    n, d = F.shape
    G = F @ F.T if n <= d else F.T @ F
    lam, vec = xp.linalg.eigh(G)
    lam, vec = lam[::-1], vec[:, ::-1]                       # largest first
    top = float(lam[0]) if lam.size else 0.0
    k = int((lam > max(n, d) * 1e3 * np.finfo(np.float64).eps * top).sum()) if top > 0 else 0
    lam, vec = lam[:k], vec[:, :k]
    s = xp.sqrt(lam)
    U = vec if n <= d else (F @ vec) / s[None, :]
    return U, s


# ----------------------------------------------------------------- LogME ----

_TINY = np.finfo(np.float64).tiny


def logme(features, labels, regression: bool = False) -> float:
    r"""LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer
    Learning", ICML 2021): the maximum log evidence of a Bayesian linear model on the features.

    For each target column y (classification: the one-vs-rest indicator of each class;
    regression: each real-valued target), the model is y = F w + noise with a prior
    w ~ N(0, alpha^-1 I_D) and noise ~ N(0, beta^-1 I_N), so that marginally

        p(y | alpha, beta) = N(y | 0, beta^-1 I_N + alpha^-1 F F^T)

        log p = D/2 log alpha + N/2 log beta - N/2 log 2 pi - beta/2 ||y - F m||^2
                - alpha/2 ||m||^2 - 1/2 log |A|,    A = alpha I + beta F^T F,  m = beta A^-1 F^T y.

    alpha and beta maximise it, found by MacKay's fixed-point updates from one SVD
    F = U diag(s) V^T (rank k, sigma_i = s_i^2, x = U^T y, t = alpha / beta; computed from the
    eigendecomposition of the smaller Gram matrix):

        gamma = sum_i sigma_i / (sigma_i + t),   ||m||^2 = sum_i sigma_i x_i^2 / (sigma_i + t)^2,
        ||y - F m||^2 = sum_i t^2 x_i^2 / (sigma_i + t)^2 + (||y||^2 - ||x||^2),
        alpha <- gamma / ||m||^2,   beta <- (N - gamma) / ||y - F m||^2.

    The fixed point reached is a local maximum, and with few examples there can be several: a scan
    of the evidence over a grid of t (beta at its best for each t) finds the highest, refined by
    bisection on the same fixed-point equation; the limit alpha -> inf (w = 0, beta = N / ||y||^2)
    is kept where it is higher. The score is the maximised log evidence
    divided by N, averaged over the columns.
    log |A| = sum_{i<=k} log(alpha + beta sigma_i) + (D - k) log alpha: the last term matters
    when the features are rank-deficient (and always when N < D); the authors' reference code
    leaves it out and returns wrong values there. It is evaluated at the final alpha, beta.

    Args:
        features: (N, D) features of the N labelled target examples.
        labels: (N,) class indices in [0, C) (classification), or with ``regression=True``
            real-valued targets of shape (N,) or (N, K).
        regression: treat ``labels`` as real-valued targets.

    Returns:
        The mean over columns of max_{alpha, beta} log p(y | alpha, beta) / N (a float;
        higher = better transfer expected).

    Raises:
        ValueError: NaN/inf features, a length mismatch, labels outside [0, C) or missing a
            class, fewer than two classes. TypeError: non-integer class labels.
    """
    fn = "logme"
    F = _features(features, fn)
    xp = backend.get_array_module(F)
    n, d = F.shape
    if regression:
        Y = _array(labels, "labels", fn)
        if Y.dtype.kind not in "fiub":
            raise TypeError(f"{fn}: regression targets must be numbers, got dtype {Y.dtype}")
        if Y.ndim not in (1, 2) or (Y.ndim == 2 and Y.shape[1] == 0):
            raise ValueError(f"{fn}: regression targets must have shape (N,) or (N, K), got {tuple(Y.shape)}")
        if len(Y) != n:
            raise ValueError(f"{fn}: features has {n} rows but labels has {len(Y)}")
        Y = Y.astype(xp.float64).reshape(n, -1)
        if not bool(xp.isfinite(Y).all()):
            raise ValueError(f"{fn}: regression targets hold NaN or infinite values")
    else:
        y, c = _labels(labels, n, fn)
        Y = _one_hot(y, c, xp)
    return float(_logme_columns(F, Y)[0].mean())


def _logme_columns(F, Y):
    """(log evidence / N, alpha, beta) for each column of Y (N, K), at the fixed point of
    MacKay's updates from one SVD of F (see ``logme``); arrays of shape (K,)."""
    xp = backend.get_array_module(F)
    n = F.shape[0]
    Uk, s = _svd_range(F, xp)
    sigma = (s * s)[:, None]                              # (k, 1)
    x2 = (Uk.T @ Y) ** 2                                  # (k, K): y's energy along each singular direction
    outside = xp.maximum((Y * Y).sum(axis=0) - x2.sum(axis=0), 0.0)   # ||y||^2 - ||x||^2: off the range of F

    top = float(sigma.max()) if sigma.size else 1.0

    def update(t):
        """MacKay's step from t = alpha / beta: (alpha, beta, gamma, ||m||^2, ||y - F m||^2)."""
        den = sigma + t
        gamma = (sigma / den).sum(axis=0)
        m2 = (sigma * x2 / den / den).sum(axis=0)
        res2 = (x2 * (t / den) ** 2).sum(axis=0) + outside
        num_a, num_b = xp.maximum(gamma, _TINY), xp.maximum(n - gamma, _TINY)
        alpha = num_a / xp.maximum(m2, num_a * 1e-300)        # at most 1e300, no overflow
        beta = num_b / xp.maximum(res2, num_b * 1e-300)
        return alpha, beta, gamma, m2, res2

    def evidence(alpha, beta):
        # D/2 log alpha - 1/2 log|A| = k/2 log alpha - 1/2 sum_i log(alpha + beta sigma_i)
        #                            = -1/2 sum_i log(1 + sigma_i / t)   (the D - k zero directions cancel)
        t = alpha / beta
        den = sigma + t
        m2 = (sigma * x2 / den / den).sum(axis=0)
        res2 = (x2 * (t / den) ** 2).sum(axis=0) + outside
        return (n / 2 * xp.log(beta) - n / 2 * math.log(2 * math.pi) - 0.5 * xp.log1p(sigma / t).sum(axis=0)
                - beta / 2 * res2 - alpha / 2 * m2) / n

    # 1. MacKay's fixed-point updates, from alpha = beta = 1
    t = xp.ones(Y.shape[1])
    for _ in range(10):
        alpha, beta = update(t)[:2]
        t_new = alpha / beta
        step = xp.abs(xp.log(t_new / t))
        t = t_new
        if float(step.max()) < 1e-9:
            break
    # 2. The updates converge linearly, sometimes at a crawl (steps of 0.01 in log t for hundreds of
    #    iterations). Their fixed point solves g(u) = log(alpha(t) / beta(t)) - u = 0 in u = log t
    #    (equivalently gamma ||y - F m||^2 = (N - gamma) t ||m||^2), and an update moves u by g(u).
    #    Finish by moving the same way with doubling steps until g changes sign, then bisecting that
    #    bracket: the root the updates were heading for, to 1e-10 in log t. Where u runs off past
    #    log(1e14 x the largest sigma) (alpha -> inf: y shows no signal along F) or below -690
    #    (beta -> inf: F fits y exactly), the evidence has stopped changing: stop there.
    hi = max(math.log(1e14 * top), 1.0)
    lo_u = -690.0

    def g_of(u):
        a, b = update(xp.exp(u))[:2]
        return xp.log(a / b) - u

    u = xp.clip(xp.log(t), lo_u, hi)
    g = g_of(u)
    direction = xp.where(g >= 0, 1.0, -1.0)
    step = xp.full(u.shape, 0.1)
    left, right = u.copy(), u.copy()                        # the bracket, once found
    searching = xp.abs(g) > 1e-13
    for _ in range(60):
        if not bool(searching.any()):
            break
        u_new = xp.clip(u + direction * step, lo_u, hi)
        g_new = g_of(u_new)
        crossed = searching & (xp.sign(g_new) != direction)
        left = xp.where(crossed, xp.minimum(u, u_new), left)
        right = xp.where(crossed, xp.maximum(u, u_new), right)
        at_bound = searching & ~crossed & ((u_new >= hi) | (u_new <= lo_u))
        u = xp.where(searching & ~crossed, u_new, u)
        left = xp.where(at_bound, u, left)
        right = xp.where(at_bound, u, right)
        searching = searching & ~crossed & ~at_bound
        step = step * 2.0
    for _ in range(64):                                     # bisection: g > 0 on the left, < 0 on the right
        if float((right - left).max()) < 1e-10:          # the evidence, flat there, is exact to ~1e-20
            break
        mid = 0.5 * (left + right)
        gm = g_of(mid)
        left = xp.where(gm > 0, mid, left)
        right = xp.where(gm > 0, right, mid)
    u1 = 0.5 * (left + right)
    alpha, beta = update(xp.exp(u1))[:2]           # the last MacKay step, at the fixed point
    ev = evidence(alpha, beta)
    # 3. The fixed point reached is a local maximum, and with few examples the evidence can have
    #    several. Scan the profile (for each t, the best beta = N / (||y - F m||^2 + t ||m||^2))
    #    on a grid of log t spanning the eigenvalues; if a grid point beats the fixed point, bisect
    #    g around it (sign(g) = sign of the profile's slope) and keep that maximum instead. The
    #    top of the grid stands for alpha -> inf.
    if sigma.size:
        lo_g, hi_g = math.log(float(sigma.min())) - 30.0, math.log(top) + 32.0
        grid = xp.linspace(lo_g, hi_g, 96)
        tg = xp.exp(grid)[None, None, :]                             # (1, 1, G)
        sg, xg = sigma[:, :, None], x2[:, :, None]
        den = sg + tg
        q = (xg * tg / den).sum(axis=0) + outside[:, None]          # ||y - F m||^2 + t ||m||^2, (K, G)
        prof = (-0.5 * n * xp.log(2 * math.pi * xp.maximum(q, _TINY) / n) - 0.5 * n
                - 0.5 * xp.log1p(sg / tg).sum(axis=0)) / n          # (K, G)
        j = prof.argmax(axis=1)
        better = prof.max(axis=1) > ev + 1e-12
        if bool(better.any()):
            lo_b = grid[xp.maximum(j - 1, 0)]
            hi_b = grid[xp.minimum(j + 1, len(grid) - 1)]
            for _ in range(40):
                mid = 0.5 * (lo_b + hi_b)
                gm = g_of(mid)
                lo_b = xp.where(gm > 0, mid, lo_b)
                hi_b = xp.where(gm > 0, hi_b, mid)
            a2, b2 = update(xp.exp(0.5 * (lo_b + hi_b)))[:2]
            ev2 = evidence(a2, b2)
            take = better & (ev2 > ev)
            alpha, beta, ev = xp.where(take, a2, alpha), xp.where(take, b2, beta), xp.where(take, ev2, ev)
    # the limit alpha -> inf (w = 0: y ~ N(0, beta^-1 I), beta = N / ||y||^2), where it is higher
    y2 = xp.maximum((Y * Y).sum(axis=0), _TINY)
    beta0 = n / y2
    ev0 = -0.5 * xp.log(2 * math.pi / beta0) - 0.5
    use0 = ev0 > ev
    alpha = xp.where(use0, 1e300, alpha)
    beta = xp.where(use0, beta0, beta)
    ev = xp.where(use0, ev0, ev)
    return ev, alpha, beta


# ------------------------------------------------------------------ LEEP ----

def leep(source_probs, labels) -> float:
    r"""LEEP (Nguyen et al., "LEEP: A New Measure to Evaluate Transferability of Learned
    Representations", ICML 2020): the log-likelihood of the target labels under the source
    head's predictions mapped to target labels by their empirical joint distribution.

    With theta_i = the source model's distribution over its Z source classes for example i:

        P(y, z) = 1/N sum_{i: y_i = y} theta_iz,    P(y | z) = P(y, z) / sum_y' P(y', z),
        LEEP = 1/N sum_i log sum_z P(y_i | z) theta_iz.

    Source classes that no example puts mass on are left out (they contribute nothing).

    Args:
        source_probs: (N, Z) the source model's class probabilities (softmax outputs) on the
            target examples; each row non-negative, summing to 1.
        labels: (N,) target class indices in [0, C).

    Returns:
        The average log expected empirical prediction (<= 0; higher = better).
    """
    fn = "leep"
    P = _features(source_probs, fn, "source_probs")
    xp = backend.get_array_module(P)
    n = P.shape[0]
    if bool((P < 0).any()):
        raise ValueError(f"{fn}: source_probs must be probabilities (>= 0), got a negative value")
    sums = P.sum(axis=1)
    if bool((xp.abs(sums - 1.0) > 1e-3).any()):
        raise ValueError(f"{fn}: each row of source_probs must sum to 1 (softmax outputs, not logits); row sums "
                         f"span {float(sums.min()):.4g}..{float(sums.max()):.4g}")
    y, c = _labels(labels, n, fn, other="source_probs")
    joint = _one_hot(y, c, xp).T @ P / n                  # (C, Z): P(y, z)
    pz = joint.sum(axis=0)
    cond = xp.where(pz > 0, joint / xp.where(pz > 0, pz, 1.0), 0.0)      # P(y | z)
    eep = (P * cond[y]).sum(axis=1)                       # sum_z P(y_i | z) theta_iz
    return float(xp.log(eep).mean())


# ------------------------------------------------------------------- NCE ----

def nce(source_labels, labels) -> float:
    r"""NCE (Tran et al., "Transferability and Hardness of Supervised Classification Tasks",
    ICCV 2019): the negative conditional entropy of the target labels given the source labels.

        NCE = -H(Y | Z) = sum_{y, z} P(y, z) log (P(y, z) / P(z)),

    with P the empirical joint distribution of (target label y_i, source label z_i) over the N
    examples; z_i is typically the source model's predicted class (argmax of its head).

    Args:
        source_labels: (N,) non-negative integer source labels (need not use every class).
        labels: (N,) target class indices in [0, C).

    Returns:
        -H(Y | Z) in nats (<= 0; 0 when the source label determines the target label).
    """
    fn = "nce"
    z = _array(source_labels, "source_labels", fn)
    xp = backend.get_array_module(z)
    if z.dtype.kind not in "iu":
        raise TypeError(f"{fn}: source_labels must be integers (the source model's predicted classes), "
                        f"got dtype {z.dtype}")
    if z.ndim != 1 or len(z) == 0:
        raise ValueError(f"{fn}: source_labels must be a non-empty 1-D array, got shape {tuple(z.shape)}")
    if int(z.min()) < 0:
        raise ValueError(f"{fn}: source_labels must be >= 0, got {int(z.min())}")
    n = len(z)
    y, c = _labels(labels, n, fn, other="source_labels")
    _, zi = xp.unique(z.astype(xp.int64), return_inverse=True)
    zi = zi.reshape(-1)
    nz = int(zi.max()) + 1
    joint = _one_hot(y, c, xp).T @ _one_hot(zi, nz, xp) / n     # (C, Z')
    pz = joint.sum(axis=0)
    safe = xp.where(joint > 0, joint, 1.0)
    return float((joint * xp.log(safe / pz[None, :])).sum())


# --------------------------------------------------------------- H-score ----

def hscore(features, labels) -> float:
    r"""H-score (Bao et al., "An Information-theoretic Approach to Transferability in Task
    Transfer Learning", ICIP 2019): the share of the features' spread that lies between classes.

        H(f) = tr( cov(f)^+ cov(E[f | y]) ),

    cov(f) the covariance of the features, E[f | y] each example's class mean, ^+ the
    pseudo-inverse. Computed from the SVD of the centred features Fc = U diag(s) V^T (rank k):
    H = ||M U_k||_F^2 = sum_c ||sum_{i in c} U_k[i]||^2 / n_c, with M the class-averaging
    projector. So H is unchanged by any invertible linear map of the features and by a
    relabelling of the classes, and 0 <= H <= C - 1.

    When N <= D, generic features span every centred direction of the N examples and H is
    exactly C - 1 whatever the model: the score saturates (a known limit of H-score with few
    examples, which regularised variants address).

    Args:
        features: (N, D) features of the labelled target examples.
        labels: (N,) class indices in [0, C).

    Returns:
        H (a float in [0, C - 1]; higher = better).
    """
    fn = "hscore"
    F = _features(features, fn)
    xp = backend.get_array_module(F)
    y, c = _labels(labels, F.shape[0], fn)
    Fc = F - F.mean(axis=0, keepdims=True)
    Uk, _ = _svd_range(Fc, xp)
    onehot = _one_hot(y, c, xp)
    S = onehot.T @ Uk                                    # (C, k): per-class sums of the whitened features
    return float(((S * S).sum(axis=1) / onehot.sum(axis=0)).sum())


# ------------------------------------------------------------- TransRate ----

def transrate(features, labels, eps: float = 1e-4) -> float:
    r"""TransRate (Huang et al., "Frustratingly Easy Transferability Estimation", ICML 2022):
    the mutual information between features and labels, estimated by coding rates.

    With Z the centred features (N, D) and Z_c its rows of class c (n_c of them):

        R(Z, eps) = 1/2 log det(I_D + Z^T Z / (N eps)),
        R(Z, eps | Y) = 1/C sum_c R(Z_c, eps)   (each with its own n_c),
        TransRate = R(Z, eps) - R(Z, eps | Y),

    as in the authors' code (equal class weights; for balanced classes the same as weighting
    by n_c / N). The log-determinants come from singular values:
    log det(I + Z^T Z / (n eps)) = sum_i log(1 + s_i^2 / (n eps)), the s_i^2 the eigenvalues of
    the smaller of Z Z^T and Z^T Z.

    Args:
        features: (N, D) features of the labelled target examples.
        labels: (N,) class indices in [0, C).
        eps: the distortion (> 0); smaller counts finer detail.

    Returns:
        TransRate in nats (higher = better).
    """
    fn = "transrate"
    F = _features(features, fn)
    xp = backend.get_array_module(F)
    y, c = _labels(labels, F.shape[0], fn)
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)) \
            or not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"{fn}: eps must be a positive number, got {eps!r}")
    Z = F - F.mean(axis=0, keepdims=True)

    def rate(Zs):
        G = Zs @ Zs.T if Zs.shape[0] <= Zs.shape[1] else Zs.T @ Zs     # the same nonzero eigenvalues s^2
        lam = xp.maximum(xp.linalg.eigvalsh(G), 0.0)
        return 0.5 * float(xp.log1p(lam / (len(Zs) * eps)).sum())

    per_class = [rate(Z[y == k]) for k in range(c)]
    return rate(Z) - sum(per_class) / c


# ------------------------------------------------------- weighted tau ----

def weighted_tau(x, y) -> float:
    r"""The weighted Kendall tau of two rankings, as ``scipy.stats.weightedtau(x, y)`` with its
    defaults (hyperbolic weights, additive, rank=True): how the benchmarks of transferability
    scores compare a score with the fine-tuned accuracies, the top of the ranking weighing most.

    For a ranking r (r_i = 0 for the element with the largest x, ties broken by the larger y;
    joint ties by position), element i weighs w_i = 1 / (r_i + 1), and a pair (i, j) weighs
    w_i + w_j. With C and D the total weights of the concordant and discordant pairs, T the
    total weight of all pairs, U and V those of the pairs tied in x and in y:

        tau_r = (C - D) / sqrt((T - U) (T - V)),

    and the result is the mean of tau_r ranked by x and tau_r ranked by y (the roles of x and
    y swapped). 1: the same order, -1: reversed.

    Args:
        x, y: two 1-D sequences of numbers of the same length (>= 2), e.g. the scores of the
            candidate models and their fine-tuned accuracies.

    Returns:
        The weighted tau (NaN when x or y is constant, as SciPy).
    """
    x = np.asarray(backend.to_numpy(_array(x, "x", "weighted_tau")), dtype=np.float64).ravel()
    y = np.asarray(backend.to_numpy(_array(y, "y", "weighted_tau")), dtype=np.float64).ravel()
    if x.size != y.size:
        raise ValueError(f"weighted_tau: x has {x.size} values but y has {y.size}")
    if x.size < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("weighted_tau: x and y need at least 2 finite values each")
    return float((_weighted_tau_ranked(x, y) + _weighted_tau_ranked(y, x)) / 2)


def _weighted_tau_ranked(x, y) -> float:
    n = len(x)
    order = np.lexsort((y, x))[::-1]              # decreasing x, ties by decreasing y
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    w = 1.0 / (rank + 1.0)
    i, j = np.triu_indices(n, 1)
    pair = w[i] + w[j]
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    total = pair.sum()
    tied_x, tied_y = pair[sx == 0].sum(), pair[sy == 0].sum()
    if total - tied_x <= 0 or total - tied_y <= 0:
        return float("nan")
    tau = (pair * sx * sy).sum() / math.sqrt((total - tied_x) * (total - tied_y))
    return min(1.0, max(-1.0, tau))
