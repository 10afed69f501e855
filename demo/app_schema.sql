-- The application team's new schema for the dispatch data: UUID keys, renamed tables and
-- columns, constraints and indexes as they would write them by hand. pg_tenant_ops migrates
-- tenants of the legacy dispatch_* tables into it (see scripts/demo.sh).
DROP SCHEMA IF EXISTS app CASCADE;
CREATE SCHEMA app;
COMMENT ON SCHEMA app IS 'New UUID-keyed schema the legacy dispatch tenants migrate into';

CREATE TABLE app.products (
    id          uuid PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    price       numeric(10,2) NOT NULL
);
CREATE TABLE app.clinics (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    region      text,
    opened_at   timestamptz,
    migrated_from text NOT NULL
);
CREATE TABLE app.physicians (
    id          uuid PRIMARY KEY,
    clinic_id   uuid NOT NULL REFERENCES app.clinics,
    supervisor_id uuid REFERENCES app.physicians,
    name        text NOT NULL,
    email       text,
    licensed_on date
);
CREATE INDEX ON app.physicians (clinic_id);
CREATE TABLE app.patients (
    id          uuid PRIMARY KEY,
    physician_id uuid NOT NULL REFERENCES app.physicians,
    name        text NOT NULL,
    email       text,
    phone       text,
    birth_date  date,
    notes       jsonb
);
CREATE INDEX ON app.patients (physician_id);
CREATE TABLE app.orders (
    id          uuid PRIMARY KEY,
    patient_id  uuid NOT NULL REFERENCES app.patients,
    status      text NOT NULL,
    ordered_at  timestamptz,
    total       numeric(12,2)
);
CREATE INDEX ON app.orders (patient_id);
CREATE TABLE app.order_lines (
    order_id    uuid NOT NULL REFERENCES app.orders,
    line_no     int NOT NULL,
    product_id  uuid NOT NULL REFERENCES app.products,
    quantity    int NOT NULL,
    unit_price  numeric(10,2) NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
