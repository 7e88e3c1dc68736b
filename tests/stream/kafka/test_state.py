"""The tables' value formats: the features table's packed inputs."""

from __future__ import annotations

import base64

import numpy as np

from stream.core.packing import pack_rows, unpack_inputs


def test_packed_rows_are_each_rows_base64_of_little_endian_float64() -> None:
    """What the features table keeps per transaction: exact, whatever the matrix's dtype and layout."""
    rng = np.random.default_rng(5)
    for shape in [(0, 19), (1, 19), (7, 19), (3, 1), (4, 3), (2, 0)]:
        matrix = np.asfortranarray(rng.standard_normal(shape) * 1e300)
        packed = pack_rows(matrix)
        assert packed == [base64.b64encode(np.asarray(row, dtype="<f8").tobytes()).decode() for row in matrix]
        assert [unpack_inputs(p) if p else [] for p in packed] == matrix.tolist()
    assert pack_rows(np.array([[1, 2]], dtype=np.float32)) == pack_rows(np.array([[1.0, 2.0]]))


def test_a_memory_stores_dict_is_what_its_table_reads_and_a_rocksdb_store_is_left_alone() -> None:
    import faust

    from stream.kafka.state import store_mapping

    app = faust.App("test-store-mapping", broker="kafka://localhost:1", store="memory://")
    table = app.Table("cards")
    fast = store_mapping(table.data)
    fast[b"card-1"] = {"n": 1}
    assert table.data[b"card-1"] == {"n": 1} and table.data.get(b"card-1") == {"n": 1} and b"card-1" in table.data
    del table.data[b"card-1"]
    assert b"card-1" not in fast and fast is table.data.data

    class RocksLike(dict):  # any other store (values encoded, a database per partition) is never bypassed
        def __init__(self) -> None:
            super().__init__()
            self.data: dict[bytes, bytes] = {}

    other = RocksLike()
    assert store_mapping(other) is other
