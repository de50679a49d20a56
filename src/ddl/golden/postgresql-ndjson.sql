-- Tables of the ehi-sync output in /data/out, from each table's _manifest.json, for PostgreSQL.
-- PostgreSQL: a psql script (psql -1 -v ON_ERROR_STOP=1 -f FILE loads it in one transaction). The
-- \copy lines are psql commands that read the files on the machine psql runs on; gzip and zstd
-- part files are read through the gzip and zstd programs. COPY FROM a file names the server's
-- files instead and needs the pg_read_server_files role.

CREATE SCHEMA IF NOT EXISTS "dbo";

-- dbo.Order "Detail": full load of run r1; 4 rows in 2 files (ndjson, zstd) in folder dbo.Order
-- "Detail".
-- "updated": 7 fractional digits in the files; PostgreSQL keeps 6 (microseconds).
-- "seen_at": PostgreSQL keeps the instant, not each value's UTC offset; 7 fractional digits in the
-- files; PostgreSQL keeps 6 (microseconds).
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
  "updated" timestamp,
  "seen_at" timestamptz,
  "at_time" time,
  "guid" text,
  "photo" bytea,
  "_ehi_op" text NOT NULL,
  "_ehi_synced_at" timestamptz NOT NULL,
  PRIMARY KEY ("id", "line")
);
CREATE TEMP TABLE "ehi_load" ("doc" jsonb);
\copy "ehi_load" ("doc") FROM PROGRAM 'zstd -dcq ''/data/out/dbo.Order "Detail"/Order "Detail"-00001.ndjson.zst''' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02', ENCODING 'UTF8')
\copy "ehi_load" ("doc") FROM PROGRAM 'zstd -dcq ''/data/out/dbo.Order "Detail"/Order "Detail"-00002.ndjson.zst''' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02', ENCODING 'UTF8')
INSERT INTO "dbo"."Order ""Detail""" ("id", "line", "select", "naïve_col", "price", "ratio", "score", "active", "born", "updated", "seen_at", "at_time", "guid", "photo", "_ehi_op", "_ehi_synced_at")
SELECT ("doc"->>'id')::bigint,
  ("doc"->>'line')::bigint,
  "doc"->>'select',
  "doc"->>'naïve_col',
  ("doc"->>'price')::numeric(19,4),
  ("doc"->>'ratio')::real,
  ("doc"->>'score')::double precision,
  ("doc"->>'active')::boolean,
  ("doc"->>'born')::date,
  ("doc"->>'updated')::timestamp,
  ("doc"->>'seen_at')::timestamptz,
  ("doc"->>'at_time')::time,
  "doc"->>'guid',
  decode("doc"->>'photo', 'base64'),
  "doc"->>'_ehi_op',
  ("doc"->>'_ehi_synced_at')::timestamptz
FROM "ehi_load";
DROP TABLE "ehi_load";

-- Not included, without a _manifest.json: dbo.PAT_ENC (a table whose load has not finished: the
-- next sync finishes it; or a folder that is not a table's).
