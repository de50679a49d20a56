#!/usr/bin/env python3
"""Exports one query to CSV the way a typical Python ODBC job does it: pyodbc, fetchmany in a
loop, csv.writer. The baseline for scripts/bench.sh.

    pyodbc_export.py CONNECTION_STRING QUERY OUTPUT.csv [BATCH_ROWS]

Prints the number of data rows written on standard output.
"""

import csv
import sys

import pyodbc


def main() -> int:
    if len(sys.argv) not in (4, 5):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    connection_string, query, output = sys.argv[1:4]
    batch_rows = int(sys.argv[4]) if len(sys.argv) == 5 else 5000
    connection = pyodbc.connect(connection_string, autocommit=False)
    cursor = connection.cursor()
    cursor.execute(query)
    rows = 0
    with open(output, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow([column[0] for column in cursor.description])
        while True:
            batch = cursor.fetchmany(batch_rows)
            if not batch:
                break
            writer.writerows(batch)
            rows += len(batch)
    cursor.close()
    connection.close()
    print(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
