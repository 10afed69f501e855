-- bench/target.sql: the hand-written uuid-keyed target of the migration benchmark, created
-- identically for every contender (bench/migrate.sh creates it as t_hand, t_uuid, t_uuid5, ...).
--
--   psql -v target=t_uuid -f bench/target.sql
--
-- The legacy.dispatch_* tables of demo/dispatch.sql without their prefix: every key and foreign
-- key column is uuid (order_items keeps its composite key (order_id uuid, line_no int)), every
-- other column keeps its name, type and NOT NULL; the same primary keys, unique constraint,
-- foreign keys (doctors.supervisor_id a nullable self-reference, order_items.product_id to the
-- products copied along) and the same secondary indexes on the foreign key columns.

\set ON_ERROR_STOP 1

CREATE SCHEMA :"target";

CREATE TABLE :"target".products (
    id         uuid NOT NULL PRIMARY KEY,
    sku        text UNIQUE,
    name       text,
    unit_price numeric(10,2)
);
CREATE TABLE :"target".offices (
    id         uuid NOT NULL PRIMARY KEY,
    name       text NOT NULL,
    region     text,
    created_at timestamptz
);
CREATE TABLE :"target".doctors (
    id            uuid NOT NULL PRIMARY KEY,
    office_id     uuid NOT NULL REFERENCES :"target".offices (id),
    supervisor_id uuid REFERENCES :"target".doctors (id),
    full_name     text,
    email         text,
    licensed_on   date
);
CREATE TABLE :"target".patients (
    id         uuid NOT NULL PRIMARY KEY,
    doctor_id  uuid NOT NULL REFERENCES :"target".doctors (id),
    full_name  text,
    email      text,
    phone      text,
    birth_date date,
    notes      jsonb
);
CREATE TABLE :"target".orders (
    id         uuid NOT NULL PRIMARY KEY,
    patient_id uuid NOT NULL REFERENCES :"target".patients (id),
    status     legacy.order_status,
    ordered_at timestamptz,
    total      numeric(12,2)
);
CREATE TABLE :"target".order_items (
    order_id   uuid NOT NULL REFERENCES :"target".orders (id),
    line_no    int  NOT NULL,
    product_id uuid NOT NULL REFERENCES :"target".products (id),
    quantity   int,
    unit_price numeric(10,2),
    PRIMARY KEY (order_id, line_no)
);

CREATE INDEX ON :"target".doctors (office_id);
CREATE INDEX ON :"target".doctors (supervisor_id);
CREATE INDEX ON :"target".patients (doctor_id);
CREATE INDEX ON :"target".orders (patient_id);
CREATE INDEX ON :"target".order_items (product_id);
