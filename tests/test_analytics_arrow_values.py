"""Arrow columns to the Python values the result functions take: timestamps through numpy
(nulls, sliced arrays, several chunks, each unit) give what `to_pylist` gives, and reading
them does not import pandas (pyarrow's own conversions do: ~0.45 s of a cold scorecard)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from traction.analytics.service import _values

moments = st.one_of(st.none(), st.datetimes(datetime(1970, 1, 1), datetime(2200, 1, 1)))


@pytest.mark.parametrize("unit", ["s", "ms", "us"])
@given(chunks=st.lists(st.lists(moments, max_size=20), max_size=4), cut=st.integers(0, 5))
def test_timestamps_read_through_numpy_equal_to_pylist(
    unit: str, chunks: list[list[datetime | None]], cut: int
) -> None:
    typ = pa.timestamp(unit)
    arrays = [pa.array(c, typ).slice(min(cut, len(c))) for c in chunks]  # offsets too
    col = pa.chunked_array(arrays, typ)
    assert list(_values(col)) == col.to_pylist()


def test_reading_timestamps_does_not_import_pandas() -> None:
    code = (  # the column as the analytics get one: from DuckDB
        "import sys, duckdb\n"
        "from traction.analytics.service import _values\n"
        "col = duckdb.sql(\"SELECT * FROM (VALUES (TIMESTAMP '2026-01-01 10:00'), (NULL)) t(ts)\")"
        ".to_arrow_table().column(0)\n"
        "before = 'pandas' in sys.modules\n"
        "print(list(_values(col)), before, 'pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["False", "False"], out.stdout
    assert "datetime.datetime(2026, 1, 1, 10, 0), None]" in out.stdout
