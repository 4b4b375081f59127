//! Creating tables at the destination from the source's definitions.
//!
//! A table missing at the destination is created from the source's own
//! `SHOW CREATE TABLE`, carried on the schema-changes topic, before its first
//! rows are applied; its database is created too. Existing tables are left
//! as they are. (Replicating later DDL is a separate stage.)

use change_stream::table::{quote_ident, TableSchema};
use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::error::{from_mysql, SinkError};

/// Whether the table exists at the destination.
pub async fn table_exists(conn: &mut Conn, table: &TableSchema) -> Result<bool, SinkError> {
    let n: Option<i64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (table.id.database.as_str(), table.id.table.as_str()),
        )
        .await
        .map_err(|e| from_mysql("cannot look up tables", e))?;
    Ok(n.unwrap_or(0) > 0)
}

/// Creates the table (and its database) if it does not exist.
pub async fn ensure_table(conn: &mut Conn, table: &TableSchema) -> Result<bool, SinkError> {
    if table_exists(conn, table).await? {
        return Ok(false);
    }
    if table.create_table.trim().is_empty() {
        return Err(SinkError::Record(format!(
            "table {} does not exist at the destination and its definition carries no CREATE TABLE",
            table.id
        )));
    }
    let db = quote_ident(&table.id.database);
    conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS {db}"))
        .await
        .map_err(|e| from_mysql(&format!("cannot create database {}", table.id.database), e))?;
    // SHOW CREATE TABLE names the table without its database.
    conn.query_drop(format!("USE {db}"))
        .await
        .map_err(|e| from_mysql(&format!("cannot use database {}", table.id.database), e))?;
    conn.query_drop(table.create_table.as_str())
        .await
        .map_err(|e| from_mysql(&format!("cannot create table {}", table.id), e))?;
    tracing::info!(table = %table.id, "created table at the destination");
    Ok(true)
}
