"""Fixtures of the tensor tests: a models directory of small ONNX models built here."""

from __future__ import annotations

from pathlib import Path

import pytest
from backends.tensor.onnx_builders import (
    write_classifier,
    write_linear,
    write_pair_sum,
    write_strings,
)


@pytest.fixture
def onnx_dir(tmp_path: Path) -> Path:
    """``linear``, ``colours`` (a classifier, its labels beside it), ``pair-sum`` and
    ``strings`` (which cannot be served)."""
    folder = tmp_path / "onnx"
    folder.mkdir()
    write_linear(folder / "linear.onnx")
    write_classifier(folder / "colours.onnx")
    write_pair_sum(folder / "pair-sum.onnx")
    write_strings(folder / "strings.onnx")
    (folder / "notes.txt").write_text("not a model")
    return folder
