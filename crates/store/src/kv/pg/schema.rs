//! The schema, versioned in `resellerd_schema` and migrated at open under an advisory lock, so
//! nodes starting together migrate once.

use super::*;

/// The schema, one migration per version, applied in order.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: named trees and their entries.
    "CREATE TABLE kv_trees (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name bytea NOT NULL UNIQUE);
     CREATE TABLE kv (t integer NOT NULL, k bytea NOT NULL, v bytea NOT NULL, PRIMARY KEY (t, k));",
];

/// The advisory lock migrations run under.
pub(super) const MIGRATION_LOCK: i64 = 0x7265_7365_6c6c_6572;

/// Applies the migrations the database lacks, under the advisory lock; returns whether the
/// schema existed before.
pub(super) fn migrate(pool: &Arc<Pool>) -> Result<bool> {
    let mut lease = pool.get()?;
    let c = lease.conn();
    c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .map_err(to_error)?;
    let result = (|| -> Result<bool> {
        wait(c.client.batch_execute(
            "CREATE TABLE IF NOT EXISTS resellerd_schema (version integer NOT NULL)",
        ))
        .map_err(to_error)?;
        let rows = c
            .query(
                "SELECT coalesce(max(version), 0) FROM resellerd_schema",
                &[],
            )
            .map_err(to_error)?;
        let version = rows.first().map_or(0, |r| r.get::<_, i32>(0)) as usize;
        if version > MIGRATIONS.len() {
            return Err(Error::Unsupported(format!(
                "the database is at schema version {version}, newer than this resellerd's {}: upgrade resellerd",
                MIGRATIONS.len()
            )));
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version) {
            let sql = format!(
                "BEGIN; {migration}; INSERT INTO resellerd_schema (version) VALUES ({}); COMMIT;",
                i + 1
            );
            if let Err(e) = wait(c.client.batch_execute(&sql)) {
                let _ = wait(c.client.batch_execute("ROLLBACK"));
                return Err(to_error(e));
            }
            tracing::info!(version = i + 1, "migrated the PostgreSQL schema");
        }
        Ok(version > 0)
    })();
    let unlocked = c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    let existed = result?;
    unlocked.map_err(to_error)?;
    Ok(existed)
}
