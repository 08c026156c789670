"""The transfer-learning demo, end to end in --quick mode (a few seconds)."""
import contextlib
import dataclasses
import gzip
import io
import json
import os
import struct
import sys

import numpy as np
import pytest

from tinytl import cli, demo

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One `tinytl demo --quick` run, shared by the tests below (capsys is per test: redirect by hand)."""
    pytest.importorskip("mnist1d")
    out = tmp_path_factory.mktemp("demo") / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = cli.main(["demo", "--quick", "--out", str(out)])
    return rc, stdout.getvalue(), stderr.getvalue(), out


QUICK = demo.DemoConfig.quick_config()          # what `tinytl demo --quick` runs


def _results(folder):
    with open(folder / "results.json") as f:
        return json.load(f, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_quick_demo_prints_the_table(quick_run):
    """One column per k of the quick config, one row per method, each cell the JSON's mean ± std."""
    rc, out, err, folder = quick_run
    assert rc == 0, err
    assert err == ""          # no progress bars when stderr is not a terminal
    r = _results(folder)
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("labels/class"))
    assert lines[head].split()[1:] == [str(k) for k in QUICK.shots]
    rows = lines[head + 2:head + 2 + len(demo.METHODS)]
    for (m, label), row in zip(demo.METHODS.items(), rows):
        assert row.startswith(label + " "), (label, row)
        cells = [c.strip() for c in row[len(label):].split("  ") if c.strip()]
        assert cells == [f"{100 * r['summary'][m][str(k)]['mean']:.1f} ± {100 * r['summary'][m][str(k)]['std']:.1f}"
                         for k in QUICK.shots], (label, row)
    assert f"results: {folder / 'results.json'}" in out


def test_quick_demo_json_has_every_method_shot_and_seed(quick_run):
    _, _, _, folder = quick_run
    r = _results(folder)
    assert r["config"] == json.loads(json.dumps(dataclasses.asdict(QUICK)))    # the quick config, as run
    assert r["config"]["quick"] is True
    assert r["methods"] == demo.METHODS
    assert r["shots"] == QUICK.shots == [5, 10, 20, 50, 100]
    assert r["seeds"] == list(range(QUICK.seeds))
    n_test = r["data"]["target_test"]
    assert n_test > 0
    assert set(r["accuracy"]) == set(r["summary"]) == set(demo.METHODS)
    for m in demo.METHODS:
        assert set(r["accuracy"][m]) == set(r["summary"][m]) == {str(k) for k in QUICK.shots}, m
        for k in QUICK.shots:
            accs = r["accuracy"][m][str(k)]
            assert len(accs) == QUICK.seeds and all(0.0 <= a <= 1.0 for a in accs), (m, k, accs)
            for a in accs:                      # a fraction of the target test examples
                assert a * n_test == pytest.approx(round(a * n_test), abs=1e-6), (m, k, a)
            assert r["summary"][m][str(k)]["mean"] == pytest.approx(np.mean(accs)), (m, k)
            assert r["summary"][m][str(k)]["std"] == pytest.approx(np.std(accs, ddof=1)), (m, k)
    assert len(r["pretrain"]) == QUICK.seeds
    assert all(0.2 < p["source_test_accuracy"] <= 1.0 for p in r["pretrain"])   # above chance (5 classes)
    assert r["backend"]["cpu"] in ("cpp", "numpy")
    assert r["timings"]["total_s"] > 0 and set(r["timings"]["methods_s"]) == set(r["methods"])


def test_quick_demo_transfer_beats_scratch_at_every_k(quick_run):
    """The point of the demo, checked even in the reduced run: pretrained features help, at every k
    the quick run uses (measured: the weakest transfer method 10-16 points above from scratch at each k)."""
    _, _, _, folder = quick_run
    r = _results(folder)
    for k in map(str, QUICK.shots):
        scratch = r["summary"]["scratch"][k]["mean"]
        for m in ("probe", "finetune", "lp_ft", "l2sp"):
            assert r["summary"][m][k]["mean"] > scratch + 0.05, (k, m, r["summary"][m][k], scratch)


def test_quick_demo_png(quick_run):
    _, out, _, folder = quick_run
    png = folder / "results.png"
    if not _has_matplotlib():
        assert not png.exists() and "skipped" in out
        return
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert "results.png" in out


def test_demo_without_matplotlib_says_the_plot_was_skipped(capsys, monkeypatch, tmp_path):
    pytest.importorskip("mnist1d")
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)       # `import matplotlib...` now raises ImportError
    rc = cli.main(["demo", "--quick", "--quiet", "--seeds", "1", "--shots", "5", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "plot" in out and "skipped" in out and "pip install 'tinytl[demo]'" in out
    assert (tmp_path / "results.json").is_file()
    assert not (tmp_path / "results.png").exists()


def test_demo_checks_out_before_training(capsys, monkeypatch, tmp_path):
    """A --out that cannot hold the results fails at once, in one line naming --out, before any
    training (run_demo is not called); a writable --out passes the check and is not created by it."""
    def training(*args, **kwargs):
        raise ValueError("training started")
    monkeypatch.setattr(demo.report, "run_report", training)
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    json_dir = tmp_path / "taken"
    (json_dir / "results.json").mkdir(parents=True)
    for out, why in [(a_file, "a file is in the way"), (a_file / "sub", "is a file"),
                     (json_dir, "results.json is a folder")]:
        rc = cli.main(["demo", "--quick", "--quiet", "--out", str(out)])
        stdout, err = capsys.readouterr()
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert f"--out {out}" in err and why in err, err
        assert "training started" not in err and stdout == ""       # not even the banner
    assert a_file.read_text() == "not a folder"
    fresh = tmp_path / "new" / "folder"
    rc = cli.main(["demo", "--quick", "--quiet", "--out", str(fresh)])
    assert rc == 2 and "training started" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_demo_refuses_an_out_folder_it_cannot_write(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(demo.report, "run_report", lambda *a, **k: pytest.fail("training started"))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        try:
            (locked / "probe").touch()
        except PermissionError:
            pass
        else:
            pytest.skip("this user writes into read-only folders (root, or no POSIX permissions)")
        for out in (locked, locked / "sub"):
            rc = cli.main(["demo", "--quick", "--quiet", "--out", str(out)])
            err = capsys.readouterr().err
            assert rc == 2 and f"--out {out}: cannot write in {locked}" in err, err
    finally:
        locked.chmod(0o700)


def test_run_demo_accepts_a_dict_and_rejects_bad_configs():
    pytest.importorskip("mnist1d")
    r = demo.run_demo(dict(seeds=1, shots=[5], epochs=2, target_steps=5, hidden=8, quick=True))
    assert r["shots"] == [5] and len(r["accuracy"]["l2sp"]["5"]) == 1
    with pytest.raises(ValueError, match="overlap"):
        demo.run_demo(dict(source_classes=[0, 1, 2], target_classes=[2, 3]))
    with pytest.raises(ValueError, match="unknown config"):
        demo.run_demo(dict(sedes=3))
    with pytest.raises(ValueError, match="labels per class"):
        demo.run_demo(dict(shots=[10**6], seeds=1, epochs=1))
    with pytest.raises(ValueError, match="do not occur"):
        demo.run_demo(dict(source_classes=[0, 1], target_classes=[10, 11], shots=[1], epochs=1))


def test_parse_classes_and_shots():
    assert demo.parse_classes("0-4") == [0, 1, 2, 3, 4]
    assert demo.parse_classes("0,2, 7") == [0, 2, 7]
    assert demo.parse_classes("0-2,7") == [0, 1, 2, 7]
    assert demo.parse_shots("20,5,10") == [5, 10, 20]
    for bad in ("", "4-1", "x", "1,1", "0-3,2"):
        with pytest.raises(ValueError):
            demo.parse_classes(bad)
    for bad in ("", "0", "-5", "a", "5,5"):
        with pytest.raises(ValueError):
            demo.parse_shots(bad)


def _write_idx(path, array):
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def test_demo_on_idx_files(capsys, tmp_path):
    """--data mnist-idx reads MNIST-format files (here: tiny synthetic 6x6 "images", 4 classes)."""
    rng = np.random.default_rng(0)
    protos = rng.integers(0, 256, size=(4, 6, 6))
    for kind, n in (("train", 120), ("t10k", 40)):
        y = np.arange(n) % 4
        x = np.clip(protos[y] + rng.normal(0, 30, size=(n, 6, 6)), 0, 255)
        _write_idx(tmp_path / f"{kind}-images-idx3-ubyte.gz", x)
        _write_idx(tmp_path / f"{kind}-labels-idx1-ubyte.gz", y)
    out = tmp_path / "out"
    rc = cli.main(["demo", "--data", "mnist-idx", "--path", str(tmp_path), "--source-classes", "0,1",
                   "--target-classes", "2-3", "--shots", "2,5", "--seeds", "2", "--hidden", "8", "--steps", "10",
                   "--quick", "--quiet", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    r = json.loads((out / "results.json").read_text())
    assert r["data"]["input_dim"] == 36 and r["shots"] == [2, 5]
    rc = cli.main(["demo", "--data", "mnist-idx", "--path", str(tmp_path), "--source-classes", "0,1",
                   "--target-classes", "2-3", "--shots", "40", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "only 30" in err


def test_progress_bars_on_a_terminal(tmp_path):
    """On a terminal, one tqdm bar per phase on stderr (rate and time left); --quiet turns them off."""
    pytest.importorskip("tqdm")
    pytest.importorskip("mnist1d")
    pty = pytest.importorskip("pty")   # noqa: F841  (POSIX only)
    import os
    import subprocess

    def stderr_on_a_pty(*extra):
        master, slave = os.openpty()
        argv = [sys.executable, "-m", "tinytl", "demo", "--quick", "--seeds", "1", "--shots", "5",
                "--out", str(tmp_path), *extra]
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=slave, cwd=tmp_path)   # the installed tinytl
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:            # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        os.close(master)
        assert p.wait(timeout=120) == 0
        return b"".join(chunks).decode("utf-8", "replace")

    err = stderr_on_a_pty()
    for phase in ["pretrain"] + list(demo.METHODS.values()):
        assert phase in err, err[-2000:]
    assert "100%" in err and "epoch/s" in err
    assert stderr_on_a_pty("--quiet").strip() == ""


def test_demo_on_the_gpu_gives_the_cpu_results(device):
    """The whole demo (pretraining, the five methods, evaluation) on each device, small:
    the accuracies agree (float32 GEMMs differ in the last bits between devices, which
    may move a prediction on the boundary: within 1.5 points, at most ~15 of 972)."""
    pytest.importorskip("mnist1d")
    if device == "cpu":
        pytest.skip("compares a GPU with the CPU")
    cfg = dict(seeds=1, epochs=2, target_steps=30, shots=[5, 20])
    cpu = demo.run_demo(demo.DemoConfig.quick_config(**cfg))
    got = demo.run_demo(demo.DemoConfig.quick_config(device=device, **cfg))
    assert got["config"]["device"] == device
    for method, by_k in cpu["accuracy"].items():
        for k, accs in by_k.items():
            np.testing.assert_allclose(got["accuracy"][method][k], accs, atol=0.015, err_msg=f"{method} k={k}")


def test_quick_demo_writes_the_report(quick_run):
    """report.md has a heading per section with its table and figure; report.json holds each section's results."""
    _, out, _, folder = quick_run
    md = (folder / "report.md").read_text()
    rep = json.loads((folder / "report.json").read_text())
    assert list(rep["sections"]) == list(demo.sections())          # every section, in report order
    for name, title in rep["titles"].items():
        assert f"## {title}" in md and f"section `{name}`" in md
    assert rep["sections"]["fewshot"]["summary"] == _results(folder)["summary"]
    assert "| labels/class |" in md
    if _has_matplotlib():
        assert "](results.png)" in md
    assert f"report:  {folder / 'report.md'}" in out


def test_demo_only_runs_the_named_sections_and_refuses_unknown_ones(capsys, monkeypatch, tmp_path):
    pytest.importorskip("mnist1d")
    ran = []
    real = demo.report.sections

    def spy():
        every = real()
        return {n: dataclasses.replace(s, run=lambda ctx, s=s: (ran.append(s.name), s.run(ctx))[1])
                for n, s in every.items()}
    monkeypatch.setattr(demo.report, "sections", spy)
    rc = cli.main(["demo", "--quick", "--quiet", "--seeds", "1", "--shots", "5", "--only", "fewshot",
                   "--out", str(tmp_path)])
    assert rc == 0 and ran == ["fewshot"]
    capsys.readouterr()
    rc = cli.main(["demo", "--quick", "--quiet", "--only", "nosuch", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "--only: unknown section(s) ['nosuch']" in err and "fewshot" in err
    assert not (tmp_path / "x").exists()


def test_context_train_target_gives_the_models_the_fewshot_section_scores():
    """Sections that need a trained target model (explain, security, ...) get the very model the
    few-shot table scored: same seeds, same data, same accuracy."""
    pytest.importorskip("mnist1d")
    cfg = demo.DemoConfig.quick_config(seeds=1, shots=[5], target_steps=40, epochs=3)
    r = demo.run_demo(cfg)
    ctx = demo.DemoContext(demo.fewshot.as_config(cfg))
    t = ctx.tasks()
    for m in demo.METHODS:
        model = ctx.train_target(m, 0, 5)
        assert ctx.train_target(m, 0, 5) is model                     # cached
        assert demo.fewshot._accuracy(model, t["xT_test"], t["yT_test"]) == r["accuracy"][m]["5"][0], m
    with pytest.raises(ValueError, match="train_target: method must be one of"):
        ctx.train_target("nosuch", 0, 5)
