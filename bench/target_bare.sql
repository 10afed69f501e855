-- bench/target_bare.sql: the tables of bench/target.sql without their keys, indexes and foreign
-- keys (columns, types and NOT NULL only), for the expert contender of the create_target
-- benchmark, which loads first and adds those afterwards (bench/target_post.sql).
--
--   psql -v target=t_expert -f bench/target_bare.sql

\set ON_ERROR_STOP 1

CREATE SCHEMA :"target";

CREATE TABLE :"target".products (
    id         uuid NOT NULL,
    sku        text,
    name       text,
    unit_price numeric(10,2)
);
CREATE TABLE :"target".offices (
    id         uuid NOT NULL,
    name       text NOT NULL,
    region     text,
    created_at timestamptz
);
CREATE TABLE :"target".doctors (
    id            uuid NOT NULL,
    office_id     uuid NOT NULL,
    supervisor_id uuid,
    full_name     text,
    email         text,
    licensed_on   date
);
CREATE TABLE :"target".patients (
    id         uuid NOT NULL,
    doctor_id  uuid NOT NULL,
    full_name  text,
    email      text,
    phone      text,
    birth_date date,
    notes      jsonb
);
CREATE TABLE :"target".orders (
    id         uuid NOT NULL,
    patient_id uuid NOT NULL,
    status     legacy.order_status,
    ordered_at timestamptz,
    total      numeric(12,2)
);
CREATE TABLE :"target".order_items (
    order_id   uuid NOT NULL,
    line_no    int  NOT NULL,
    product_id uuid NOT NULL,
    quantity   int,
    unit_price numeric(10,2)
);
