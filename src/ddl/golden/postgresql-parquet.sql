-- Tables of the ehi-sync output in /data/out, from each table's _manifest.json, for PostgreSQL.
-- PostgreSQL: a psql script (psql -1 -v ON_ERROR_STOP=1 -f FILE loads it in one transaction). The
-- \copy lines are psql commands that read the files on the machine psql runs on; gzip and zstd
-- part files are read through the gzip and zstd programs. COPY FROM a file names the server's
-- files instead and needs the pg_read_server_files role.

CREATE SCHEMA IF NOT EXISTS "dbo";

-- dbo.Order "Detail": full load of run r1; 4 rows in 2 files (parquet) in folder dbo.Order
-- "Detail".
-- "updated": 100-nanosecond fractions: Parquet's nanosecond timestamps span only the years 1677 to
-- 2262 and microseconds would drop a digit; written as ISO 8601 text.
-- "seen_at": a Parquet timestamp holds an instant without its UTC offset; written as ISO 8601 text
-- with the offset.
-- "at_time": 7 fractional digits in the files; PostgreSQL keeps 6 (microseconds).
CREATE TABLE "dbo"."Order ""Detail""" (
  "id" bigint NOT NULL,
  "line" bigint NOT NULL,
  "select" text,
  "naïve_col" text,
  "price" numeric(19,4),
  "ratio" real,
  "score" double precision,
  "active" boolean,
  "born" date,
  "updated" text,
  "seen_at" text,
  "at_time" time,
  "guid" text,
  "photo" bytea,
  "_ehi_op" text NOT NULL,
  "_ehi_synced_at" text NOT NULL,
  PRIMARY KEY ("id", "line")
);
-- PostgreSQL reads no Parquet by itself: load these files through DuckDB or a Parquet extension,
-- or sync with "format": "csv" for \copy.

-- Not included, without a _manifest.json: dbo.PAT_ENC (a table whose load has not finished: the
-- next sync finishes it; or a folder that is not a table's).
