-- Tables of the ehi-sync output in /data/out, from each table's _manifest.json, for Snowflake.
-- Snowflake: the PUT commands (SnowSQL or another client that runs PUT) copy each table folder's
-- part files to the stage @ehi_stage under the folder's name, as they are (AUTO_COMPRESS = FALSE,
-- so the files are what each COPY's COMPRESSION says); use another stage by replacing @ehi_stage.
-- Snowflake records a PRIMARY KEY but does not enforce it.
-- Floats: ehi-sync writes NaN, Infinity and -Infinity as these words; Snowflake's FLOAT reads
-- 'NaN', 'inf' and '-inf'. Snowflake limits the size of a VARCHAR and a BINARY value (16 MB and 8
-- MB unless larger sizes are enabled): a longer value fails its COPY.

CREATE SCHEMA IF NOT EXISTS "dbo";
CREATE STAGE IF NOT EXISTS ehi_stage;

-- dbo.Order "Detail": full load of run r1; 4 rows in 2 files (parquet) in folder dbo.Order
-- "Detail".
-- "updated": 100-nanosecond fractions: Parquet's nanosecond timestamps span only the years 1677 to
-- 2262 and microseconds would drop a digit; written as ISO 8601 text.
-- "seen_at": a Parquet timestamp holds an instant without its UTC offset; written as ISO 8601 text
-- with the offset.
CREATE TABLE "dbo"."Order ""Detail""" (
  "id" BIGINT NOT NULL,
  "line" BIGINT NOT NULL,
  "select" VARCHAR,
  "naïve_col" VARCHAR,
  "price" NUMBER(19,4),
  "ratio" FLOAT,
  "score" FLOAT,
  "active" BOOLEAN,
  "born" DATE,
  "updated" VARCHAR,
  "seen_at" VARCHAR,
  "at_time" TIME(7),
  "guid" VARCHAR,
  "photo" BINARY,
  "_ehi_op" VARCHAR NOT NULL,
  "_ehi_synced_at" VARCHAR NOT NULL,
  PRIMARY KEY ("id", "line")
);
PUT 'file:///data/out/dbo.Order "Detail"/*.parquet' '@ehi_stage/dbo.Order "Detail"/' AUTO_COMPRESS = FALSE OVERWRITE = TRUE;
COPY INTO "dbo"."Order ""Detail"""
  FROM '@ehi_stage/dbo.Order "Detail"/'
  FILES = ('Order "Detail"-00001.parquet', 'Order "Detail"-00002.parquet')
  FILE_FORMAT = (
    TYPE = PARQUET
    USE_LOGICAL_TYPE = TRUE
    BINARY_AS_TEXT = FALSE
    NULL_IF = ()
  )
  MATCH_BY_COLUMN_NAME = CASE_SENSITIVE
  ON_ERROR = ABORT_STATEMENT;

-- Not included, without a _manifest.json: dbo.PAT_ENC (a table whose load has not finished: the
-- next sync finishes it; or a folder that is not a table's).
