-- Hostile identifiers everywhere SQL is built: quotes, semicolons, spaces, mixed case,
-- non-ASCII. Every count must equal the hand-written SQL count.
\set SHOW_CONTEXT never
CREATE SCHEMA "Wéird; ""schema""";
SET search_path = "Wéird; ""schema""", public;
CREATE TABLE "Ténant ""Root""" ("bıgınt" bigint PRIMARY KEY, "Name; DROP TABLE x" text);
CREATE TABLE "child; DROP TABLE x" ("id ""q""" int PRIMARY KEY,
    "Tenant Ref" bigint NOT NULL REFERENCES "Ténant ""Root""", "Sub No" int NOT NULL, UNIQUE ("id ""q""", "Sub No"));
CREATE TABLE "bıgınt kids" ("kid" int, "PARENT id" int, "Sub No" int,
    FOREIGN KEY ("PARENT id", "Sub No") REFERENCES "child; DROP TABLE x" ("id ""q""", "Sub No"));
CREATE TABLE "Lookup ""Table""" ("Code" text PRIMARY KEY);
ALTER TABLE "bıgınt kids" ADD COLUMN "lookup;code" text REFERENCES "Lookup ""Table""";
INSERT INTO "Lookup ""Table""" VALUES ('a'), ('b'), ('c');
INSERT INTO "Ténant ""Root""" VALUES (1, 'x'), (2, 'y');
INSERT INTO "child; DROP TABLE x" SELECT g, 1 + g % 2, g % 3 FROM generate_series(1, 9) g;
INSERT INTO "bıgınt kids" SELECT g, 1 + g % 9, (1 + g % 9) % 3, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END FROM generate_series(1, 40) g;
SELECT tenant_ops.create_scope('Scope; ''quoted'' "name"', '"Ténant ""Root"""', 'bıgınt');
SELECT step, table_name, role, path, rows FROM tenant_ops.plan('Scope; ''quoted'' "name"', '2') ORDER BY step;
SELECT table_name, filter FROM tenant_ops.plan('Scope; ''quoted'' "name"', '2') ORDER BY step;
SELECT (SELECT rows FROM tenant_ops.plan('Scope; ''quoted'' "name"', '2') WHERE table_name = '"bıgınt kids"'::regclass)
     = (SELECT count(*) FROM "bıgınt kids" k JOIN "child; DROP TABLE x" c
          ON c."id ""q""" = k."PARENT id" AND c."Sub No" = k."Sub No" WHERE c."Tenant Ref" = 2) AS kids_match;
-- A hostile tenant value is a value, never SQL.
SELECT * FROM tenant_ops.plan('Scope; ''quoted'' "name"', '1; DROP TABLE "Lookup ""Table"""; --');
\echo :SQLSTATE
SELECT count(*) FROM "Lookup ""Table""";
-- Options that name hostile tables, quoted as SQL would have them.
SELECT tenant_ops.create_scope('narrow', '"Ténant ""Root"""', 'bıgınt',
  '{"tables": ["\"child; DROP TABLE x\""], "shared": ["\"Wéird; \"\"schema\"\"\".\"bıgınt kids\""]}');
SELECT step, table_name, role, rows FROM tenant_ops.plan('narrow', '2') ORDER BY step;
RESET search_path;
-- Outside the search_path, names print schema-qualified.
SELECT step, table_name, role FROM tenant_ops.plan('narrow', '2') ORDER BY step;
-- The definition was stored with qualified names, so it means the same under any search_path.
SELECT options FROM tenant_ops.scopes WHERE name = 'narrow';
-- create_target keeps a hostile table name whole: the name comes from the catalog, never
-- parsed back out of SQL (issue 11: `Ten"ant.$1 x` became `$1 x"`).
CREATE SCHEMA "Hostile.Src";
CREATE TABLE "Hostile.Src"."Ten""ant.$1 x" ("Id" int PRIMARY KEY, "v.1" text);
CREATE TABLE "Hostile.Src"."kid.$1" (id int PRIMARY KEY, t int NOT NULL REFERENCES "Hostile.Src"."Ten""ant.$1 x");
INSERT INTO "Hostile.Src"."Ten""ant.$1 x" VALUES (1, 'a'), (2, 'b');
INSERT INTO "Hostile.Src"."kid.$1" VALUES (10, 1), (11, 1), (20, 2);
CREATE SCHEMA "Hostile.Dst";
SELECT tenant_ops.create_scope('hostile.$1', '"Hostile.Src"."Ten""ant.$1 x"', 'Id');
SELECT tenant_ops.migrate_tenant('hostile.$1', '1', 'Hostile.Dst', '{"create_target": true}') > 0 AS migrated;
SELECT c.relname FROM pg_class c WHERE c.relnamespace = '"Hostile.Dst"'::regnamespace AND c.relkind = 'r' ORDER BY 1;
SELECT count(*) FROM "Hostile.Dst"."Ten""ant.$1 x";
SELECT count(*) FROM "Hostile.Dst"."kid.$1";
