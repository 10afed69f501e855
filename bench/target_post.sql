-- bench/target_post.sql: what bench/target.sql declares up front, added after the load the way
-- pg_restore does: primary keys and the unique constraint, then the secondary indexes (each
-- built once from the loaded rows), then the foreign keys (each validated by one set-based
-- query over the table).
--
--   psql -v target=t_expert -f bench/target_post.sql

\set ON_ERROR_STOP 1

ALTER TABLE :"target".products ADD PRIMARY KEY (id);
ALTER TABLE :"target".products ADD UNIQUE (sku);
ALTER TABLE :"target".offices ADD PRIMARY KEY (id);
ALTER TABLE :"target".doctors ADD PRIMARY KEY (id);
ALTER TABLE :"target".patients ADD PRIMARY KEY (id);
ALTER TABLE :"target".orders ADD PRIMARY KEY (id);
ALTER TABLE :"target".order_items ADD PRIMARY KEY (order_id, line_no);

CREATE INDEX ON :"target".doctors (office_id);
CREATE INDEX ON :"target".doctors (supervisor_id);
CREATE INDEX ON :"target".patients (doctor_id);
CREATE INDEX ON :"target".orders (patient_id);
CREATE INDEX ON :"target".order_items (product_id);

ALTER TABLE :"target".doctors ADD FOREIGN KEY (office_id) REFERENCES :"target".offices (id);
ALTER TABLE :"target".doctors ADD FOREIGN KEY (supervisor_id) REFERENCES :"target".doctors (id);
ALTER TABLE :"target".patients ADD FOREIGN KEY (doctor_id) REFERENCES :"target".doctors (id);
ALTER TABLE :"target".orders ADD FOREIGN KEY (patient_id) REFERENCES :"target".patients (id);
ALTER TABLE :"target".order_items ADD FOREIGN KEY (order_id) REFERENCES :"target".orders (id);
ALTER TABLE :"target".order_items ADD FOREIGN KEY (product_id) REFERENCES :"target".products (id);
