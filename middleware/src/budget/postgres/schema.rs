//! The shared ledger's schema, created and migrated at start-up: numbered
//! migrations, each applied once in its own transaction, under a lock so
//! that replicas starting together do not race.

use tokio_postgres::Client;

use super::super::error::LedgerError;
use super::pg;

/// Every migration, in order; the first is version 1. Append, never edit.
const MIGRATIONS: &[&str] = &[include_str!("0001_shared_ledger.sql")];

/// Creates `schema` if needed and applies the migrations it lacks.
pub(super) async fn migrate(client: &mut Client, schema: &str) -> Result<(), LedgerError> {
    let lock = format!("chrysalis.migrate.{schema}");
    client
        .execute("SELECT pg_advisory_lock(hashtext($1))", &[&lock])
        .await
        .map_err(pg)?;
    let result = apply(client, schema).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock(hashtext($1))", &[&lock])
        .await;
    result.and(unlocked.map(drop).map_err(pg))
}

async fn apply(client: &mut Client, schema: &str) -> Result<(), LedgerError> {
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
             CREATE TABLE IF NOT EXISTS \"{schema}\".schema_migrations (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );"
        ))
        .await
        .map_err(pg)?;
    let applied: i32 = client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
        .await
        .map_err(pg)?
        .get(0);
    let known = MIGRATIONS.len() as i32;
    if applied > known {
        return Err(LedgerError(format!(
            "schema `{schema}` is at version {applied}, newer than this gateway knows ({known}): upgrade the gateway"
        )));
    }
    for (version, sql) in (1..).zip(MIGRATIONS).skip(applied as usize) {
        let transaction = client.transaction().await.map_err(pg)?;
        transaction.batch_execute(sql).await.map_err(pg)?;
        transaction
            .execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&version])
            .await
            .map_err(pg)?;
        transaction.commit().await.map_err(pg)?;
        tracing::info!(schema, version, "spend ledger schema migrated");
    }
    Ok(())
}
