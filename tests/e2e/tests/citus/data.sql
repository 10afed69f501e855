-- Deterministic data: tenant c (1..6) has 1 company, 3c users, 2c campaigns, 5c ads, 40c
-- clicks; ids restart at 1 in every tenant.
INSERT INTO mt.countries VALUES ('DE', 'Germany'), ('FR', 'France'), ('NL', 'Netherlands'),
    ('US', 'United States'), ('JP', 'Japan'), ('BR', 'Brazil');
INSERT INTO mt.companies
SELECT c, 'Company ' || c, (ARRAY['DE', 'FR', 'NL', 'US', 'JP'])[1 + c % 5] FROM generate_series(1, 6) c;
INSERT INTO mt.users
SELECT c, u, format('user%s@company%s.example', u, c) FROM generate_series(1, 6) c, generate_series(1, 3 * c) u;
INSERT INTO mt.campaigns
SELECT c, k, format('campaign %s-%s', c, k), CASE WHEN k % 4 = 0 THEN NULL ELSE 1 + k % (3 * c) END,
       (k * 100.5)::numeric(12,2)
FROM generate_series(1, 6) c, generate_series(1, 2 * c) k;
INSERT INTO mt."Ads ""x"""
SELECT c, a, 1 + a % (2 * c), format('ad %s-%s', c, a) FROM generate_series(1, 6) c, generate_series(1, 5 * c) a;
INSERT INTO mt.clicks
SELECT c, k, 1 + k % (5 * c), timestamptz '2026-01-01 00:00+00' + k * interval '1 minute',
       CASE WHEN k % 7 = 0 THEN NULL ELSE (ARRAY['DE', 'FR', 'NL', 'US', 'JP'])[1 + k % 5] END
FROM generate_series(1, 6) c, generate_series(1, 40 * c) k;
