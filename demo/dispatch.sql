-- demo/dispatch.sql: a generated legacy multi-tenant "dispatch" schema for the pg_tenant_ops demo.
--
-- Load with:   psql -v ON_ERROR_STOP=1 -f demo/dispatch.sql
-- then fill:   SELECT * FROM legacy.generate_dispatch(:scale);
--
-- The tenants are the rows of legacy.dispatch_offices. Every other table reaches its office only
-- through a chain of integer foreign keys (order item -> order -> patient -> doctor -> office),
-- the way a real legacy application grew. The data is generated set-based and deterministically
-- (arithmetic on ids, no random()), so two runs at the same scale produce identical contents.
--
-- Sizes, for an office of weight w at scale s:
--   patients = w * s * 10
--   doctors  = ceil(patients / 20), but at least 2 when the office has patients (so that the
--              dirty office 5 has a non-first doctor to carry its defect even at scale 1 and 2)
--   orders   = 1 + (patient_id % 5) per patient
--   items    = 1 + (order_id % 4) per order
-- Ids are global across offices: the doctors of office 1 come first, then those of office 2, ...
--
-- Deliberate dirt, only in office 5 ('Old Quarry'), exactly two defects:
--   1. one dispatch_order_items row (line 1 of the first order of the office's last patient)
--      has product_id = 999999, a product that does not exist; the product foreign key
--      dispatch_order_items_product_id_fkey is therefore NOT VALID;
--   2. one doctor (the office's last doctor, never its first) has as supervisor the first
--      doctor of office 4 ('Millbrook'): a reference across tenants.
-- Everything else is clean: every other foreign key is VALID.

DROP SCHEMA IF EXISTS legacy CASCADE;
CREATE SCHEMA legacy;
COMMENT ON SCHEMA legacy IS 'A legacy multi-tenant dispatch application (demo data for pg_tenant_ops).';

CREATE TYPE legacy.order_status AS ENUM ('new', 'dispatched', 'delivered', 'cancelled');

CREATE FUNCTION legacy.generate_dispatch(scale int DEFAULT 1)
RETURNS TABLE(office_id int, office_name text, doctors bigint, patients bigint, orders bigint,
              order_items bigint, total_rows bigint)
LANGUAGE plpgsql
SET client_min_messages = warning
SET maintenance_work_mem = '256MB'
SET work_mem = '64MB'
SET search_path = pg_catalog, pg_temp
AS $fn$
#variable_conflict use_column
DECLARE
    dirty_patient int;   -- last patient of office 5: line 1 of its first order is the orphan item
    dirty_doctor  int;   -- last doctor of office 5: supervised from office 4
    foreign_boss  int;   -- first doctor of office 4
BEGIN
    IF scale IS NULL OR scale < 1 THEN
        RAISE EXCEPTION 'generate_dispatch: scale must be a positive integer, got %', scale;
    END IF;

    DROP TABLE IF EXISTS legacy.dispatch_order_items, legacy.dispatch_orders,
        legacy.dispatch_patients, legacy.dispatch_doctors, legacy.dispatch_products,
        legacy.dispatch_offices CASCADE;

    -- ---- tables, without keys or indexes (those come after the load) ---------------------
    CREATE TABLE legacy.dispatch_offices (
        id         int  NOT NULL,
        name       text NOT NULL,
        region     text,
        created_at timestamptz
    );
    CREATE TABLE legacy.dispatch_products (
        id         int NOT NULL,
        sku        text,
        name       text,
        unit_price numeric(10,2)
    );
    CREATE TABLE legacy.dispatch_doctors (
        id            int NOT NULL,
        office_id     int NOT NULL,
        supervisor_id int,
        full_name     text,
        email         text,
        licensed_on   date
    );
    CREATE TABLE legacy.dispatch_patients (
        id         int NOT NULL,
        doctor_id  int NOT NULL,
        full_name  text,
        email      text,
        phone      text,
        birth_date date,
        notes      jsonb
    );
    CREATE TABLE legacy.dispatch_orders (
        id         int NOT NULL,
        patient_id int NOT NULL,
        status     legacy.order_status,
        ordered_at timestamptz,
        total      numeric(12,2)
    );
    CREATE TABLE legacy.dispatch_order_items (
        order_id   int NOT NULL,
        line_no    int NOT NULL,
        product_id int NOT NULL,
        quantity   int,
        unit_price numeric(10,2)
    );

    COMMENT ON TABLE legacy.dispatch_offices IS
        'Dispatch offices: the tenants. Every other row belongs to exactly one office, reached through foreign keys.';
    COMMENT ON TABLE legacy.dispatch_products IS
        'Product catalogue shared by all offices (reference data, not per tenant).';
    COMMENT ON TABLE legacy.dispatch_doctors IS
        'Doctors, each working for one office; supervisor_id points at the supervising doctor (self-reference).';
    COMMENT ON TABLE legacy.dispatch_patients IS
        'Patients, each registered with one doctor (and so, through the doctor, with one office).';
    COMMENT ON TABLE legacy.dispatch_orders IS
        'Orders placed for a patient.';
    COMMENT ON TABLE legacy.dispatch_order_items IS
        'Order lines (composite key order_id, line_no); product_id references the shared product catalogue.';

    -- ---- layout: per-office sizes and id offsets -------------------------------------------
    DROP TABLE IF EXISTS pg_temp.dispatch_layout;
    CREATE TEMP TABLE dispatch_layout ON COMMIT DROP AS
    WITH o(id, name, region, weight, created_at) AS (VALUES
        (1, 'Northside',  'North',      100, timestamptz '2004-03-01 09:00:00+00'),
        (2, 'Harbour',    'Coast',       60, timestamptz '2007-06-15 09:00:00+00'),
        (3, 'Eastgate',   'East',        30, timestamptz '2011-09-01 09:00:00+00'),
        (4, 'Millbrook',  'Valley',      10, timestamptz '2015-01-12 09:00:00+00'),
        (5, 'Old Quarry', 'Valley',       1, timestamptz '1998-11-02 09:00:00+00'),
        (6, 'Newfield',   'North',        0, timestamptz '2024-02-01 09:00:00+00')
    ), sized AS (
        SELECT o.*, o.weight * scale * 10 AS n_pat,
               CASE WHEN o.weight = 0 THEN 0
                    ELSE greatest(2, ceil(o.weight * scale * 10 / 20.0)::int) END AS n_doc
        FROM o
    )
    SELECT s.*,
           (coalesce(sum(s.n_doc) OVER w, 0))::int AS doc_base,   -- doctor ids before this office
           (coalesce(sum(s.n_pat) OVER w, 0))::int AS pat_base    -- patient ids before this office
    FROM sized s
    WINDOW w AS (ORDER BY s.id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING);

    -- ---- load ---------------------------------------------------------------------------
    INSERT INTO legacy.dispatch_offices (id, name, region, created_at)
    SELECT l.id, l.name, l.region, l.created_at FROM dispatch_layout l ORDER BY l.id;

    INSERT INTO legacy.dispatch_products (id, sku, name, unit_price)
    SELECT g,
           'SKU-' || lpad(g::text, 5, '0'),
           (ARRAY['Sterile', 'Disposable', 'Adjustable', 'Paediatric', 'Compact', 'Heavy-duty',
                  'Latex-free', 'Reusable'])[1 + g % 8] || ' ' ||
           (ARRAY['gauze pads', 'syringes', 'wheelchair', 'blood pressure cuff', 'thermometer',
                  'crutches', 'oxygen mask', 'nebuliser', 'glucose strips', 'bandage roll',
                  'walking frame', 'pill organiser', 'compression socks'])[1 + (g * 7) % 13],
           ((g * 7919) % 49900 + 100) / 100.0
    FROM generate_series(1, 200) g;

    -- Each office's first doctor is unsupervised; every other doctor reports to it.
    INSERT INTO legacy.dispatch_doctors (id, office_id, supervisor_id, full_name, email, licensed_on)
    SELECT d.id, l.id,
           CASE WHEN d.id = l.doc_base + 1 THEN NULL ELSE l.doc_base + 1 END,
           'Dr. ' || fn.v || ' ' || ln.v,
           lower(fn.v) || '.' || lower(ln.v) || '.' || d.id || '@' ||
               lower(replace(l.name, ' ', '')) || '.dispatch.example',
           date '1975-01-01' + ((d.id::bigint * 4271) % 17000)::int
    FROM dispatch_layout l
    CROSS JOIN LATERAL generate_series(l.doc_base + 1, l.doc_base + l.n_doc) AS d(id)
    CROSS JOIN LATERAL (SELECT (ARRAY['Alice', 'Bram', 'Chloe', 'Dev', 'Elena', 'Farid', 'Grace',
                                      'Hugo', 'Ines', 'Jonas', 'Kemi', 'Lars', 'Maya'])
                                      [1 + d.id % 13]) fn(v)
    CROSS JOIN LATERAL (SELECT (ARRAY['Okafor', 'Lindqvist', 'Moreau', 'Patel', 'Nakamura',
                                      'Fischer', 'Costa', 'Walsh', 'Novak', 'Haddad', 'Brennan'])
                                      [1 + (d.id * 7) % 11]) ln(v)
    ORDER BY d.id;

    -- Patients are spread round-robin over their office's doctors.
    INSERT INTO legacy.dispatch_patients (id, doctor_id, full_name, email, phone, birth_date, notes)
    SELECT p.id,
           l.doc_base + 1 + (p.id - l.pat_base - 1) % l.n_doc,
           fn.v || ' ' || ln.v,
           lower(fn.v) || '.' || lower(ln.v) || p.id || '@mail.example',
           '+44 20 ' || lpad(((p.id::bigint * 7919) % 10000000)::text, 7, '0'),
           date '1930-01-01' + ((p.id::bigint * 7907) % 32000)::int,
           CASE WHEN p.id % 7 = 0 THEN NULL
                ELSE jsonb_build_object(
                         'preferred_contact', (ARRAY['phone', 'email', 'sms'])[1 + p.id % 3],
                         'allergies', CASE p.id % 6 WHEN 0 THEN '["penicillin"]'::jsonb
                                                    WHEN 1 THEN '["latex", "aspirin"]'::jsonb
                                                    ELSE '[]'::jsonb END,
                         'wheelchair_access', p.id % 11 = 0)
           END
    FROM dispatch_layout l
    CROSS JOIN LATERAL generate_series(l.pat_base + 1, l.pat_base + l.n_pat) AS p(id)
    CROSS JOIN LATERAL (SELECT (ARRAY['Amira', 'Ben', 'Carla', 'Dmitri', 'Eve', 'Finn', 'Gita',
                                      'Henrik', 'Iris', 'Jamal', 'Kira', 'Leo', 'Mona', 'Nils',
                                      'Olga', 'Piet', 'Rosa'])[1 + p.id % 17]) fn(v)
    CROSS JOIN LATERAL (SELECT (ARRAY['Adams', 'Berg', 'Clarke', 'Dubois', 'Eriksen', 'Flores',
                                      'Gallo', 'Horvat', 'Ivanova', 'Jensen', 'Kowalski', 'Lopez',
                                      'Murphy', 'Nowak', 'Olsen', 'Reyes', 'Schmidt', 'Tanaka',
                                      'Usman'])[1 + (p.id * 5) % 19]) ln(v)
    WHERE l.n_pat > 0
    ORDER BY p.id;

    -- Patient p has 1 + p % 5 orders. Their ids follow on from those of patients 1 .. p-1, of
    -- which there are  n + 10 * (n / 5) + r * (r + 1) / 2  with n = p - 1, r = n % 5.
    -- An order o has 1 + o % 4 lines; line k is for product 1 + (31 o + 17 k) % 200, quantity
    -- 1 + (o + 3 k) % 7, at that product's price (the same formula as the catalogue above).
    INSERT INTO legacy.dispatch_orders (id, patient_id, status, ordered_at, total)
    SELECT o.id, o.patient_id,
           (ARRAY['delivered', 'delivered', 'delivered', 'delivered', 'delivered', 'dispatched',
                  'dispatched', 'new', 'new', 'cancelled']::legacy.order_status[])[1 + (o.id * 7) % 10],
           timestamptz '2019-01-01 00:00:00+00' + make_interval(mins => ((o.id::bigint * 7919) % 2628000)::int),
           (SELECT sum((1 + (o.id + 3 * k) % 7) *
                       (((1 + (31 * o.id + 17 * k) % 200) * 7919) % 49900 + 100) / 100.0)
            FROM generate_series(1, 1 + o.id % 4) k)
    FROM (
        SELECT p.id AS patient_id,
               (p.id - 1) + 10 * ((p.id - 1) / 5) + ((p.id - 1) % 5) * ((p.id - 1) % 5 + 1) / 2
                   + 1 + j AS id
        FROM generate_series(1, (SELECT sum(n_pat)::int FROM dispatch_layout)) AS p(id)
        CROSS JOIN LATERAL generate_series(0, p.id % 5) AS j
    ) o
    ORDER BY o.id;

    INSERT INTO legacy.dispatch_order_items (order_id, line_no, product_id, quantity, unit_price)
    SELECT o.id, k,
           1 + (31 * o.id + 17 * k) % 200,
           1 + (o.id + 3 * k) % 7,
           (((1 + (31 * o.id + 17 * k) % 200) * 7919) % 49900 + 100) / 100.0
    FROM generate_series(1, (SELECT count(*)::int FROM legacy.dispatch_orders)) AS o(id)
    CROSS JOIN LATERAL generate_series(1, 1 + o.id % 4) AS k
    ORDER BY o.id, k;

    -- ---- the dirt, office 5 only ----------------------------------------------------------
    SELECT l.pat_base + l.n_pat, l.doc_base + l.n_doc INTO dirty_patient, dirty_doctor
    FROM dispatch_layout l WHERE l.id = 5;
    SELECT l.doc_base + 1 INTO foreign_boss FROM dispatch_layout l WHERE l.id = 4;

    -- 1. an item for a product that was deleted from the catalogue long ago
    UPDATE legacy.dispatch_order_items i SET product_id = 999999
    WHERE i.line_no = 1
      AND i.order_id = (SELECT min(o.id) FROM legacy.dispatch_orders o WHERE o.patient_id = dirty_patient);
    -- 2. a doctor supervised by a doctor of another office
    UPDATE legacy.dispatch_doctors d SET supervisor_id = foreign_boss WHERE d.id = dirty_doctor;

    -- ---- keys, constraints and indexes, after the load -------------------------------------
    ALTER TABLE legacy.dispatch_offices ADD PRIMARY KEY (id);
    ALTER TABLE legacy.dispatch_products ADD PRIMARY KEY (id);
    ALTER TABLE legacy.dispatch_products ADD UNIQUE (sku);
    ALTER TABLE legacy.dispatch_doctors ADD PRIMARY KEY (id);
    ALTER TABLE legacy.dispatch_patients ADD PRIMARY KEY (id);
    ALTER TABLE legacy.dispatch_orders ADD PRIMARY KEY (id);
    ALTER TABLE legacy.dispatch_order_items ADD PRIMARY KEY (order_id, line_no);

    CREATE INDEX ON legacy.dispatch_doctors (office_id);
    CREATE INDEX ON legacy.dispatch_doctors (supervisor_id);
    CREATE INDEX ON legacy.dispatch_patients (doctor_id);
    CREATE INDEX ON legacy.dispatch_orders (patient_id);
    CREATE INDEX ON legacy.dispatch_order_items (product_id);

    ALTER TABLE legacy.dispatch_doctors
        ADD CONSTRAINT dispatch_doctors_office_id_fkey
            FOREIGN KEY (office_id) REFERENCES legacy.dispatch_offices (id),
        ADD CONSTRAINT dispatch_doctors_supervisor_id_fkey
            FOREIGN KEY (supervisor_id) REFERENCES legacy.dispatch_doctors (id);
    ALTER TABLE legacy.dispatch_patients
        ADD CONSTRAINT dispatch_patients_doctor_id_fkey
            FOREIGN KEY (doctor_id) REFERENCES legacy.dispatch_doctors (id);
    ALTER TABLE legacy.dispatch_orders
        ADD CONSTRAINT dispatch_orders_patient_id_fkey
            FOREIGN KEY (patient_id) REFERENCES legacy.dispatch_patients (id);
    ALTER TABLE legacy.dispatch_order_items
        ADD CONSTRAINT dispatch_order_items_order_id_fkey
            FOREIGN KEY (order_id) REFERENCES legacy.dispatch_orders (id);
    -- NOT VALID: existing rows (the orphan above) are not checked; new rows are.
    ALTER TABLE legacy.dispatch_order_items
        ADD CONSTRAINT dispatch_order_items_product_id_fkey
            FOREIGN KEY (product_id) REFERENCES legacy.dispatch_products (id) NOT VALID;

    ANALYZE legacy.dispatch_offices, legacy.dispatch_products, legacy.dispatch_doctors,
            legacy.dispatch_patients, legacy.dispatch_orders, legacy.dispatch_order_items;

    -- ---- per-office counts ---------------------------------------------------------------
    RETURN QUERY
    WITH doc AS (
        SELECT d.id, d.office_id FROM legacy.dispatch_doctors d
    ), pat AS (
        SELECT p.id, doc.office_id FROM legacy.dispatch_patients p JOIN doc ON doc.id = p.doctor_id
    ), ord AS (
        SELECT o.id, pat.office_id FROM legacy.dispatch_orders o JOIN pat ON pat.id = o.patient_id
    ), itm AS (
        SELECT ord.office_id, count(*) AS n
        FROM legacy.dispatch_order_items i JOIN ord ON ord.id = i.order_id GROUP BY ord.office_id
    ), c AS (
        SELECT f.id, f.name,
               coalesce(dc.n, 0) AS doctors, coalesce(pc.n, 0) AS patients,
               coalesce(oc.n, 0) AS orders, coalesce(itm.n, 0) AS order_items
        FROM legacy.dispatch_offices f
        LEFT JOIN (SELECT doc.office_id, count(*) AS n FROM doc GROUP BY doc.office_id) dc
               ON dc.office_id = f.id
        LEFT JOIN (SELECT pat.office_id, count(*) AS n FROM pat GROUP BY pat.office_id) pc
               ON pc.office_id = f.id
        LEFT JOIN (SELECT ord.office_id, count(*) AS n FROM ord GROUP BY ord.office_id) oc
               ON oc.office_id = f.id
        LEFT JOIN itm ON itm.office_id = f.id
    )
    SELECT c.id, c.name, c.doctors, c.patients, c.orders, c.order_items,
           1 + c.doctors + c.patients + c.orders + c.order_items
    FROM c ORDER BY c.id;
END
$fn$;
