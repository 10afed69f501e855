-- bench/checks.sql: the row counts bench/migrate.sh asserts after every run, computed with
-- plain SQL on both sides (never through pg_tenant_ops).
--
--   bench.source_counts(office)  what one office owns in legacy.dispatch_*, per target table
--                                name, plus the shared products its order items reference
--   bench.target_counts(schema)  the rows of one target schema (bench/target.sql), per table

\set ON_ERROR_STOP 1

DROP SCHEMA IF EXISTS bench CASCADE;
CREATE SCHEMA bench;

CREATE FUNCTION bench.source_counts(office int)
RETURNS TABLE(table_name text, shared boolean, n bigint)
LANGUAGE sql STABLE
AS $$
    WITH d AS (SELECT id FROM legacy.dispatch_doctors WHERE office_id = office),
         p AS (SELECT x.id FROM legacy.dispatch_patients x JOIN d ON d.id = x.doctor_id),
         o AS (SELECT x.id FROM legacy.dispatch_orders x JOIN p ON p.id = x.patient_id),
         i AS (SELECT x.product_id FROM legacy.dispatch_order_items x JOIN o ON o.id = x.order_id)
    SELECT 'products', true,
           (SELECT count(*) FROM legacy.dispatch_products pr WHERE pr.id IN (SELECT product_id FROM i))
    UNION ALL SELECT 'offices', false, (SELECT count(*) FROM legacy.dispatch_offices WHERE id = office)
    UNION ALL SELECT 'doctors', false, (SELECT count(*) FROM d)
    UNION ALL SELECT 'patients', false, (SELECT count(*) FROM p)
    UNION ALL SELECT 'orders', false, (SELECT count(*) FROM o)
    UNION ALL SELECT 'order_items', false, (SELECT count(*) FROM i)
$$;

CREATE FUNCTION bench.target_counts(target name)
RETURNS TABLE(table_name text, n bigint)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['products', 'offices', 'doctors', 'patients', 'orders', 'order_items'] LOOP
        table_name := t;
        EXECUTE format('SELECT count(*) FROM %I.%I', target, t) INTO n;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Every table whose count differs, as "table: source N, target M"; no rows when all match.
-- Also checks the re-keyed references join up: every doctor's supervisor, every item's order
-- and product resolve inside the target (the foreign keys guarantee it; this says it in numbers).
CREATE FUNCTION bench.mismatches(office int, target name)
RETURNS SETOF text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    supervised_src bigint;
    supervised_tgt bigint;
BEGIN
    RETURN QUERY
    SELECT format('%s: source %s, target %s', s.table_name, s.n, t.n)
      FROM bench.source_counts(office) s
      FULL JOIN bench.target_counts(target) t USING (table_name)
     WHERE s.n IS DISTINCT FROM t.n;
    SELECT count(*) INTO supervised_src
      FROM legacy.dispatch_doctors WHERE office_id = office AND supervisor_id IS NOT NULL;
    EXECUTE format('SELECT count(*) FROM %1$I.doctors d JOIN %1$I.doctors s ON s.id = d.supervisor_id', target)
       INTO supervised_tgt;
    IF supervised_src IS DISTINCT FROM supervised_tgt THEN
        RETURN NEXT format('doctors with a supervisor: source %s, target %s', supervised_src, supervised_tgt);
    END IF;
END
$$;

-- The keys, constraints and indexes of one target schema as the catalog defines them, with the
-- schema's name taken out, as "table name kind: definition" (NOT VALID in the kind): two
-- schemas holding the same tables, keys, indexes and foreign keys give the same set.
CREATE FUNCTION bench.definitions(target name)
RETURNS SETOF text
LANGUAGE sql STABLE
AS $$
    SELECT format('%s %s %s: %s', t.relname, k.conname,
                  k.contype::text || CASE WHEN k.convalidated THEN '' ELSE ' not valid' END,
                  replace(pg_get_constraintdef(k.oid), quote_ident(target) || '.', ''))
      FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid
     WHERE t.relnamespace = target::regnamespace AND k.contype IN ('p', 'u', 'x', 'f')
    UNION ALL
    SELECT format('%s %s index: %s', t.relname, c.relname,
                  replace(pg_get_indexdef(i.indexrelid), quote_ident(target) || '.', ''))
      FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_class c ON c.oid = i.indexrelid
     WHERE t.relnamespace = target::regnamespace
$$;

-- What one schema's definitions have that the other's lack, either way ("+ in a", "- in b").
CREATE FUNCTION bench.definition_mismatches(a name, b name)
RETURNS SETOF text
LANGUAGE sql STABLE
AS $$
    (SELECT '+ ' || d FROM bench.definitions(a) d EXCEPT SELECT '+ ' || d FROM bench.definitions(b) d)
    UNION ALL
    (SELECT '- ' || d FROM bench.definitions(b) d EXCEPT SELECT '- ' || d FROM bench.definitions(a) d)
$$;
