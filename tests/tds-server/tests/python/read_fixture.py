"""Reads `select every type` from the TDS test server with python-tds (pytds) and prints each
column of each row on one line as JSON: an independent TDS client's view of the fixture.

Usage: python3 read_fixture.py PORT USER PASSWORD DATABASE
Values: null, or a string: str() of numbers and text, ISO forms of dates and times (python
has microseconds), hex of bytes, and for the long (max) values "pattern:<length>" when the
value equals the fixture's pattern (else "differs:<length>").
"""
import datetime
import decimal
import json
import sys
import uuid

import pytds

VARCHAR_MAX_LEN = 3 * 1024 * 1024
NVARCHAR_MAX_CHARS = 1024 * 1024
VARBINARY_MAX_LEN = 3 * 1024 * 1024 + 7


def pattern(unit, length):
    return (unit * (length // len(unit) + 1))[:length]


LONG = {
    "c_varchar_max": pattern("Ñ€é-abc|", VARCHAR_MAX_LEN),
    # Python counts code points, as the fixture does.
    "c_nvarchar_max": pattern("ü€😀x", NVARCHAR_MAX_CHARS),
    "c_varbinary_max": bytes(i % 251 for i in range(VARBINARY_MAX_LEN)),
}


def show(name, value):
    if value is None:
        return None
    if name in LONG:
        kind = "pattern" if value == LONG[name] else "differs"
        return f"{kind}:{len(value)}"
    if isinstance(value, (bytes, bytearray)):
        return "hex:" + bytes(value).hex()
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value).upper()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (bool, int, decimal.Decimal, str)):
        return str(value)
    return f"{type(value).__name__}:{value!r}"


def main():
    port, user, password, database = sys.argv[1:5]
    with pytds.connect(
        server="127.0.0.1",
        port=int(port),
        user=user,
        password=password,
        database=database,
        autocommit=True,
        login_timeout=5,
    ) as conn:
        with conn.cursor() as cursor:
            cursor.execute("select every type")
            names = [d[0] for d in cursor.description]
            for row in cursor.fetchall():
                print(json.dumps({n: show(n, v) for n, v in zip(names, row)}, ensure_ascii=False))


if __name__ == "__main__":
    main()
