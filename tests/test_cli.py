"""The ``tinytl`` command line: every user error is one line on stderr and exit status 2;
``inspect`` and ``transfer`` on checkpoints made here; ``python -m tinytl`` works."""
import os
import subprocess
import sys

import numpy as np
import pytest

import tinytl as tl
from tinytl import cli, nn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "error" in lines[0]
    assert "Traceback" not in err


def mlp(n_out, hidden=16, seed=0):
    tl.manual_seed(seed)
    return nn.Sequential(nn.Linear(40, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


@pytest.fixture
def ckpts(tmp_path):
    src, dst = mlp(5, seed=0), mlp(3, seed=1)
    a, b = tmp_path / "src.safetensors", tmp_path / "dst.safetensors"
    tl.save(src, a, metadata={"task": "digits 0-4"})
    tl.save(dst, b)
    return src, dst, a, b


# ------------------------------------------------------------ error paths ----

@pytest.mark.parametrize("argv", [
    ["frobnicate"],                                  # bad subcommand
    [],                                              # no subcommand
    ["demo", "--shots", "5,x"],                      # bad --shots
    ["demo", "--shots", "0"],
    ["demo", "--shots", "5,5"],
    ["demo", "--source-classes", "0-5"],             # overlaps the default target 5-9
    ["demo", "--source-classes", "0,1", "--target-classes", "1,2"],
    ["demo", "--target-classes", "a-b"],
    ["demo", "--seeds", "0"],
    ["demo", "--hidden", "-3"],
    ["demo", "--device", "tpu"],
    ["demo", "--data", "mnist-idx"],                 # no --path
    ["demo", "--no-such-option"],
    ["inspect"],                                     # missing argument
    ["transfer", "a", "b"],                          # missing --out
])
def test_usage_errors_exit_2_with_one_line(capsys, argv):
    rc, out, err = run(capsys, *argv)
    assert_one_line_error(rc, err)


def test_demo_shots_larger_than_available(capsys, tmp_path):
    rc, out, err = run(capsys, "demo", "--quiet", "--shots", "100000", "--out", str(tmp_path / "o"))
    assert_one_line_error(rc, err)
    assert "100000" in err and "training examples" in err
    assert not (tmp_path / "o").exists()


def test_demo_cuda_unavailable(capsys, tmp_path):
    if tl.cuda.is_available():
        pytest.skip("a GPU is available here")
    rc, out, err = run(capsys, "demo", "--device", "cuda", "--out", str(tmp_path / "o"))
    assert_one_line_error(rc, err)
    assert "CUDA" in err


def test_demo_missing_idx_folder(capsys, tmp_path):
    rc, out, err = run(capsys, "demo", "--data", "mnist-idx", "--path", str(tmp_path / "nowhere"), "--quiet",
                       "--out", str(tmp_path / "o"))
    assert_one_line_error(rc, err)
    assert "nowhere" in err


def test_inspect_missing_file(capsys, tmp_path):
    rc, out, err = run(capsys, "inspect", str(tmp_path / "nope.safetensors"))
    assert_one_line_error(rc, err)
    assert "nope.safetensors" in err


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all",
                                     b"\xff" * 8 + b"{}", (200).to_bytes(8, "little") + b"{\"a\": 1}"])
def test_inspect_corrupt_checkpoint(capsys, tmp_path, content):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(content)
    rc, out, err = run(capsys, "inspect", str(p))
    assert_one_line_error(rc, err)
    assert "bad.safetensors" in err


def test_inspect_truncated_checkpoint(capsys, ckpts, tmp_path):
    _, _, a, _ = ckpts
    p = tmp_path / "cut.safetensors"
    p.write_bytes(a.read_bytes()[:-10])
    rc, out, err = run(capsys, "inspect", str(p))
    assert_one_line_error(rc, err)


def test_transfer_missing_file(capsys, ckpts, tmp_path):
    _, _, a, _ = ckpts
    out_path = tmp_path / "out.safetensors"
    rc, out, err = run(capsys, "transfer", str(a), str(tmp_path / "nope.safetensors"), "--out", str(out_path))
    assert_one_line_error(rc, err)
    assert not out_path.exists()


def test_transfer_bad_rename(capsys, ckpts, tmp_path):
    _, _, a, b = ckpts
    rc, out, err = run(capsys, "transfer", str(a), str(b), "--out", str(tmp_path / "o.safetensors"),
                       "--rename", "no-equals-sign")
    assert_one_line_error(rc, err)
    assert "OLD=NEW" in err


def test_transfer_nothing_matches(capsys, ckpts, tmp_path):
    _, _, a, b = ckpts
    out_path = tmp_path / "o.safetensors"
    rc, out, err = run(capsys, "transfer", str(a), str(b), "--out", str(out_path), "--rename", "0.=enc.0.")
    assert_one_line_error(rc, err)
    assert "--rename" in err
    rc, out, err = run(capsys, "transfer", str(a), str(b), "--out", str(out_path), "--rename", "0.=enc.0.",
                       "--rename", "2.=enc.2.")
    assert_one_line_error(rc, err)
    assert not out_path.exists()


def test_transfer_strict_refuses_and_writes_nothing(capsys, ckpts, tmp_path):
    _, _, a, b = ckpts
    out_path = tmp_path / "o.safetensors"
    rc, out, err = run(capsys, "transfer", str(a), str(b), "--out", str(out_path), "--strict")
    assert_one_line_error(rc, err)
    assert "2.weight" in err and "--strict" in err
    assert not out_path.exists()


# ---------------------------------------------------------------- inspect ----

def test_inspect_lists_tensors_totals_and_metadata(capsys, ckpts):
    src, _, a, _ = ckpts
    rc, out, err = run(capsys, "inspect", str(a))
    assert rc == 0, err
    assert err == ""
    for name, p in src.named_parameters():
        line = next(l for l in out.splitlines() if l.startswith(name + " "))
        assert "float32" in line
        assert f"{p.data.size:,}" in line
    assert "(16, 40)" in out and "(5,)" in out
    total = sum(p.data.size for p in src.parameters())
    assert f"total: {total:,} parameters" in out
    assert "task" in out and "digits 0-4" in out


def test_inspect_reads_only_the_header(capsys, ckpts, tmp_path):
    """Corrupt the tensor data (not the header): load refuses (checksum), inspect still describes it."""
    _, _, a, _ = ckpts
    raw = bytearray(a.read_bytes())
    raw[-1] ^= 0xFF
    p = tmp_path / "flipped.safetensors"
    p.write_bytes(bytes(raw))
    with pytest.raises(ValueError):
        tl.load(p)
    rc, out, err = run(capsys, "inspect", str(p))
    assert rc == 0, err
    assert "0.weight" in out


def test_inspect_npz_with_integer_tensor(capsys, tmp_path):
    p = tmp_path / "c.npz"
    tl.save({"step": np.arange(3), "w": np.zeros((2, 3), np.float64)}, p)
    rc, out, err = run(capsys, "inspect", str(p))
    assert rc == 0, err
    assert "int64" in out and "float64" in out and "(2, 3)" in out
    assert "total: 9 parameters" in out


# --------------------------------------------------------------- transfer ----

def test_transfer_copies_matching_tensors(capsys, ckpts, tmp_path):
    src, dst, a, b = ckpts
    out_path = tmp_path / "out.safetensors"
    rc, out, err = run(capsys, "transfer", str(a), str(b), "--out", str(out_path))
    assert rc == 0, err
    assert "2 copied" in out and "skipped shape" in out and "2.weight" in out
    assert str(out_path) in out
    got = tl.load(out_path)
    s, d = src.state_dict(), dst.state_dict()
    assert set(got) == set(d)
    np.testing.assert_array_equal(got["0.weight"], s["0.weight"])      # backbone from SRC
    np.testing.assert_array_equal(got["0.bias"], s["0.bias"])
    np.testing.assert_array_equal(got["2.weight"], d["2.weight"])      # head kept from DST
    assert got["2.weight"].shape == (3, 16)
    assert "tinytl.transfer" in tl.io.load_metadata(out_path)
    # the result loads into the destination architecture
    mlp(3).load_state_dict(got)


def test_transfer_with_rename_and_npz(capsys, tmp_path):
    src = mlp(5, seed=3)
    enc = {f"encoder.{k}": v for k, v in src.state_dict().items() if k.startswith("0.")}
    a, b = tmp_path / "enc.npz", tmp_path / "dst.safetensors"
    tl.save(enc, a)
    tl.save(mlp(3, seed=4), b)
    out_path = tmp_path / "out.npz"
    rc, out, err = run(capsys, "transfer", str(a), str(b), "--out", str(out_path), "--rename", "encoder.=")
    assert rc == 0, err
    got = tl.load(out_path)
    np.testing.assert_array_equal(got["0.weight"], src.state_dict()["0.weight"])
    assert "missing" in out


def test_transfer_strict_passes_when_everything_fits(capsys, tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    tl.save(mlp(5, seed=0), a)
    tl.save(mlp(5, seed=1), b)
    rc, out, err = run(capsys, "transfer", str(a), str(b), "--out", str(tmp_path / "o.safetensors"), "--strict")
    assert rc == 0, err
    assert "4 copied" in out


def test_transfer_keeps_integer_tensors_of_the_destination(capsys, tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    tl.save(mlp(5, seed=0), a)
    tl.save({**mlp(5, seed=1).state_dict(), "step": np.array([7])}, b)
    out_path = tmp_path / "o.safetensors"
    rc, out, err = run(capsys, "transfer", str(a), str(b), "--out", str(out_path))
    assert rc == 0, err
    assert tl.load(out_path)["step"].tolist() == [7]


def test_transfer_handles_float16_tensors(capsys, tmp_path):
    """float16 tensors (which tinytl.io reads and writes) are transferred like float32/64 ones,
    cast to DST's dtype, not left out; a value too large for a float16 destination is skipped
    with a reason (and --strict refuses it), never turned into inf."""
    s = mlp(5, seed=0).state_dict()
    d = mlp(5, seed=1).state_dict()
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    tl.save({"0.weight": s["0.weight"].astype(np.float16), "0.bias": s["0.bias"],      # f16 into f32
             "2.weight": s["2.weight"], "2.bias": s["2.bias"].astype(np.float64)}, a)    # f32, f64 into f16
    tl.save({"0.weight": d["0.weight"], "0.bias": d["0.bias"].astype(np.float16),
             "2.weight": d["2.weight"].astype(np.float16), "2.bias": d["2.bias"].astype(np.float16)}, b)
    out_path = tmp_path / "o.safetensors"
    rc, out, err = run(capsys, "transfer", str(a), str(b), "--out", str(out_path), "--strict")
    assert rc == 0, err
    assert "4 copied" in out and "0 missing" in out and "0 unexpected" in out, out
    got = tl.load(out_path)
    assert {k: v.dtype for k, v in got.items()} == {"0.weight": np.float32, "0.bias": np.float16,
                                                      "2.weight": np.float16, "2.bias": np.float16}
    np.testing.assert_array_equal(got["0.weight"], s["0.weight"].astype(np.float16).astype(np.float32))
    for k in ("0.bias", "2.weight", "2.bias"):
        np.testing.assert_array_equal(got[k], s[k].astype(np.float16))

    big = dict(tl.load(a), **{"2.weight": np.full_like(s["2.weight"], 1e5)})
    tl.save(big, a)
    rc, out, err = run(capsys, "transfer", str(a), str(b), "--out", str(out_path))
    assert rc == 0, err
    assert "skipped dtype  2.weight" in out and "overflow float16" in out, out
    got = tl.load(out_path)
    assert np.isfinite(got["2.weight"]).all()
    np.testing.assert_array_equal(got["2.weight"], d["2.weight"].astype(np.float16))   # kept from DST
    strict_out = tmp_path / "strict.safetensors"
    rc, out, err = run(capsys, "transfer", str(a), str(b), "--out", str(strict_out), "--strict")
    assert_one_line_error(rc, err)
    assert "overflow float16" in err and not strict_out.exists()


# ------------------------------------------------------- bench and -m ----

def test_bench_outside_a_checkout(capsys, monkeypatch, tmp_path):
    fake = tmp_path / "site-packages" / "tinytl" / "cli.py"
    monkeypatch.setattr(cli, "__file__", str(fake))
    monkeypatch.chdir(tmp_path)             # and not run from a checkout either
    rc, out, err = run(capsys, "bench", "--quick")
    assert_one_line_error(rc, err)
    assert "source checkout" in err


def test_bench_list_through_the_cli():
    if not os.path.isfile(os.path.join(REPO, "bench", "run.py")):
        pytest.skip("bench/run.py is not in this checkout")
    r = subprocess.run([sys.executable, "-m", "tinytl", "bench", "--list"], capture_output=True, text=True,
                       timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "1-mlp-b32" in r.stdout


def test_python_m_tinytl_help(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tinytl", "--help"], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for cmd in ("demo", "bench", "inspect", "transfer"):
        assert cmd in r.stdout
    r = subprocess.run([sys.executable, "-m", "tinytl", "inspect", str(tmp_path / "x.safetensors")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_help_and_version_return_0(capsys):
    rc, out, err = run(capsys, "--version")
    assert rc == 0 and tl.__version__ in out
    rc, out, err = run(capsys, "demo", "--help")
    assert rc == 0 and "--shots" in out and "--quick" in out
