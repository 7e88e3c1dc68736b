"""The tables' value formats: the features table's packed inputs."""

from __future__ import annotations

import base64

import numpy as np

from stream.state import pack_rows, unpack_inputs


def test_packed_rows_are_each_rows_base64_of_little_endian_float64() -> None:
    """What the features table keeps per transaction: exact, whatever the matrix's dtype and layout."""
    rng = np.random.default_rng(5)
    for shape in [(0, 19), (1, 19), (7, 19), (3, 1), (4, 3), (2, 0)]:
        matrix = np.asfortranarray(rng.standard_normal(shape) * 1e300)
        packed = pack_rows(matrix)
        assert packed == [base64.b64encode(np.asarray(row, dtype="<f8").tobytes()).decode() for row in matrix]
        assert [unpack_inputs(p) if p else [] for p in packed] == matrix.tolist()
    assert pack_rows(np.array([[1, 2]], dtype=np.float32)) == pack_rows(np.array([[1.0, 2.0]]))
