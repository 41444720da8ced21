"""The same seed writes the same dataset, byte for byte, as the files committed in tests/golden/.

A refactor must not change a single byte of these; a change that means to (new metadata, say)
regenerates them with `python -m tests.golden.make` and says why in its commit.
"""

from __future__ import annotations

import difflib

import pytest

from tests.golden.make import HERE, RUNS, produce


@pytest.mark.parametrize("name", list(RUNS))
def test_dataset_is_byte_identical_to_the_golden_file(name, tmp_path):
    expected = (HERE / f"{name}.jsonl").read_text()
    actual = produce(name, tmp_path)
    if actual != expected:
        diff = difflib.unified_diff(expected.splitlines(), actual.splitlines(), "golden", "now", lineterm="", n=0)
        pytest.fail(f"{name}: the dataset changed:\n" + "\n".join(line[:300] for line in list(diff)[:12]))
