"""``tinytl explain BEFORE AFTER --data FILE``: the MLP rebuilt from the checkpoints, what it
prints and writes (checked against tl.explain's own functions), and one-line errors for
every bad input."""
import json
import zipfile

import numpy as np
import pytest

import tinytl as tl
from tinytl import cli, nn
from tinytl.explain import layer_similarity, weight_drift
from tinytl.explain.command import mlp_from_state, read_data

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *fragments):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tinytl: error:") and "Traceback" not in err
    for f in fragments:
        assert f in lines[0], lines[0]


def mlp(n_out, seed, hidden=16):
    tl.manual_seed(seed)
    return nn.Sequential(nn.Linear(40, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_out))


@pytest.fixture
def files(tmp_path):
    before = mlp(5, 0)
    after = mlp(3, 1)
    after.load_state_dict({k: v * 1.1 for k, v in before.state_dict().items() if not k.startswith("4.")}
                          | {k: v for k, v in after.state_dict().items() if k.startswith("4.")})
    a, b = tmp_path / "before.safetensors", tmp_path / "after.npz"
    tl.save(before, a)
    tl.save(after, b)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 40)).astype(np.float32)
    y = rng.integers(0, 3, size=60)
    data = tmp_path / "data.npz"
    np.savez(data, x=x, y=y)
    return before, after, a, b, data, x, y


def test_explain_prints_and_writes_every_figure(capsys, files, tmp_path):
    before, after, a, b, data, x, y = files
    out = tmp_path / "out"
    rc, text, err = run(capsys, "explain", a, b, "--data", data, "--out", out, "--examples", 3, "--steps", 16)
    assert rc == 0, err
    drift, sim = weight_drift(before, after), layer_similarity(before, after, x)
    assert str(drift) in text and str(sim) in text
    assert "replaced (5x16 -> 3x16)" in text
    assert "linear probe after each layer (before" in text and "(after" in text
    r = json.loads((out / "explain.json").read_text())
    np.testing.assert_allclose(r["cka"]["matrix"], sim.matrix, rtol=1e-12)
    assert r["drift"]["replaced"] == ["4.weight", "4.bias"]
    assert r["drift"]["layers"]["0"]["relative"] == pytest.approx(0.1, rel=1e-5)
    assert r["probe"]["before"]["layers"] == ["input", "0", "1", "2", "3", "4"]
    att = r["attributions"]
    assert att["rows"] == [0, 1, 2] and len(att["after"]["attributions"]) == 3
    want = tl.explain.integrated_gradients(after, x[:3], att["after"]["target"], steps=16)
    np.testing.assert_allclose(att["after"]["attributions"], want, rtol=1e-5, atol=1e-7)
    pytest.importorskip("matplotlib")
    for name in ("cka.png", "drift.png", "probe.png", "attributions.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
        assert r["figures"][name] is True


def test_explain_without_labels_skips_the_probes(capsys, files, tmp_path):
    before, after, a, b, data, x, y = files
    np.savez(tmp_path / "x_only.npz", x=x)
    rc, text, err = run(capsys, "explain", a, b, "--data", tmp_path / "x_only.npz", "--out", tmp_path / "o")
    assert rc == 0, err
    assert "probe" not in text
    r = json.loads((tmp_path / "o" / "explain.json").read_text())
    assert "probe" not in r and "probe.png" not in r["figures"]


def test_mlp_from_state_rebuilds_the_network():
    m = mlp(4, 2)
    rebuilt = mlp_from_state(m.state_dict())
    assert [type(layer).__name__ for layer in rebuilt] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    xin = np.random.default_rng(0).normal(size=(3, 40)).astype(np.float32)
    with tl.no_grad():
        np.testing.assert_array_equal(rebuilt(tl.tensor(xin)).numpy(), m(tl.tensor(xin)).numpy())
    one = nn.Sequential(nn.Linear(40, 2, bias=False))
    assert mlp_from_state(one.state_dict())[0].bias is None


@pytest.mark.parametrize("state, fragment", [
    ({"encoder.weight": np.ones((2, 3), np.float32)}, "tensor 'encoder.weight' does not fit an MLP"),
    ({"0.weight": np.ones((2, 3), np.float32), "1.weight": np.ones((2, 2), np.float32)}, "numbered 0, 2, 4"),
    ({"0.weight": np.ones((2, 3), np.float32), "2.weight": np.ones((2, 5), np.float32)}, "takes 5 inputs"),
    ({"0.bias": np.ones(2, np.float32)}, "has a bias but no '0.weight'"),
    ({"0.weight": np.ones((2, 3), np.float32), "0.bias": np.ones(3, np.float32)}, "'0.bias' must have shape (2,)"),
    ({"0.weight": np.ones((2, 3, 1), np.float32)}, "2-D floating array"),
    ({}, "holds no tensor"),
])
def test_mlp_from_state_refuses_other_layouts(state, fragment):
    with pytest.raises(ValueError, match="ckpt: ") as e:
        mlp_from_state(state, "ckpt")
    assert fragment in str(e.value)


def test_explain_errors(capsys, files, tmp_path):
    before, after, a, b, data, x, y = files
    base = ["explain", a, b, "--out", tmp_path / "o", "--data"]
    rc, _, err = run(capsys, *base, tmp_path / "missing.npz")
    assert_one_line_error(rc, err, "no such file")
    rc, _, err = run(capsys, "explain", a, tmp_path / "nope.safetensors", "--data", data)
    assert_one_line_error(rc, err, "no such file")
    (tmp_path / "d.csv").write_text("1,2\n")
    rc, _, err = run(capsys, *base, tmp_path / "d.csv")
    assert_one_line_error(rc, err, "must be a .npz file")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    rc, _, err = run(capsys, *base, tmp_path / "bad.npz")
    assert_one_line_error(rc, err, "not a valid .npz archive")
    cases = {
        "nox": dict(z=x),
        "narrow": dict(x=x[:, :10]),
        "few": dict(x=x[:3]),
        "onedim": dict(x=x[:, 0]),
        "nan": dict(x=np.full_like(x, np.nan)),
        "ylen": dict(x=x, y=y[:5]),
        "yfloat": dict(x=x, y=y.astype(np.float32) + 0.5),
        "yneg": dict(x=x, y=-np.ones(60, np.int64)),
        "obj": dict(x=np.array([object()] * 4, dtype=object)),
    }
    want = {"nox": "no array 'x' (the file holds ['z'])", "narrow": "has 10 features per example, the networks take 40",
            "few": "at least 4 examples", "onedim": "has 1 features per example, the networks take 40",
            "nan": "NaN or infinite", "ylen": "60 examples but 5 labels", "yfloat": "labels must be integers >= 0",
            "yneg": "labels must be integers >= 0", "obj": "holds Python objects"}
    for name, arrays in cases.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, **arrays)
        rc, _, err = run(capsys, *base, path)
        assert_one_line_error(rc, err, want[name], str(path))
    rc, _, err = run(capsys, *base, data, "--examples", "0")
    assert_one_line_error(rc, err, "--examples must be at least 1")
    rc, _, err = run(capsys, *base, data, "--steps", "0")
    assert_one_line_error(rc, err, "--steps must be at least 1")
    other = tmp_path / "other.safetensors"
    tl.save(nn.Sequential(nn.Linear(30, 4)), other)
    rc, _, err = run(capsys, "explain", a, other, "--data", data)
    assert_one_line_error(rc, err, "takes 40 inputs but", "takes 30")
    rc, _, err = run(capsys, "explain", a, b)
    assert rc == 2 and "--data" in err


def test_read_data_refuses_a_header_claiming_more_than_the_file(tmp_path):
    """A .npy header that claims a huge array is refused before anything is allocated."""
    path = tmp_path / "huge.npz"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((2, 2), np.float32))
    header["shape"] = (10 ** 6, 10 ** 4)
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    buf.write(b"\0" * 16)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", buf.getvalue())
    with pytest.raises(ValueError, match="needs 40000000000 bytes, the member holds 16"):
        read_data(path)
