"""tinytl.transfer.scores: each score against an independent float64 implementation written here
from the paper's formula, LogME against the closed-form evidence, invariances, bad inputs, devices."""
import math

import numpy as np
import pytest

import tinytl as tl
from tinytl import backend
from tinytl.transfer import scores as S
from tinytl.transfer.scores import _logme_columns


# ----------------------------------------------------- references (float64) ----

def closed_form_evidence(F, y, alpha, beta):
    """log N(y | 0, beta^-1 I + alpha^-1 F F^T) / N, from the covariance itself."""
    n = len(y)
    C = np.eye(n) / beta + F @ F.T / alpha
    _, logdet = np.linalg.slogdet(C)
    return (-0.5 * n * math.log(2 * math.pi) - 0.5 * logdet - 0.5 * y @ np.linalg.solve(C, y)) / n


def textbook_evidence(F, y, alpha, beta):
    """The paper's expression with the D x D matrix A = alpha I + beta F^T F written out."""
    n, d = F.shape
    A = alpha * np.eye(d) + beta * F.T @ F
    m = beta * np.linalg.solve(A, F.T @ y)
    _, logdet = np.linalg.slogdet(A)
    return (d / 2 * math.log(alpha) + n / 2 * math.log(beta) - n / 2 * math.log(2 * math.pi)
            - beta / 2 * np.sum((y - F @ m) ** 2) - alpha / 2 * m @ m - 0.5 * logdet) / n


def reference_code_evidence(F, y, alpha, beta):
    """The authors' expression, which sums log(alpha + beta sigma) over the k nonzero singular
    values only (the (D - k) log alpha of log|A| is missing): wrong when k < D."""
    n, d = F.shape
    u, s, vh = np.linalg.svd(F, full_matrices=False)
    k = int((s > 1e-10 * s[0]).sum())
    sigma = s[:k] ** 2
    A = alpha * np.eye(d) + beta * F.T @ F
    m = beta * np.linalg.solve(A, F.T @ y)
    return (d / 2 * math.log(alpha) + n / 2 * math.log(beta) - n / 2 * math.log(2 * math.pi)
            - beta / 2 * np.sum((y - F @ m) ** 2) - alpha / 2 * m @ m
            - 0.5 * np.sum(np.log(alpha + beta * sigma))) / n


def ref_leep(P, y):
    n, z = P.shape
    c = y.max() + 1
    joint = np.zeros((c, z))
    for i in range(n):
        joint[y[i]] += P[i] / n
    pz = joint.sum(axis=0)
    return np.mean([math.log(sum(joint[y[i], j] / pz[j] * P[i, j] for j in range(z) if pz[j] > 0))
                    for i in range(n)])


def ref_nce(z, y):
    n = len(y)
    total = 0.0
    for a in set(z.tolist()):
        pz = np.mean(z == a)
        for b in set(y.tolist()):
            pyz = np.mean((z == a) & (y == b))
            if pyz > 0:
                total += pyz * math.log(pyz / pz)
    return total


def ref_hscore(F, y, rcond=1e-10):
    cov_f = np.cov(F, rowvar=False)
    g = np.zeros_like(F)
    for c in range(y.max() + 1):
        g[y == c] = F[y == c].mean(axis=0)
    cov_g = np.cov(g, rowvar=False)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=rcond, hermitian=True) @ cov_g))


def ref_transrate(F, y, eps=1e-4):
    Z = F - F.mean(axis=0)

    def rate(Zs):
        n, d = Zs.shape
        return 0.5 * np.linalg.slogdet(np.eye(d) + Zs.T @ Zs / (n * eps))[1]
    c = y.max() + 1
    return rate(Z) - sum(rate(Z[y == k]) for k in range(c)) / c


def planted(n, d, c, seed, signal=1.5, rank=None, noise=1.0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    rng.shuffle(y)
    r = d if rank is None else rank
    F = rng.normal(size=(n, r)) @ rng.normal(size=(r, d)) * noise / math.sqrt(r)
    F[:, :c] += signal * np.eye(c)[y][:, :min(c, d)] if d >= c else 0
    if rank is not None:
        F += 1e-3 * rng.normal(size=F.shape)        # nearly rank-deficient, but y not fitted exactly
    return F, y


CASES = [(60, 8), (40, 40), (12, 30), (7, 50)]       # N > D, N = D, N < D, N << D


# ------------------------------------------------------------------ LogME ----

@pytest.mark.parametrize("n,d", CASES)
def test_logme_matches_closed_form_evidence_at_its_fixed_point(n, d):
    F, y = planted(n, d, 3, seed=n + d)
    Y = np.eye(3)[y]
    ev, alpha, beta = _logme_columns(F, Y)
    for c in range(3):
        cf = closed_form_evidence(F, Y[:, c], alpha[c], beta[c])
        # 1e-7: where beta is large (N < D fits y almost exactly) the N x N covariance of the closed
        # form has a condition number ~1e8 and its own solve loses digits
        assert ev[c] == pytest.approx(cf, rel=1e-7, abs=1e-11)
        if alpha[c] < 1e12:            # an interior maximum: the textbook formula agrees too
            assert textbook_evidence(F, Y[:, c], alpha[c], beta[c]) == pytest.approx(cf, rel=1e-8, abs=1e-10)
    assert S.logme(F, y) == pytest.approx(ev.mean(), rel=1e-12)


@pytest.mark.parametrize("n,d", CASES)
def test_logme_fixed_point_maximises_the_evidence(n, d):
    F, y = planted(n, d, 3, seed=2 * n + d)
    Y = np.eye(3)[y]
    ev, alpha, beta = _logme_columns(F, Y)
    for c in range(3):
        best = closed_form_evidence(F, Y[:, c], alpha[c], beta[c])
        for da in (-0.2, -0.05, 0.0, 0.05, 0.2):
            for db in (-0.2, -0.05, 0.0, 0.05, 0.2):
                other = closed_form_evidence(F, Y[:, c], alpha[c] * math.exp(da), beta[c] * math.exp(db))
                assert other <= best + 1e-9
        # and a coarse global grid finds nothing better
        grid = max(closed_form_evidence(F, Y[:, c], math.exp(la), math.exp(lb))
                   for la in np.linspace(-6, 12, 19) for lb in np.linspace(-6, 8, 15))
        assert grid <= best + 1e-9


def test_logme_rank_deficient_features_and_the_reference_codes_bug():
    # 40 examples, 30 features of rank 6 (+ tiny noise so that nothing is fitted exactly)
    F, y = planted(40, 30, 3, seed=5, rank=6, signal=0.0)
    F[:, 0] += 0.8 * (y == 1)
    Y = np.eye(3)[y]
    ev, alpha, beta = _logme_columns(F, Y)
    for c in range(3):
        cf = closed_form_evidence(F, Y[:, c], alpha[c], beta[c])
        assert ev[c] == pytest.approx(cf, rel=1e-8, abs=1e-10)
    # exactly rank-deficient features, N < D: the reference code's formula is off, ours is not
    rng = np.random.default_rng(3)
    G = rng.normal(size=(10, 4)) @ rng.normal(size=(4, 25))
    yy = (np.arange(10) % 2).astype(float)
    e, a, b = _logme_columns(G, yy[:, None])
    cf = closed_form_evidence(G, yy, a[0], b[0])
    assert e[0] == pytest.approx(cf, rel=1e-8)
    assert abs(reference_code_evidence(G, yy, a[0], b[0]) - cf) > 0.1


def test_logme_regression_and_invariance_to_relabelling():
    F, y = planted(50, 12, 4, seed=9)
    perm = np.array([2, 0, 3, 1])
    assert S.logme(F, perm[y]) == pytest.approx(S.logme(F, y), rel=1e-12)
    t = F[:, :2] @ np.array([1.0, -2.0]) + 0.3 * np.random.default_rng(0).normal(size=50)
    one = S.logme(F, t, regression=True)
    two = S.logme(F, np.stack([t, 2 * t + 1], axis=1), regression=True)
    ev, alpha, beta = _logme_columns(F, t[:, None])
    assert one == pytest.approx(ev[0]) and one == pytest.approx(closed_form_evidence(F, t, alpha[0], beta[0]))
    assert two == pytest.approx((one + S.logme(F, 2 * t + 1, regression=True)) / 2)


def test_logme_prefers_informative_features():
    F, y = planted(80, 10, 4, seed=1, signal=3.0)
    noise = np.random.default_rng(1).normal(size=F.shape)
    assert S.logme(F, y) > S.logme(noise, y) + 0.05


# ------------------------------------------------------------- LEEP, NCE ----

def test_leep_and_nce_match_the_definitions():
    rng = np.random.default_rng(0)
    y = np.arange(30) % 3
    logits = rng.normal(size=(30, 5)) + 2 * np.eye(5)[y + 1]
    P = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    P[:, 0] = 0.0                                   # a source class no example uses
    P /= P.sum(axis=1, keepdims=True)
    assert S.leep(P, y) == pytest.approx(ref_leep(P, y), rel=1e-12)
    z = P.argmax(axis=1)
    assert S.nce(z, y) == pytest.approx(ref_nce(z, y), rel=1e-12, abs=1e-15)
    assert S.nce(y + 7, y) == pytest.approx(0.0, abs=1e-15)          # z determines y
    assert S.leep(P.astype(np.float32), y) == pytest.approx(ref_leep(P, y), rel=1e-5)


# --------------------------------------------------------------- H-score ----

def test_hscore_matches_the_definition_and_its_invariances():
    F, y = planted(60, 8, 3, seed=4)
    h = S.hscore(F, y)
    assert h == pytest.approx(ref_hscore(F, y), rel=1e-9)
    assert 0 <= h <= 2
    assert S.hscore(F, np.array([2, 0, 1])[y]) == pytest.approx(h, rel=1e-12)        # relabelling
    A = np.random.default_rng(2).normal(size=(8, 8)) + 3 * np.eye(8)               # invertible
    assert S.hscore(F @ A + 5.0, y) == pytest.approx(h, rel=1e-9)                  # linear (affine) map


def test_hscore_rank_deficient_and_saturation_when_n_below_d():
    F, y = planted(40, 30, 4, seed=6, rank=5, signal=0.0)
    F[:, 0] += np.eye(4)[y][:, 0]
    assert S.hscore(F, y) == pytest.approx(ref_hscore(F, y, rcond=1e-9), rel=1e-6)
    G, yy = planted(12, 30, 3, seed=7)
    assert S.hscore(G, yy) == pytest.approx(2.0, rel=1e-9)                          # C - 1


# ------------------------------------------------------------- TransRate ----

@pytest.mark.parametrize("n,d", CASES)
def test_transrate_matches_the_definition(n, d):
    F, y = planted(n, d, 3, seed=11 + n)
    assert S.transrate(F, y) == pytest.approx(ref_transrate(F, y), rel=1e-9)
    assert S.transrate(F, y, eps=0.1) == pytest.approx(ref_transrate(F, y, eps=0.1), rel=1e-9)


# ---------------------------------------------------------- weighted tau ----

def test_weighted_tau_hand_computed_and_scipys_documented_values():
    # by hand: ranked by x, weights 1/3, 1/2, 1 for x = 1, 2, 3; pairs (1,2) and (1,3) concordant
    # (5/6 + 4/3), (2,3) discordant (3/2): (4/6) / (22/6) = 2/11; ranked by y the same.
    assert S.weighted_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(2 / 11, rel=1e-12)
    # scipy.stats.weightedtau's docstring example (ties in both arrays)
    x, y = [12, 2, 1, 12, 2], [1, 4, 7, 1, 0]
    assert S.weighted_tau(x, y) == pytest.approx(-0.56694968153682723, rel=1e-12)
    assert S._weighted_tau_ranked(np.array(x, float), np.array(y, float)) == pytest.approx(-0.4157652301037516)
    assert S._weighted_tau_ranked(np.array(y, float), np.array(x, float)) == pytest.approx(-0.7181341329699028)
    assert S.weighted_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert S.weighted_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert math.isnan(S.weighted_tau([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="weighted_tau"):
        S.weighted_tau([1, 2], [1, 2, 3])


# ------------------------------------------------------------ bad inputs ----

@pytest.mark.parametrize("fn", [S.logme, S.hscore, S.transrate])
def test_feature_scores_reject_bad_inputs(fn):
    F, y = planted(20, 5, 2, seed=0)
    bad = F.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=f"{fn.__name__}: features hold NaN"):
        fn(bad, y)
    with pytest.raises(ValueError, match="features has 20 rows but labels has 19"):
        fn(F, y[:-1])
    with pytest.raises(ValueError, match=r"\[0, C\)"):
        fn(F, np.where(y == 1, 2, 0))                   # classes 0 and 2: class 1 missing
    with pytest.raises(ValueError, match=r"\[0, C\)"):
        fn(F, y - 1)
    with pytest.raises(ValueError, match="at least two"):
        fn(F, np.zeros(20, np.int64))
    with pytest.raises(TypeError, match="integer class indices"):
        fn(F, y.astype(np.float32))
    with pytest.raises(ValueError, match="2-D"):
        fn(F[0], y[:5])


def test_leep_nce_reject_bad_inputs():
    y = np.arange(10) % 2
    P = np.full((10, 3), 1 / 3)
    with pytest.raises(ValueError, match="leep: each row of source_probs must sum to 1"):
        S.leep(P * 2, y)
    with pytest.raises(ValueError, match="leep: source_probs must be probabilities"):
        S.leep(P - 0.5, y)
    with pytest.raises(ValueError, match="source_probs has 10 rows but labels has 9"):
        S.leep(P, y[:9])
    with pytest.raises(ValueError, match="nce: source_labels must be >= 0"):
        S.nce(np.arange(10) - 1, y)
    with pytest.raises(TypeError, match="nce: source_labels must be integers"):
        S.nce(np.zeros(10), y)
    with pytest.raises(ValueError, match="source_labels has 10 rows but labels has 9"):
        S.nce(np.arange(10), y[:9])


# ---------------------------------------------------------------- devices ----

def test_scores_on_every_device(device):
    F, y = planted(30, 12, 3, seed=3)
    P = np.exp(F[:, :4]) / np.exp(F[:, :4]).sum(axis=1, keepdims=True)
    want = [S.logme(F, y), S.hscore(F, y), S.transrate(F, y), S.leep(P, y), S.nce(P.argmax(1), y)]
    Fd, yd, Pd = (backend.to_device(a, device) for a in (F.astype(np.float32), y, P))
    got = [S.logme(Fd, yd), S.hscore(Fd, yd), S.transrate(Fd, yd), S.leep(Pd, yd),
           S.nce(backend.to_device(P.argmax(1), device), yd)]
    assert got == pytest.approx(want, rel=1e-4)
    assert S.logme(tl.tensor(F), y) == pytest.approx(want[0])        # Tensors are accepted
