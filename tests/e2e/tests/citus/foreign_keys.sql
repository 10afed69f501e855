-- The foreign keys of schema.sql, every one including the tenant column (or pointing at the
-- shared countries): what Citus requires between colocated distributed tables.
ALTER TABLE mt.companies ADD CONSTRAINT companies_country_fkey FOREIGN KEY (country) REFERENCES mt.countries (code);
ALTER TABLE mt.users ADD CONSTRAINT users_company_id_fkey FOREIGN KEY (company_id) REFERENCES mt.companies (id);
ALTER TABLE mt.campaigns ADD CONSTRAINT campaigns_company_id_fkey FOREIGN KEY (company_id) REFERENCES mt.companies (id);
ALTER TABLE mt.campaigns ADD CONSTRAINT campaigns_company_id_owner_id_fkey
    FOREIGN KEY (company_id, owner_id) REFERENCES mt.users (company_id, id);
ALTER TABLE mt."Ads ""x""" ADD CONSTRAINT "Ads x_campaign_fkey"
    FOREIGN KEY (company_id, campaign_id) REFERENCES mt.campaigns (company_id, id);
ALTER TABLE mt.clicks ADD CONSTRAINT clicks_company_id_ad_id_fkey
    FOREIGN KEY (company_id, ad_id) REFERENCES mt."Ads ""x""" (company_id, id);
ALTER TABLE mt.clicks ADD CONSTRAINT clicks_country_fkey FOREIGN KEY (country) REFERENCES mt.countries (code);
