"""``tinytl attack MODEL --data FILE --eps ...``: the table and the JSON hold the numbers
tinytl.attacks computes, and every user error is one line on stderr with exit status 2."""
import functools
import json
import zipfile

import numpy as np
import pytest

import tinytl as tl
from tinytl import attacks as A
from tinytl import cli, nn


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, words=""):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinytl") and "error" in lines[0], err
    assert words in lines[0], err


def mlp(d=10, c=4, seed=0, dtype=np.float32):
    tl.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16, dtype=dtype), nn.ReLU(), nn.Linear(16, 16, dtype=dtype), nn.ReLU(),
                         nn.Linear(16, c, dtype=dtype))


@pytest.fixture
def files(tmp_path):
    model = mlp()
    r = np.random.default_rng(0)
    x = r.standard_normal((90, 10)).astype(np.float32)
    y = (x[:, :4] + 0.5 * r.standard_normal((90, 4))).argmax(axis=1)      # 4 classes, learnable
    opt = tl.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(60):
        loss = tl.nn.functional.cross_entropy(model(tl.tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    tl.save(model, tmp_path / "m.safetensors")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    return model, x, y, tmp_path / "m.safetensors", tmp_path / "d.npz"


def test_the_table_and_the_json_hold_the_attacks_numbers(capsys, files, tmp_path):
    model, x, y, m, d = files
    out_json = tmp_path / "report.json"
    rc, out, err = run(capsys, "attack", m, "--data", d, "--eps", "0.3,1", "--steps", "5", "--out", out_json)
    assert rc == 0, err
    r = json.loads(out_json.read_text())
    assert r["n"] == 90 and r["norm"] == "linf" and r["steps"] == 5 and r["clip"] is None
    assert r["clean_accuracy"] == A.robust_accuracy(model, x, y)
    for row, eps in zip(r["results"], (0.3, 1.0)):
        assert row["eps"] == eps and row["alpha"] == pytest.approx(2.5 * eps / 5)
        assert row["one_step_accuracy"] == A.robust_accuracy(model, x, y, functools.partial(A.fgsm, eps=eps))
        assert row["pgd_accuracy"] == A.robust_accuracy(model, x, y, functools.partial(
            A.pgd, eps=eps, alpha=2.5 * eps / 5, steps=5, seed=0))
        line = next(ln for ln in out.splitlines() if ln.split() and ln.split()[0] == f"{eps:g}")
        assert line.split()[1:] == [f"{100 * r['clean_accuracy']:.1f}%", f"{100 * row['one_step_accuracy']:.1f}%",
                                    f"{100 * row['pgd_accuracy']:.1f}%"]
    assert r["results"][1]["pgd_accuracy"] < r["results"][0]["pgd_accuracy"] < r["clean_accuracy"]
    assert "FGSM" in out and "PGD-5" in out and "3 Linear layers" in out


def test_l2_clip_and_float64_checkpoints(capsys, files, tmp_path):
    _, x, y, m, d = files
    rc, out, err = run(capsys, "attack", m, "--data", d, "--eps", "0.5", "--norm", "l2", "--steps", "3")
    assert rc == 0, err
    assert "FGM-L2" in out
    model64 = mlp(dtype=np.float64)
    tl.save(model64, tmp_path / "m64.npz")
    rc, out, err = run(capsys, "attack", tmp_path / "m64.npz", "--data", d, "--eps", "0.2", "--steps", "2",
                       f"--clip={x.min() - 1e-3:.6f},{x.max() + 1:.6f}", "--out", tmp_path / "r.json")
    assert rc == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["clip"] is not None and r["clean_accuracy"] == A.robust_accuracy(model64, x.astype(np.float64), y)


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("case,words", [
    ("no model", "no such file"),
    ("no data", "no such file"),
    ("data not npz", "expected an .npz file"),
    ("no y", "no array 'y'"),
    ("x wrong width", "x must be a float array of shape (N, 10)"),
    ("x integers", "x must be a float array"),
    ("x empty", "N >= 1"),
    ("y wrong length", "y must hold integer labels of shape (90,)"),
    ("y float", "y must hold integer labels"),
    ("y out of range", "y[3] = 4 is not a class of the model (0..3)"),
    ("x nan", "NaN"),
    ("pickled data", "never unpickles"),
    ("not a zip", "not a valid .npz"),
    ("conv layout", "not in the layout of a tinytl MLP"),
    ("gap in layers", "are not 0, 2, 4"),
    ("shapes do not chain", "takes 16 inputs but the layer before gives 8"),
    ("bias without weight", "has a bias but no weight"),
    ("eps letters", "--eps: expected numbers"),
    ("eps negative", "--eps: radii must be >= 0"),
    ("steps zero", "--steps must be an integer >= 1"),
    ("alpha zero", "--alpha must be a number > 0"),
    ("clip reversed", "--clip: LO must be below HI"),
    ("clip one number", "--clip: expected 2 numbers"),
    ("clip excludes data", "outside the clip range"),
    ("norm l1", "invalid choice"),
    ("out in missing folder", "does not exist"),
])
def test_user_errors_are_one_line(capsys, files, tmp_path, case, words):
    model, x, y, m, d = files
    argv = ["attack", m, "--data", d, "--eps", "0.1", "--steps", "2"]

    def data(**kw):
        arrays = dict(x=x, y=y)
        arrays.update(kw)
        arrays = {k: v for k, v in arrays.items() if v is not None}
        argv[3] = _write(tmp_path / "bad.npz", **arrays)

    def state(mutate):
        s = model.state_dict()
        mutate(s)
        tl.save(s, tmp_path / "bad.safetensors")
        argv[1] = tmp_path / "bad.safetensors"
    if case == "no model":
        argv[1] = tmp_path / "nope.safetensors"
    elif case == "no data":
        argv[3] = tmp_path / "nope.npz"
    elif case == "data not npz":
        argv[3] = m
    elif case == "no y":
        data(y=None)
    elif case == "x wrong width":
        data(x=x[:, :7])
    elif case == "x integers":
        data(x=np.zeros((90, 10), np.int64))
    elif case == "x empty":
        data(x=np.zeros((0, 10), np.float32), y=np.zeros(0, np.int64))
    elif case == "y wrong length":
        data(y=y[:50])
    elif case == "y float":
        data(y=y.astype(np.float32))
    elif case == "y out of range":
        yy = y.copy()
        yy[3] = 4
        data(y=yy)
    elif case == "x nan":
        xx = x.copy()
        xx[5, 5] = np.nan
        data(x=xx)
    elif case == "pickled data":
        argv[3] = tmp_path / "pickle.npz"
        np.savez(argv[3], x=np.array([object()] * 3, dtype=object), y=np.arange(3))
    elif case == "not a zip":
        argv[3] = tmp_path / "junk.npz"
        argv[3].write_bytes(b"PK\x03\x04 not really a zip file at all")
    elif case == "conv layout":
        state(lambda s: s.update({"conv.weight": np.zeros((3, 3), np.float32)}))
    elif case == "gap in layers":
        state(lambda s: [s.pop("2.weight"), s.pop("2.bias")])
    elif case == "shapes do not chain":
        state(lambda s: s.update({"0.weight": np.zeros((8, 10), np.float32), "0.bias": np.zeros(8, np.float32)}))
    elif case == "bias without weight":
        state(lambda s: s.pop("4.weight"))
    elif case == "eps letters":
        argv[5] = "0.1,abc"
    elif case == "eps negative":
        argv[5] = "-0.1"
    elif case == "steps zero":
        argv[7] = "0"
    elif case == "alpha zero":
        argv += ["--alpha", "0"]
    elif case == "clip reversed":
        argv += ["--clip", "1,0"]
    elif case == "clip one number":
        argv += ["--clip", "1"]
    elif case == "clip excludes data":
        argv += ["--clip", "0,1"]
    elif case == "norm l1":
        argv += ["--norm", "l1"]
    elif case == "out in missing folder":
        argv += ["--out", tmp_path / "missing" / "r.json"]
    rc, out, err = run(capsys, *argv)
    assert_one_line_error(rc, err, words)
    assert not (tmp_path / "missing").exists()


def test_a_zip_member_that_claims_too_much_is_refused_before_allocating(capsys, files, tmp_path):
    """The data file goes through tinytl's npz reader: a header claiming a huge array is refused."""
    _, x, y, m, _ = files
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w") as zf:
        header = np.lib.format.header_data_from_array_1_0(x)
        header["shape"] = (10 ** 9, 10)
        with zf.open("x.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, header)
            f.write(x.tobytes())
        with zf.open("y.npy", "w") as f:
            np.lib.format.write_array(f, y)
    rc, out, err = run(capsys, "attack", m, "--data", path, "--eps", "0.1")
    assert_one_line_error(rc, err, "needs")
