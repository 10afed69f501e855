//! `scheduler_health()`, `scheduler_stats()` and the `tenant_ops.metrics` view: plain SQL
//! over the extension's tables, in `sql/schedules.sql` (the health function is SECURITY
//! DEFINER so that pg_stat_activity shows the launcher and workers to a viewer). The
//! repository's `monitoring/postgres_exporter.yml` turns the view into Prometheus metrics.

pgrx::extension_sql_file!(
    "../../sql/schedules.sql",
    name = "schedules_health",
    requires = ["bootstrap"]
);
