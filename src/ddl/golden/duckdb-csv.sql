-- Tables of the ehi-sync output in /data/out, from each table's _manifest.json, for DuckDB.
-- DuckDB: read_csv, read_json and read_parquet read the files on the machine DuckDB runs on. A CSV
-- line longer than 2,000,000 bytes (a long note) needs a larger max_line_size.

CREATE SCHEMA IF NOT EXISTS "dbo";

-- dbo.Order "Detail": incremental load of run r2; 6 rows in 3 files (csv, gzip) in folder
-- dbo.Order "Detail".
-- "updated": 7 fractional digits in the files; DuckDB keeps 6 (microseconds).
-- "seen_at": DuckDB keeps the instant, not each value's UTC offset; 7 fractional digits in the
-- files; DuckDB keeps 6 (microseconds).
-- "at_time": 7 fractional digits in the files; DuckDB keeps 6 (microseconds).
-- Incremental loads follow the full one in these files. A row whose "_ehi_op" is 'delete' is a
-- delete to apply by key (its other columns are NULL), not a row to insert; a key may occur in
-- several files, and the later file wins. The statements below load every row as it is: point them
-- at a staging table of this shape without NOT NULL and PRIMARY KEY, then apply its rows by key in
-- file order.
CREATE TABLE "dbo"."Order ""Detail""" (
  "id" BIGINT NOT NULL,
  "line" BIGINT NOT NULL,
  "select" VARCHAR,
  "naïve_col" VARCHAR,
  "price" DECIMAL(19,4),
  "ratio" REAL,
  "score" DOUBLE,
  "active" BOOLEAN,
  "born" DATE,
  "updated" TIMESTAMP,
  "seen_at" TIMESTAMPTZ,
  "at_time" TIME,
  "guid" VARCHAR,
  "photo" BLOB,
  "_ehi_op" VARCHAR NOT NULL,
  "_ehi_synced_at" TIMESTAMPTZ NOT NULL,
  PRIMARY KEY ("id", "line")
);
INSERT INTO "dbo"."Order ""Detail""" ("id", "line", "select", "naïve_col", "price", "ratio", "score", "active", "born", "updated", "seen_at", "at_time", "guid", "photo", "_ehi_op", "_ehi_synced_at")
SELECT "id", "line", "select", "naïve_col", "price", "ratio", "score", "active", "born", "updated", "seen_at", "at_time", "guid", unhex("photo"), "_ehi_op", "_ehi_synced_at"
FROM read_csv(['/data/out/dbo.Order "Detail"/Order "Detail"-00001.csv.gz', '/data/out/dbo.Order "Detail"/Order "Detail"-00002.csv.gz', '/data/out/dbo.Order "Detail"/Order "Detail"-r2-00001.csv.gz'], header = true, delim = ',', quote = '"', escape = '"', new_line = '\r\n', nullstr = '', allow_quoted_nulls = false, auto_detect = false, compression = 'gzip', columns = {'id': 'BIGINT', 'line': 'BIGINT', 'select': 'VARCHAR', 'naïve_col': 'VARCHAR', 'price': 'DECIMAL(19,4)', 'ratio': 'REAL', 'score': 'DOUBLE', 'active': 'BOOLEAN', 'born': 'DATE', 'updated': 'TIMESTAMP', 'seen_at': 'TIMESTAMPTZ', 'at_time': 'TIME', 'guid': 'VARCHAR', 'photo': 'VARCHAR', '_ehi_op': 'VARCHAR', '_ehi_synced_at': 'TIMESTAMPTZ'});

-- Not included, without a _manifest.json: dbo.PAT_ENC (a table whose load has not finished: the
-- next sync finishes it; or a folder that is not a table's).
