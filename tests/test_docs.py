"""docs/artifacts.md must match the contract in code."""

from pathlib import Path

from handcli.artifacts import SPEC

DOC = Path(__file__).resolve().parents[1] / "docs" / "artifacts.md"


def test_every_key_is_documented():
    text = DOC.read_text()
    for key in SPEC:
        assert f"| `{key}` |" in text, key


def test_no_undocumented_rows():
    rows = [line.split("|")[1].strip().strip("`") for line in DOC.read_text().splitlines()
            if line.startswith("| `")]
    assert set(rows) == set(SPEC)
