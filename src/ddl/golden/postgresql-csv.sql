-- Tables of the ehi-sync output in /data/out, from each table's _manifest.json, for PostgreSQL.
-- PostgreSQL: a psql script (psql -1 -v ON_ERROR_STOP=1 -f FILE loads it in one transaction). The
-- \copy lines are psql commands that read the files on the machine psql runs on; gzip and zstd
-- part files are read through the gzip and zstd programs. COPY FROM a file names the server's
-- files instead and needs the pg_read_server_files role.

CREATE SCHEMA IF NOT EXISTS "dbo";

-- dbo.Order "Detail": incremental load of run r2; 6 rows in 3 files (csv, gzip) in folder
-- dbo.Order "Detail".
-- "updated": 7 fractional digits in the files; PostgreSQL keeps 6 (microseconds).
-- "seen_at": PostgreSQL keeps the instant, not each value's UTC offset; 7 fractional digits in the
-- files; PostgreSQL keeps 6 (microseconds).
-- "at_time": 7 fractional digits in the files; PostgreSQL keeps 6 (microseconds).
-- Incremental loads follow the full one in these files. A row whose "_ehi_op" is 'delete' is a
-- delete to apply by key (its other columns are NULL), not a row to insert; a key may occur in
-- several files, and the later file wins. The statements below load every row as it is: point them
-- at a staging table of this shape without NOT NULL and PRIMARY KEY, then apply its rows by key in
-- file order.
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
  "updated" timestamp,
  "seen_at" timestamptz,
  "at_time" time,
  "guid" text,
  "photo" bytea,
  "_ehi_op" text NOT NULL,
  "_ehi_synced_at" timestamptz NOT NULL,
  PRIMARY KEY ("id", "line")
);
CREATE TEMP TABLE "ehi_load" ("id" bigint, "line" bigint, "select" text, "naïve_col" text, "price" numeric(19,4), "ratio" real, "score" double precision, "active" boolean, "born" date, "updated" timestamp, "seen_at" timestamptz, "at_time" time, "guid" text, "photo" text, "_ehi_op" text, "_ehi_synced_at" timestamptz);
\copy "ehi_load" FROM PROGRAM 'gzip -dc ''/data/out/dbo.Order "Detail"/Order "Detail"-00001.csv.gz''' WITH (FORMAT csv, HEADER true, NULL '', ENCODING 'UTF8')
\copy "ehi_load" FROM PROGRAM 'gzip -dc ''/data/out/dbo.Order "Detail"/Order "Detail"-00002.csv.gz''' WITH (FORMAT csv, HEADER true, NULL '', ENCODING 'UTF8')
\copy "ehi_load" FROM PROGRAM 'gzip -dc ''/data/out/dbo.Order "Detail"/Order "Detail"-r2-00001.csv.gz''' WITH (FORMAT csv, HEADER true, NULL '', ENCODING 'UTF8')
INSERT INTO "dbo"."Order ""Detail""" ("id", "line", "select", "naïve_col", "price", "ratio", "score", "active", "born", "updated", "seen_at", "at_time", "guid", "photo", "_ehi_op", "_ehi_synced_at") SELECT "id", "line", "select", "naïve_col", "price", "ratio", "score", "active", "born", "updated", "seen_at", "at_time", "guid", decode("photo", 'hex'), "_ehi_op", "_ehi_synced_at" FROM "ehi_load";
DROP TABLE "ehi_load";

-- Not included, without a _manifest.json: dbo.PAT_ENC (a table whose load has not finished: the
-- next sync finishes it; or a folder that is not a table's).
