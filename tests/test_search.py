"""tinytl.transfer.search: rank_layers, rank_sources (a planted best source), search (a fake clock,
a planted best strategy, determinism), SearchReport, mlp_from_state, the strategy registry."""
import importlib

import numpy as np
import pytest

import tinytl as tl
from tinytl import nn
from tinytl import transfer as T
from tinytl._random import generator

S = importlib.import_module("tinytl.transfer.search")     # the module (T.search is the function)


def blobs(n_per=12, c=3, d=10, seed=0, spread=3.0):
    rng = np.random.default_rng(seed)
    means = spread * np.eye(c, d)
    y = np.repeat(np.arange(c), n_per)
    X = (means[y] + rng.normal(size=(len(y), d))).astype(np.float32)
    return X, y, means


def good_model(means):
    """Features that keep every input direction ([x]+ and [-x]+) and a head that predicts the class."""
    c, d = means.shape
    enc = nn.Linear(d, 2 * d)
    enc.weight.data[...] = np.vstack([np.eye(d), -np.eye(d)])
    enc.bias.data[...] = 0
    head = nn.Linear(2 * d, c)
    head.weight.data[...] = np.hstack([means, -means]) / 3
    head.bias.data[...] = 0
    return nn.Sequential(enc, nn.ReLU(), head)


def bad_model(d, c, seed=1):
    """Features that see one random direction of the input; a random head."""
    rng = np.random.default_rng(seed)
    tl.manual_seed(seed)
    m = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, c))
    m[0].weight.data[...] = np.outer(rng.normal(size=2 * d), rng.normal(size=d)) * 0.3
    return m


class FakeClock:
    def __init__(self, step=1.0):
        self.t, self.step, self.calls = 0.0, step, 0

    def __call__(self):
        self.t += self.step
        self.calls += 1
        return self.t


# ------------------------------------------------------------- rankings ----

def test_rank_sources_puts_the_planted_best_source_first_by_every_score(tmp_path):
    X, y, means = blobs()
    good = good_model(means)
    path = tmp_path / "good.safetensors"
    tl.save(good, path)
    r = T.rank_sources({"bad": bad_model(10, 3), "good": str(path), "bad2": bad_model(10, 3, seed=5)}, X, y,
                       score=["logme", "hscore", "transrate", "leep", "nce"])
    for s in r.scores:
        assert r.order(s)[0] == "good", (s, r.values(s))
    assert r.best == "good"
    text = str(r)
    assert "sources ranked by logme" in text and "good" in text and "head input" in text
    d = r.to_dict()
    assert d["order"][0] == "good" and len(d["rows"]) == 3


def test_rank_layers_rows_and_errors():
    X, y, means = blobs()
    model = good_model(means)
    r = T.rank_layers(model, X, y, score=["logme", "hscore"])
    assert [row["name"] for row in r.rows] == ["input", "0", "1"]
    assert [row["module"] for row in r.rows] == ["input", "Linear", "ReLU"]
    assert r.rows[1]["dim"] == 20
    # the Linear layer is an invertible map of the input: H-score sees the same thing
    assert r.values("hscore")["0"] == pytest.approx(r.values("hscore")["input"], rel=1e-6)
    assert "layers ranked by logme" in str(r)
    assert [row["name"] for row in T.rank_layers(model, X, y, layers="1").rows] == ["input", "1"]
    with pytest.raises(ValueError, match="rank_layers: score 'leep' reads the source model's predictions"):
        T.rank_layers(model, X, y, score="leep")
    with pytest.raises(ValueError, match="rank_layers: no module named"):
        T.rank_layers(model, X, y, layers=["7"])
    with pytest.raises(ValueError, match="unknown score 'logm'"):
        T.rank_sources({"a": model}, X, y, score="logm")
    with pytest.raises(ValueError, match="rank_layers: X has 36 rows but y has 35"):
        T.rank_layers(model, X, y[:-1])
    with pytest.raises(ValueError, match="class indices 0..C-1"):
        T.rank_layers(model, X, y + 1)
    with pytest.raises(TypeError, match="rank_sources: sources must be a non-empty dict"):
        T.rank_sources([model], X, y)
    # a custom score function
    r = T.rank_sources({"a": model}, X, y, score=lambda F, labels: float(F.shape[1]))
    assert r.rows[0]["values"]["<lambda>"] == 20.0


def test_mlp_from_state_round_trip_and_errors(tmp_path):
    tl.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    rebuilt = T.mlp_from_state(m.state_dict())
    np.testing.assert_allclose(rebuilt(tl.tensor(x)).data, m(tl.tensor(x)).data, rtol=1e-6)
    tl.save(m, tmp_path / "m.npz")
    np.testing.assert_allclose(T.mlp_from_state(str(tmp_path / "m.npz"))(tl.tensor(x)).data, m(tl.tensor(x)).data,
                               rtol=1e-6)
    with pytest.raises(ValueError, match="not a Sequential of Linear and ReLU"):
        T.mlp_from_state({"encoder.0.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ValueError, match="do not describe Linear, ReLU"):
        T.mlp_from_state({"0.weight": np.zeros((3, 2), np.float32), "4.weight": np.zeros((1, 3), np.float32)})
    with pytest.raises(ValueError, match="takes 4 inputs but the layer before gives 3"):
        T.mlp_from_state({"0.weight": np.zeros((3, 2), np.float32), "2.weight": np.zeros((1, 4), np.float32)})


# ---------------------------------------------------------------- search ----

def _scramble(model, head, weight_decay):
    """A planted bad strategy: the backbone replaced by random weights and frozen."""
    rng = np.random.default_rng(0)
    for p in model.parameters():
        p.data[...] = rng.normal(size=p.data.shape) * 0.01
    model.freeze()
    head.unfreeze()
    head.weight.data[...] = 0
    return None


SCRAMBLE = T.Strategy("scramble", "planted: random frozen features", (T.Phase("scramble", _scramble, (0.05, 0.2)),))


def test_search_finds_the_planted_best_strategy_and_is_deterministic():
    X, y, means = blobs(n_per=12)
    pretrained = good_model(means)
    before = {k: v.copy() for k, v in pretrained.state_dict().items()}
    tl.manual_seed(123)
    expected_next = np.random.default_rng(123).random()
    runs = []
    for _ in range(2):
        model, report = T.search(pretrained, X, y, strategies=(SCRAMBLE, "probe"), max_epochs=12, patience=3,
                                 seed=4, clock=FakeClock())
        runs.append((model, report))
    (m1, r1), (m2, r2) = runs
    assert r1.winner == "probe"
    assert r1.row("probe")["val_accuracy"] > r1.row("scramble")["val_accuracy"] + 0.3
    assert "scramble" in r1.reason and r1.validation["kind"] == "kfold" and r1.validation["folds"] == 5
    assert r1.to_dict() == r2.to_dict()                                   # deterministic (fake clock)
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=k)
    for k, v in pretrained.state_dict().items():                          # the pretrained model is untouched
        np.testing.assert_array_equal(v, before[k])
    assert generator().random() == expected_next                          # and so is the global RNG
    assert (m1(tl.tensor(X)).data.argmax(1) == y).mean() > 0.9
    assert m1[-1].out_features == 3 and not m1.training
    cand = r1.row("probe")["candidates"]
    assert [c["lr"] for c in cand] == list(S.PROBE.lrs)
    assert all(c["epochs"] <= 12 for c in cand)


def test_search_with_a_fake_clock_and_a_budget_skips_what_it_cannot_afford():
    X, y, means = blobs(n_per=12)
    clock = FakeClock(step=1.0)
    model, report = T.search(good_model(means), X, y, strategies=("probe", "finetune", "l2sp"), max_epochs=50,
                             patience=50, budget_s=5, seed=0, clock=clock)
    first = report.row("probe")
    assert first["status"] == "ok (grid cut by budget)"
    assert first["candidates"][0]["status"].startswith("stopped by budget")
    assert len(first["candidates"]) == 1
    assert report.row("finetune")["status"] == "skipped (budget)"
    assert report.row("l2sp")["status"] == "skipped (budget)"
    assert report.winner == "probe"
    assert "skipped (budget)" in str(report)
    assert report.settings["budget_s"] == 5.0


def test_lp_ft_reuses_the_probe_and_the_report_round_trips(tmp_path):
    X, y, means = blobs(n_per=25, seed=3, spread=1.0)            # 75 labels: a hold-out of 15... still k-fold
    model, report = T.search(good_model(means), X, y, strategies=("probe", "lp_ft"), max_epochs=6, patience=2,
                             folds=3, seed=1)
    lp = report.row("lp_ft")
    assert lp["candidates"][0]["reused"] and lp["lrs"][0] == report.row("probe")["lrs"][0]
    assert len(lp["lrs"]) == 2 and len(lp["epochs"]) == 2
    assert report.validation == {"kind": "kfold", "folds": 3, "n_train": 75, "n_val": 75}
    path = report.save(tmp_path / "r.json")
    back = S.SearchReport.load(path)
    assert back.to_dict() == report.to_dict()
    assert str(back) == str(report)
    # a hold-out when there are enough labels
    X2, y2, m2 = blobs(n_per=60, seed=2)
    _, rep = T.search(good_model(m2), X2, y2, strategies="probe", max_epochs=3, patience=1)
    assert rep.validation["kind"] == "holdout" and rep.validation["n_val"] == 36


def test_search_bad_arguments():
    X, y, means = blobs()
    m = good_model(means)
    with pytest.raises(ValueError, match="search: unknown strategy 'bitfat'"):
        T.search(m, X, y, strategies=("bitfat",))
    with pytest.raises(ValueError, match="val_fraction"):
        T.search(m, X, y, val_fraction=1.5)
    with pytest.raises(ValueError, match="folds"):
        T.search(m, X, y, folds=1)
    with pytest.raises(ValueError, match="lrs names 'finetune'"):
        T.search(m, X, y, strategies=("probe",), lrs={"finetune": [0.1]})
    with pytest.raises(ValueError, match="class 2 has a single labelled example"):
        T.search(m, X[:25], y[:25])
    with pytest.raises(ValueError, match="select"):
        T.search(m, X, y, select="best")
    with pytest.raises(TypeError, match="pretrained must be a tinytl Module or a checkpoint path"):
        T.search(42, X, y)
    with pytest.raises(ValueError, match="is registered already"):
        T.register_strategy(T.STRATEGIES["probe"])
    with pytest.raises(TypeError, match="register_strategy: expected a Strategy"):
        T.register_strategy("probe")


def test_rank_and_search_on_every_device(device):
    X, y, means = blobs(n_per=10)
    model = good_model(means).to(device)
    r = T.rank_sources({"good": model}, X, y, score=["logme", "leep"])
    cpu = T.rank_sources({"good": good_model(means)}, X, y, score=["logme", "leep"])
    assert r.values("logme")["good"] == pytest.approx(cpu.values("logme")["good"], rel=1e-4)
    # small: every op on the emulated GPU is slow (a fine-tuning phase and a probe, one lr, 2 folds)
    trained, report = T.search(model, X, y, strategies=("lp_ft",), lrs={"lp_ft": [0.01]}, folds=2, max_epochs=2,
                               patience=1, seed=0)
    assert trained[0].weight.device == device
    assert report.winner == "lp_ft" and report.row("lp_ft")["val_accuracy"] > 0.6


def test_bitfit_and_lora_strategies_train_what_they_say():
    """The efficient fine-tuning strategies join the search: BitFit trains biases and the head,
    LoRA trains the adapters below the head and the head whole, and the pretrained model is untouched."""
    import tinytl as tl
    from tinytl import nn
    from tinytl.transfer.search import STRATEGIES, DEFAULT_STRATEGIES
    assert {"bitfit", "lora"} <= set(DEFAULT_STRATEGIES)
    tl.manual_seed(0)
    pre = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    before = {k: v.copy() for k, v in pre.state_dict().items()}
    for name, trainable in (("bitfit", {"0.bias", "2.bias", "4.weight", "4.bias"}),
                            ("lora", {"0.lora_A.weight", "0.lora_B.weight", "2.lora_A.weight", "2.lora_B.weight",
                                      "4.weight", "4.bias"})):
        import copy
        model = copy.deepcopy(pre)
        STRATEGIES[name].phases[-1].prepare(model, model[4], 0.0)
        assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable, name
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 10)).astype(np.float32), rng.integers(0, 3, 60)
    model, report = tl.transfer.search(pre, X, y, strategies=("bitfit", "lora"), max_epochs=3, patience=2, seed=0)
    assert [r["strategy"] for r in report.rows] == ["bitfit", "lora"] and report.winner in ("bitfit", "lora")
    for k, v in pre.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
