"""`tinytl rank` and `tinytl search`, and tinytl.datafiles.load_xy (the data files they read)."""
import json
import zipfile

import numpy as np
import pytest

import tinytl as tl
from tinytl import nn
from tinytl.cli import main
from tinytl.datafiles import load_xy


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(45, 6)).astype(np.float32)
    y = np.repeat([3, 5, 8], 15)
    X[:, 0] += (y == 5) * 3.0
    X[:, 1] += (y == 8) * 3.0
    np.savez(tmp_path / "data.npz", x=X, y=y)
    header = ",".join([f"f{i}" for i in range(6)] + ["digit"])
    np.savetxt(tmp_path / "data.csv", np.c_[y, X], delimiter=",", header="digit," + header[:-6], comments="")
    tl.manual_seed(0)
    a = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))
    b = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    tl.save(a, tmp_path / "a.safetensors")
    tl.save(b, tmp_path / "b.npz")
    return tmp_path, X, y


def test_load_xy_npz_and_csv(files):
    d, X, y = files
    Xa, ya = load_xy(d / "data.npz")
    assert Xa.dtype == np.float32 and ya.dtype == np.int64
    np.testing.assert_array_equal(Xa, X)
    np.testing.assert_array_equal(ya, y)
    Xc, yc = load_xy(d / "data.csv", label="digit")             # a header name; here the first column
    np.testing.assert_allclose(Xc, X, rtol=1e-6)
    np.testing.assert_array_equal(yc, y)
    Xi, yi = load_xy(d / "data.csv", label=0)
    np.testing.assert_array_equal(yi, y)
    np.savetxt(d / "plain.csv", np.c_[X, y], delimiter=",")     # no header: the last column
    Xp, yp = load_xy(d / "plain.csv")
    np.testing.assert_array_equal(yp, y)
    assert Xp.shape == (45, 6)


@pytest.mark.parametrize("content,message", [
    ("1,2,0\n3,4\n", "line 2 has 2 columns, expected 3"),
    ("1,2,0\n3,x,1\n", "line 2: 'x' is not a number"),
    ("1,2,0.5\n3,4,1\n", "labels must be integers >= 0"),
    ("1,2,-1\n3,4,1\n", "labels must be integers >= 0"),
    ("1,nan,0\n3,4,1\n", "NaN or infinite"),
    ("a,b,c\n", "a header but no data rows"),
    ("", "no data rows"),
    ("5\n6\n", "at least 2 columns"),
])
def test_load_xy_rejects_bad_csv(tmp_path, content, message):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_xy(p)


def test_load_xy_rejects_bad_npz_and_other_files(tmp_path):
    np.savez(tmp_path / "noy.npz", x=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="no array 'y'"):
        load_xy(tmp_path / "noy.npz")
    np.savez(tmp_path / "len.npz", x=np.zeros((3, 2)), y=np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="3 examples but 4 labels"):
        load_xy(tmp_path / "len.npz")
    np.savez(tmp_path / "shape.npz", x=np.zeros((3, 2, 2)), y=np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="2-D array"):
        load_xy(tmp_path / "shape.npz")
    np.savez(tmp_path / "obj.npz", x=np.array([[1, 2]], dtype=object), y=np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="pickle"):                   # never unpickled
        load_xy(tmp_path / "obj.npz")
    np.savez(tmp_path / "ok.npz", x=np.zeros((3, 2)), y=np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="more than the 10 accepted"):
        load_xy(tmp_path / "ok.npz", max_bytes=10)
    (tmp_path / "zip.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match="not a valid .npz"):
        load_xy(tmp_path / "zip.npz")
    (tmp_path / "d.txt").write_text("1,2\n")
    with pytest.raises(ValueError, match="expected a .npz"):
        load_xy(tmp_path / "d.txt")
    with pytest.raises(FileNotFoundError):
        load_xy(tmp_path / "missing.csv")
    # a zip bomb's claim is refused before anything is inflated
    with zipfile.ZipFile(tmp_path / "big.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.npy", b"\0" * 200_000)
    with pytest.raises(ValueError, match="more than the 100,000 accepted"):
        load_xy(tmp_path / "big.npz", max_bytes=100_000)


def test_rank_prints_sources_and_layers(files, capsys):
    d, _, _ = files
    rc = main(["rank", str(d / "data.npz"), str(d / "a.safetensors"), str(d / "b.npz"),
               "--score", "logme,leep,hscore", "--json", str(d / "r.json")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "45 examples, 6 features, 3 classes" in out
    assert "sources ranked by logme" in out and "a.safetensors" in out and "b.npz" in out
    assert out.count("layers ranked by logme") == 2
    saved = json.loads((d / "r.json").read_text())
    assert set(saved["layers"]) == {"a.safetensors", "b.npz"}
    assert saved["sources"]["scores"] == ["logme", "leep", "hscore"]
    rc = main(["rank", str(d / "data.csv"), str(d / "a.safetensors"), "--label", "digit", "--no-layers",
               "--layer", "input"])
    out = capsys.readouterr().out
    assert rc == 0 and "layers ranked" not in out


def test_search_writes_the_model_and_the_report(files, capsys):
    d, X, y = files
    rc = main(["search", str(d / "data.npz"), str(d / "a.safetensors"), "--out", str(d / "m.safetensors"),
               "--strategies", "probe,finetune", "--max-epochs", "5", "--patience", "2", "--seed", "1"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "winner:" in out and "saved" in out
    assert tl.io.load_metadata(d / "m.safetensors")["tinytl.classes"] == "3,5,8"
    report = json.loads((d / "m.report.json").read_text())
    assert report["winner"] in ("probe", "finetune") and report["classes"] == [3, 5, 8]
    state = tl.load(d / "m.safetensors")
    assert state["2.weight"].shape == (3, 8)                     # a new head: 3 classes


@pytest.mark.parametrize("argv,message", [
    (["rank", "{d}/nothere.npz", "{d}/a.safetensors"], "no such file"),
    (["rank", "{d}/data.csv", "{d}/a.safetensors", "--label", "nope"], "no label column 'nope'"),
    (["rank", "{d}/data.npz", "{d}/a.safetensors", "--score", "bogus"], "unknown score 'bogus'"),
    (["search", "{d}/data.npz", "{d}/a.safetensors", "--out", "{d}/m.txt"], "expected a .safetensors or .npz"),
    (["search", "{d}/data.npz", "{d}/a.safetensors", "--out", "{d}/no/m.npz"], "does not exist"),
    (["search", "{d}/data.npz", "{d}/a.safetensors", "--out", "{d}/m.npz", "--strategies", "magic"],
     "unknown strategy 'magic'"),
    (["rank", "{d}/wide.npz", "{d}/a.safetensors"], "takes 6 inputs but the data has 7 features"),
])
def test_cli_errors_are_one_line(files, capsys, argv, message):
    d, _, _ = files
    np.savez(d / "wide.npz", x=np.zeros((4, 7)), y=np.array([0, 1, 0, 1]))
    rc = main([a.format(d=d) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and err.count("\n") == 1, err
