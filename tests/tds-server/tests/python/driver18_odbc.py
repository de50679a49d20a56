"""Drives Microsoft ODBC Driver 18 through pyodbc, which calls the wide ODBC functions
(SQLExecDirectW) and SQLCancel from another thread: what odbc-api cannot do here without its
`wide` feature or unsafe code.

Usage:
  python3 driver18_odbc.py wide CONNECTION_STRING SQL   prints the first column of row 1
  python3 driver18_odbc.py connect CONNECTION_STRING    prints {"ok": true} or the connect
      error's SQLSTATE and message (run with SSL_CERT_FILE to choose the trusted CAs)
  python3 driver18_odbc.py cancel CONNECTION_STRING     streams rows, cancels from a thread;
      prints the rows fetched before the cancel took effect, the SQLSTATE, and the first
      column of a statement run afterwards on the same connection.
"""
import json
import sys
import threading
import time

import pyodbc


def wide(conn, sql):
    cursor = conn.cursor()
    cursor.execute(sql)
    print(json.dumps({"value": str(cursor.fetchone()[0])}))


def cancel(conn):
    cursor = conn.cursor()
    cursor.execute("select ints 5000000")
    rows = 0
    state = None
    timer = threading.Timer(0.3, cursor.cancel)
    timer.start()
    started = time.monotonic()
    try:
        while cursor.fetchone() is not None:
            rows += 1
    except pyodbc.Error as e:
        state = e.args[0]
    timer.join()
    elapsed = time.monotonic() - started
    after = conn.cursor().execute("select ints 3").fetchall()
    print(json.dumps({"rows": rows, "state": state, "elapsed": elapsed, "after": len(after)}))


def main():
    mode, connection_string = sys.argv[1:3]
    if mode == "connect":
        try:
            pyodbc.connect(connection_string, autocommit=True, timeout=5).close()
            print(json.dumps({"ok": True}))
        except pyodbc.Error as e:
            print(json.dumps({"ok": False, "state": e.args[0], "message": e.args[1]}))
        return
    conn = pyodbc.connect(connection_string, autocommit=True, timeout=5)
    if mode == "wide":
        wide(conn, sys.argv[3])
    else:
        cancel(conn)


if __name__ == "__main__":
    main()
