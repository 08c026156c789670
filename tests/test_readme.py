"""The README's transfer example runs as written (it is the first code a user copies)."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_transfer_example_runs(capsys):
    pytest.importorskip("mnist1d")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python example"
    exec(compile(blocks[0], str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "6 copied" in out and "target accuracy from 100 labels" in out
