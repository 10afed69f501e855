-- Citus only: countries a reference table (a copy on every node), the rest distributed by the
-- tenant column and colocated with the tenants' table (a tenant's rows of every table in
-- shards on the same node). Parents first: a foreign key needs its referenced table
-- distributed already (schema.sql declares none yet: foreign_keys.sql follows).
SELECT create_reference_table('mt.countries');
SELECT create_distributed_table('mt.companies', 'id');
SELECT create_distributed_table('mt.users', 'company_id', colocate_with => 'mt.companies');
SELECT create_distributed_table('mt.campaigns', 'company_id', colocate_with => 'mt.companies');
SELECT create_distributed_table('mt."Ads ""x"""', 'company_id', colocate_with => 'mt.companies');
SELECT create_distributed_table('mt.clicks', 'company_id', colocate_with => 'mt.companies');
