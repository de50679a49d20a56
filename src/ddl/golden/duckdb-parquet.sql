-- Tables of the ehi-sync output in /data/out, from each table's _manifest.json, for DuckDB.
-- DuckDB: read_csv, read_json and read_parquet read the files on the machine DuckDB runs on. A CSV
-- line longer than 2,000,000 bytes (a long note) needs a larger max_line_size.

CREATE SCHEMA IF NOT EXISTS "dbo";

-- dbo.Order "Detail": full load of run r1; 4 rows in 2 files (parquet) in folder dbo.Order
-- "Detail".
-- "updated": 100-nanosecond fractions: Parquet's nanosecond timestamps span only the years 1677 to
-- 2262 and microseconds would drop a digit; written as ISO 8601 text.
-- "seen_at": a Parquet timestamp holds an instant without its UTC offset; written as ISO 8601 text
-- with the offset.
-- "at_time": 7 fractional digits in the files; DuckDB keeps 6 (microseconds).
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
  "updated" VARCHAR,
  "seen_at" VARCHAR,
  "at_time" TIME,
  "guid" VARCHAR,
  "photo" BLOB,
  "_ehi_op" VARCHAR NOT NULL,
  "_ehi_synced_at" VARCHAR NOT NULL,
  PRIMARY KEY ("id", "line")
);
INSERT INTO "dbo"."Order ""Detail""" ("id", "line", "select", "naïve_col", "price", "ratio", "score", "active", "born", "updated", "seen_at", "at_time", "guid", "photo", "_ehi_op", "_ehi_synced_at")
SELECT "id", "line", "select", "naïve_col", "price", "ratio", "score", "active", "born", "updated", "seen_at", "at_time", "guid", "photo", "_ehi_op", "_ehi_synced_at"
FROM read_parquet(['/data/out/dbo.Order "Detail"/Order "Detail"-00001.parquet', '/data/out/dbo.Order "Detail"/Order "Detail"-00002.parquet']);

-- Not included, without a _manifest.json: dbo.PAT_ENC (a table whose load has not finished: the
-- next sync finishes it; or a folder that is not a table's).
