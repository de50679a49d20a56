#!/usr/bin/env python3
"""Writes Parquet files with pyarrow for the self-check of read_parquet.py (tests/sync.rs,
`parquet_readers_agree_on_every_type`): a file in the part files' contract with every type and
its edge values, and one whose types stray from the contract.

    parquet_sample.py OUT_DIR
"""

import datetime
import os
import sys
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq


def typed(out):
    nan, inf = float("nan"), float("inf")
    columns = {
        "i": (pa.int64(), [1, None, -9223372036854775808, 9223372036854775807, 0]),
        "f": (pa.float64(), [0.1, nan, inf, -inf, -0.0]),
        "g": (pa.float32(), [0.1, None, -inf, 3.4028234663852886e38, 1e-45]),
        "b": (pa.bool_(), [True, False, None, True, False]),
        "d": (
            pa.decimal128(19, 4),
            [Decimal("1.5"), None, Decimal("-123456789012345.1234"), Decimal("0"), Decimal("-0.0001")],
        ),
        "d38": (
            pa.decimal128(38, 10),
            [Decimal("-1" + "2" * 27 + ".0123456789"), Decimal("0.5"), None, Decimal(10) ** 27, Decimal(0)],
        ),
        "dt": (
            pa.date32(),
            [datetime.date(1840, 12, 31), None, datetime.date(9999, 12, 31), datetime.date(1970, 1, 1), datetime.date(1, 1, 1)],
        ),
        "ts": (
            pa.timestamp("us"),
            [
                datetime.datetime(9999, 12, 31, 23, 59, 59, 999999),
                None,
                datetime.datetime(1840, 12, 31),
                datetime.datetime(1969, 12, 31, 23, 59, 59, 500000),
                datetime.datetime(2024, 2, 29, 12, 0, 0, 120),
            ],
        ),
        "tz": (
            pa.timestamp("us", tz="UTC"),
            [
                datetime.datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=datetime.timezone.utc),
                None,
                datetime.datetime(1, 1, 1, tzinfo=datetime.timezone.utc),
                datetime.datetime(1840, 12, 31, 23, 59, 59, 999999, tzinfo=datetime.timezone.utc),
                datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc),
            ],
        ),
        "tm": (pa.time64("ns"), [123456789012, None, 0, 86399999999999, 1000]),
        "s": (pa.large_string(), ["a", "", None, "Zoë 😀\r\n\"q\",", "null"]),
        "bin": (pa.large_binary(), [b"\x00\xff", b"", None, b"\xde\xad\xbe\xef", b"\x00"]),
    }
    table = pa.table({name: pa.array(values, t) for name, (t, values) in columns.items()})
    # Two row groups: a reader must read them all, in order.
    pq.write_table(table, os.path.join(out, "typed.parquet"), compression="zstd", row_group_size=3)


def stray(out):
    table = pa.table(
        {
            "ms": pa.array([1], pa.timestamp("ms")),
            "zone": pa.array([1], pa.timestamp("us", tz="Europe/Paris")),
            "small": pa.array(["x"], pa.string()),
            "i32": pa.array([1], pa.int32()),
            "tus": pa.array([1], pa.time64("us")),
        }
    )
    pq.write_table(table, os.path.join(out, "stray.parquet"))


if __name__ == "__main__":
    typed(sys.argv[1])
    stray(sys.argv[1])
