-- A multi-tenant schema in the Citus style (an ad platform, after Citus's own tutorial): the
-- tenant column company_id in every table, composite keys (company_id, id) with ids that
-- repeat across tenants, foreign keys that include the tenant column, and a table every
-- tenant shares (countries). distribute.sql makes it distributed; the same schema and data
-- without it is the plain-server reference. Quoted, spaced and mixed-case names on purpose.
-- The foreign keys come in foreign_keys.sql, after the distribution: Citus distributes no
-- table that a local table references.
CREATE SCHEMA mt;
CREATE TABLE mt.countries (code text PRIMARY KEY, name text NOT NULL);
CREATE TABLE mt.companies (
    id      bigint PRIMARY KEY,
    name    text NOT NULL,
    country text
);
CREATE TABLE mt.users (
    company_id bigint NOT NULL,
    id         bigint NOT NULL,
    email      text NOT NULL,
    PRIMARY KEY (company_id, id)
);
CREATE TABLE mt.campaigns (
    company_id bigint NOT NULL,
    id         bigint NOT NULL,
    name       text NOT NULL,
    owner_id   bigint,
    budget     numeric(12,2),
    PRIMARY KEY (company_id, id)
);
CREATE TABLE mt."Ads ""x""" (
    company_id  bigint NOT NULL,
    id          bigint NOT NULL,
    campaign_id bigint NOT NULL,
    "Title"     text NOT NULL,
    PRIMARY KEY (company_id, id)
);
CREATE TABLE mt.clicks (
    company_id bigint NOT NULL,
    id         bigint NOT NULL,
    ad_id      bigint NOT NULL,
    clicked_at timestamptz NOT NULL,
    country    text,
    PRIMARY KEY (company_id, id)
);
