#!/usr/bin/env python3
"""Reads Parquet part files with one independent reader and prints what it sees as JSON.

    read_parquet.py pyarrow|duckdb FILE...

Prints one JSON array, one object per file, in argument order:

    {"file": FILE, "columns": [{"name": ..., "type": ...}, ...], "rows": [[text or null, ...]],
     "codecs": [the compression codecs of its column chunks, e.g. "ZSTD", "UNCOMPRESSED"]}

`type` is the reader's own type of the column in the vocabulary of the manifest's
`parquet_type`: int64, float64, float32, boolean, decimal(P,S), date, timestamp(us),
timestamp(us, UTC), time(ns), string, binary. A type outside that vocabulary keeps a name of its
own (int32, timestamp(ms), time(us), ...), and a column whose Parquet logical type does not
match what the reader made of it says so in its name, so either differs from the manifest.

Each value is canonical text, the same whichever reader produced it:
  integers     decimal digits
  float64      Python's repr (shortest round trip); NaN, Infinity, -Infinity
  float32      the shortest decimal that reads back as the same float32 (0.1f32 -> 0.1)
  boolean      true / false
  decimal      exactly S fraction digits, no exponent
  date         YYYY-MM-DD
  timestamp    YYYY-MM-DDTHH:MM:SS[.fraction without trailing zeros]; UTC ones end in Z
  time         HH:MM:SS[.fraction without trailing zeros]
  string       as it is
  binary       lowercase hex

pyarrow reads with pyarrow.parquet (Arrow C++'s reader); DuckDB with read_parquet (its own
reader, its own types). Temporal values are taken from each reader as integers (days since
1970-01-01, microseconds or nanoseconds), so no time zone setting and no Python datetime range
limit touches them; both readers' integers go through the same rendering below.
"""

import json
import math
import os
import struct
import sys
import tempfile
from decimal import ROUND_FLOOR, Decimal, localcontext

# ---------------------------------------------------------------------------------------------
# Canonical text, shared by both readers.


def float64_text(value):
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def _f32_bits(value):
    return struct.unpack("<I", struct.pack("<f", value))[0]


def _f32_from_bits(bits):
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def float32_text(value):
    """The shortest decimal that reads back as this float32, the nearest one among equally
    short ones, a tie to the even last digit: what Ryu prints (PostgreSQL's float4 output,
    Rust's `{:?}`, numpy). 0.1f32 prints 0.1."""
    if math.isnan(value) or math.isinf(value):
        return float64_text(value)
    bits = _f32_bits(value)
    if _f32_from_bits(bits) != value:
        raise ValueError(f"{value!r} is not a float32")
    sign = "-" if bits >> 31 else ""
    magnitude = bits & 0x7FFFFFFF
    if magnitude == 0:
        return sign + "0.0"
    exact = _f32_from_bits(magnitude)
    below = _f32_from_bits(magnitude - 1)
    # Fast path. Off a power of two (where the gap below is half the gap above) the values
    # that read back as this float32 lie between the two midpoints, symmetric around it, so
    # the nearest decimal of each length ('%.*e' rounds correctly, ties to even) is the one to
    # try. The midpoints are exact in a double; when a candidate's double lands on one, which
    # side the decimal lies on is decided exactly below.
    if magnitude & 0x7FFFFF and magnitude + 1 < 0x7F800000:
        low = (exact + below) / 2
        high = (exact + _f32_from_bits(magnitude + 1)) / 2
        for digits in range(1, 10):
            candidate = float("%.*e" % (digits - 1, exact))
            if candidate in (low, high):
                break
            if low < candidate < high:
                return sign + repr(candidate)
    with localcontext() as context:
        context.prec = 200
        exact, below = Decimal(exact), Decimal(below)
        if magnitude + 1 < 0x7F800000:
            above = Decimal(_f32_from_bits(magnitude + 1))
        else:  # the largest float32: the next step up is as wide as the one below
            above = exact + (exact - below)
        low, high = (exact + below) / 2, (exact + above) / 2
        # Round half to even: a value exactly halfway reads back as the even neighbour.
        inclusive = magnitude % 2 == 0

        def reads_back(candidate):
            if inclusive:
                return low <= candidate <= high
            return low < candidate < high

        for digits in range(1, 10):
            step = Decimal(1).scaleb(exact.adjusted() - digits + 1)
            down = (exact / step).to_integral_value(rounding=ROUND_FLOOR) * step
            candidates = [c for c in {down, down + step} if c > 0 and reads_back(c)]
            if candidates:
                best = min(candidates, key=lambda c: (abs(c - exact), (c / step) % 2))
                # At most 9 significant digits: the nearest double prints them back.
                return sign + repr(float(best))
    raise AssertionError(f"no shortest form for {value!r}")


def decimal_text(value, scale):
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise ValueError(f"decimal {value} is not finite")
    digits = "".join(map(str, digits)).lstrip("0")
    if exponent > -scale:
        digits += "0" * (exponent + scale)
    elif exponent < -scale:
        extra = -scale - exponent
        if digits[len(digits) - extra :].strip("0"):
            raise ValueError(f"decimal {value} has more than {scale} fraction digits")
        digits = digits[: len(digits) - extra]
    digits = digits.rjust(scale + 1, "0")
    text = digits[: len(digits) - scale] + ("." + digits[len(digits) - scale :] if scale else "")
    return ("-" + text) if sign and digits.strip("0") else text


def _civil_from_days(days):
    """Proleptic Gregorian (year, month, day) of a day count from 1970-01-01 (H. Hinnant)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


def date_text(days):
    year, month, day = _civil_from_days(days)
    year_text = f"{year:04d}" if year >= 0 else f"-{-year:04d}"
    return f"{year_text}-{month:02d}-{day:02d}"


def _clock_text(units, per_second, digits):
    seconds, fraction = divmod(units, per_second)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    if fraction:
        text += "." + f"{fraction:0{digits}d}".rstrip("0")
    return text


def timestamp_text(units, per_second, digits, utc):
    per_day = 86400 * per_second
    days, within = divmod(units, per_day)
    return date_text(days) + "T" + _clock_text(within, per_second, digits) + ("Z" if utc else "")


UNITS = {"s": (1, 0), "ms": (1000, 3), "us": (1_000_000, 6), "ns": (1_000_000_000, 9)}


def render(kind, value):
    """Canonical text of one value of the vocabulary type `kind` (None stays None)."""
    if value is None:
        return None
    if kind in ("int64", "int32", "int16", "int8", "int128") or kind.startswith("uint"):
        return str(int(value))
    if kind == "float64":
        return float64_text(value)
    if kind == "float32":
        return float32_text(value)
    if kind == "boolean":
        return "true" if value else "false"
    if kind.startswith("decimal("):
        return decimal_text(value, int(kind[:-1].split(",")[1]))
    if kind == "date":
        return date_text(value)
    if kind.startswith("timestamp("):
        unit = kind[len("timestamp(") :].split(")")[0].split(",")[0]
        per_second, digits = UNITS[unit]
        return timestamp_text(value, per_second, digits, kind.endswith(", UTC)"))
    if kind.startswith("time("):
        per_second, digits = UNITS[kind[len("time(") : -1]]
        return _clock_text(value, per_second, digits)
    if kind == "string":
        return value
    if kind == "binary":
        return bytes(value).hex()
    return str(value)


# ---------------------------------------------------------------------------------------------
# pyarrow


def _utc_zone(tz):
    return tz in ("UTC", "utc", "Etc/UTC", "+00:00", "Z")


def _pyarrow_type(arrow_type, column):
    """(vocabulary type to render values as, name to report) of an Arrow type. The name is the
    vocabulary type only when the Parquet column (`column`, pyarrow's ColumnSchema) has the
    physical and logical type the contract gives it and Arrow's type is the contract's (large
    strings and binaries); otherwise it says what differs."""
    import pyarrow as pa

    t = pa.types
    logical = column.logical_type.type
    physical = column.physical_type
    details = json.loads(column.logical_type.to_json())

    def checked(name, ok, arrow_note=None):
        if arrow_note:
            return name, f"{name} (arrow {arrow_type}, {arrow_note})"
        if ok:
            return name, name
        return name, f"{name} (parquet {physical} {column.logical_type})"

    if t.is_int64(arrow_type):
        return checked("int64", physical == "INT64" and logical in ("NONE", "INT"))
    if t.is_integer(arrow_type):
        return "int64", str(arrow_type)  # int8 ... uint64: outside the vocabulary
    if t.is_float64(arrow_type):
        return checked("float64", physical == "DOUBLE")
    if t.is_float32(arrow_type):
        return checked("float32", physical == "FLOAT")
    if t.is_boolean(arrow_type):
        return checked("boolean", physical == "BOOLEAN")
    if t.is_decimal(arrow_type):
        name = f"decimal({arrow_type.precision},{arrow_type.scale})"
        return checked(
            name,
            logical == "DECIMAL"
            and details.get("precision") == arrow_type.precision
            and details.get("scale") == arrow_type.scale,
        )
    if t.is_date32(arrow_type):
        return checked("date", logical == "DATE")
    if t.is_timestamp(arrow_type):
        utc = arrow_type.tz is not None
        name = f"timestamp({arrow_type.unit}, UTC)" if utc else f"timestamp({arrow_type.unit})"
        return checked(
            name,
            logical == "TIMESTAMP" and details.get("isAdjustedToUTC") == utc,
            None if not utc or _utc_zone(arrow_type.tz) else "a zone other than UTC",
        )
    if t.is_time(arrow_type):
        return checked(f"time({arrow_type.unit})", logical == "TIME")
    if t.is_large_string(arrow_type):
        return checked("string", logical == "STRING")
    if t.is_string(arrow_type) or t.is_string_view(arrow_type):
        return checked("string", False, "not large_utf8")
    if t.is_large_binary(arrow_type):
        return checked("binary", physical == "BYTE_ARRAY" and logical == "NONE")
    if t.is_binary(arrow_type) or t.is_binary_view(arrow_type) or t.is_fixed_size_binary(arrow_type):
        return checked("binary", False, "not large_binary")
    return "other", f"arrow {arrow_type}"


def read_pyarrow(path):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    table = parquet.read()
    columns, values = [], []
    for index, field in enumerate(table.schema):
        kind, name = _pyarrow_type(field.type, parquet.schema.column(index))
        columns.append({"name": field.name, "type": name})
        data = table.column(index)
        # Temporal values as integers of their unit (days for dates).
        if pa.types.is_timestamp(field.type) or pa.types.is_time64(field.type):
            data = pc.cast(data, pa.int64())
        elif pa.types.is_time32(field.type) or pa.types.is_date32(field.type):
            data = pc.cast(data, pa.int32())
        values.append([render(kind, v) for v in data.to_pylist()])
    metadata = parquet.metadata
    codecs = {
        metadata.row_group(g).column(c).compression
        for g in range(metadata.num_row_groups)
        for c in range(metadata.num_columns)
    }
    return columns, [list(row) for row in zip(*values)], sorted(codecs)


# ---------------------------------------------------------------------------------------------
# DuckDB

DUCKDB_TYPES = {
    "BIGINT": "int64",
    "INTEGER": "int32",
    "SMALLINT": "int16",
    "TINYINT": "int8",
    "HUGEINT": "int128",
    "UBIGINT": "uint64",
    "UINTEGER": "uint32",
    "USMALLINT": "uint16",
    "UTINYINT": "uint8",
    "DOUBLE": "float64",
    "FLOAT": "float32",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMP": "timestamp(us)",
    "TIMESTAMP_MS": "timestamp(ms)",
    "TIMESTAMP_NS": "timestamp(ns)",
    "TIMESTAMP_S": "timestamp(s)",
    "TIMESTAMP WITH TIME ZONE": "timestamp(us, UTC)",
    "TIME": "time(us)",
    "TIME_NS": "time(ns)",
    "VARCHAR": "string",
    "BLOB": "binary",
}


def _duckdb_quote(name):
    return '"' + name.replace('"', '""') + '"'


def read_duckdb(path, link):
    import duckdb

    # read_parquet takes its argument as a glob pattern: a table named `a[1]` or `x*` would
    # name other files or none. A link with a plain name reads the file itself.
    os.symlink(os.path.abspath(path), link)
    connection = duckdb.connect()
    source = "read_parquet(?)"
    path = link
    described = connection.execute(f"DESCRIBE SELECT * FROM {source}", [path]).fetchall()
    columns, select = [], []
    for name, duckdb_type, *_ in described:
        if duckdb_type.startswith("DECIMAL("):
            kind = "decimal(" + duckdb_type[len("DECIMAL(") :].replace(" ", "")
        else:
            kind = DUCKDB_TYPES.get(duckdb_type, f"duckdb {duckdb_type}")
        columns.append({"name": name, "type": kind})
        quoted = _duckdb_quote(name)
        # Temporal values as integers of their unit, by DuckDB's own functions.
        if kind == "date":
            expression = f"{quoted} - DATE '1970-01-01'"
        elif kind in ("timestamp(us)", "timestamp(us, UTC)", "time(us)"):
            expression = f"epoch_us({quoted})"
        elif kind in ("timestamp(ns)", "time(ns)"):
            expression = f"epoch_ns({quoted})"
        elif kind == "timestamp(ms)":
            expression = f"epoch_us({quoted}) // 1000"
        elif kind == "timestamp(s)":
            expression = f"epoch_us({quoted}) // 1000000"
        else:
            expression = quoted
        select.append(expression)
    rows = connection.execute(
        f"SELECT {', '.join(select) or '*'} FROM {source}", [path]
    ).fetchall()
    kinds = [c["type"] for c in columns]
    codecs = connection.execute(
        "SELECT DISTINCT compression FROM parquet_metadata(?)", [path]
    ).fetchall()
    return (
        columns,
        [[render(k, v) for k, v in zip(kinds, row)] for row in rows],
        sorted(str(c).upper() for (c,) in codecs),
    )


# ---------------------------------------------------------------------------------------------


def main(arguments):
    if len(arguments) < 2 or arguments[0] not in ("pyarrow", "duckdb"):
        sys.stderr.write("usage: read_parquet.py pyarrow|duckdb FILE...\n")
        return 2
    result = []
    with tempfile.TemporaryDirectory() as links:
        for index, path in enumerate(arguments[1:]):
            if arguments[0] == "pyarrow":
                columns, rows, codecs = read_pyarrow(path)
            else:
                columns, rows, codecs = read_duckdb(path, os.path.join(links, f"{index}.parquet"))
            result.append({"file": path, "columns": columns, "rows": rows, "codecs": codecs})
    # UTF-8 whatever the locale; a string that is not valid Unicode fails here.
    sys.stdout.buffer.write(json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode())
    sys.stdout.buffer.write(b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
