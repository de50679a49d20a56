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

-- dbo.Order "Detail": incremental load of run r2; 6 rows in 3 files (csv, gzip) in folder
-- dbo.Order "Detail".
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
  "price" NUMBER(19,4),
  "ratio" FLOAT,
  "score" FLOAT,
  "active" BOOLEAN,
  "born" DATE,
  "updated" TIMESTAMP_NTZ(7),
  "seen_at" TIMESTAMP_TZ(7),
  "at_time" TIME(7),
  "guid" VARCHAR,
  "photo" BINARY,
  "_ehi_op" VARCHAR NOT NULL,
  "_ehi_synced_at" TIMESTAMP_TZ(3) NOT NULL,
  PRIMARY KEY ("id", "line")
);
PUT 'file:///data/out/dbo.Order "Detail"/*.csv.gz' '@ehi_stage/dbo.Order "Detail"/' AUTO_COMPRESS = FALSE OVERWRITE = TRUE;
COPY INTO "dbo"."Order ""Detail""" ("id", "line", "select", "naïve_col", "price", "ratio", "score", "active", "born", "updated", "seen_at", "at_time", "guid", "photo", "_ehi_op", "_ehi_synced_at")
  FROM '@ehi_stage/dbo.Order "Detail"/'
  FILES = ('Order "Detail"-00001.csv.gz', 'Order "Detail"-00002.csv.gz', 'Order "Detail"-r2-00001.csv.gz')
  FILE_FORMAT = (
    TYPE = CSV
    COMPRESSION = GZIP
    SKIP_HEADER = 1
    FIELD_DELIMITER = ','
    FIELD_OPTIONALLY_ENCLOSED_BY = '"'
    ESCAPE = NONE
    ESCAPE_UNENCLOSED_FIELD = NONE
    EMPTY_FIELD_AS_NULL = TRUE
    NULL_IF = ()
    BINARY_FORMAT = HEX
    ENCODING = 'UTF8'
    ERROR_ON_COLUMN_COUNT_MISMATCH = TRUE
  )
  ON_ERROR = ABORT_STATEMENT;

-- Not included, without a _manifest.json: dbo.PAT_ENC (a table whose load has not finished: the
-- next sync finishes it; or a folder that is not a table's).
