//! Emitting: the rows of a rows event as change records.
//!
//! Each row becomes one record, with the transaction's GTID, the event's
//! file and offset, and the row's index in the event as its `source`
//! coordinates. Values are decoded with the table's definition (read from
//! `information_schema`: exact types, character sets, ENUM/SET labels); the
//! binlog's own column names (binlog_row_metadata=FULL) are checked against
//! it first, since decoding with a definition of another shape would be
//! wrong. The row filter turns an update that crosses its condition into an
//! insert or a delete.

use change_stream::event::{Op, SourceInfo};
use change_stream::value::Cell;
use mysql_async::binlog::events::{RowsEventData, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;

use crate::convert::{to_cell, Origin};
use crate::encode::{Encoder, TableCtx, TxnEvents};
use crate::error::SourceError;
use crate::produce::Output;

/// Writes the records of `rows` (of table `ctx`, mapped by `tme`), found at
/// `source.file:source.pos`, in the transaction `txn`.
#[allow(clippy::too_many_arguments)]
pub async fn rows(
    out: &mut Output,
    enc: &mut Encoder,
    txn: &mut TxnEvents,
    ctx: &TableCtx,
    tme: &TableMapEvent<'_>,
    rows: &RowsEventData<'_>,
    mut source: SourceInfo,
) -> Result<(), SourceError> {
    let (file, start) = (source.file.clone(), source.pos);
    let id = &ctx.schema.id;
    let op = match rows {
        RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => Op::Create,
        RowsEventData::UpdateRowsEventV1(_) | RowsEventData::UpdateRowsEvent(_) => Op::Update,
        RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => Op::Delete,
        RowsEventData::PartialUpdateRowsEvent(_) => {
            return Err(SourceError::Binlog(
                "partial update rows events are not supported".into(),
            ))
        }
    };
    let columns = ctx.full.columns.len();
    if tme.columns_count() as usize != columns {
        return Err(SourceError::Binlog(format!(
            "table {id} has {} columns in the binlog at {file}:{start} but {columns} in its definition; \
             its shape changed, which this version does not replicate yet",
            tme.columns_count(),
        )));
    }
    // Counted once per event, by the operation each row became.
    let mut counts = [0u64; 3];
    for (i, row) in rows.rows(tme).enumerate() {
        let (before, after) = row.map_err(|e| {
            SourceError::Binlog(format!(
                "cannot decode a row of {id} at {file}:{start}: {e}"
            ))
        })?;
        if i == 0 {
            if let Some(r) = after.as_ref().or(before.as_ref()) {
                check_columns(ctx, r, &file, start)?;
            }
        }
        let before = before.map(|r| row_cells(ctx, r)).transpose()?;
        let after = after.map(|r| row_cells(ctx, r)).transpose()?;
        // The row filter: an update into the condition is an insert, one
        // out of it a delete.
        let (op, before, after) = match &ctx.filter {
            None => (op, before, after),
            Some(f) => {
                let b = before.as_deref().is_some_and(|r| f.matches(r));
                let a = after.as_deref().is_some_and(|r| f.matches(r));
                match (op, b, a) {
                    (Op::Create, _, true) => (Op::Create, None, after),
                    (Op::Delete, true, _) => (Op::Delete, before, None),
                    (Op::Update, true, true) => (Op::Update, before, after),
                    (Op::Update, false, true) => (Op::Create, None, after),
                    (Op::Update, true, false) => (Op::Delete, before, None),
                    _ => continue,
                }
            }
        };
        let before = before.map(|r| ctx.project(r));
        let after = after.map(|r| ctx.project(r));
        source.row = i as u32;
        counts[match op {
            Op::Create => 0,
            Op::Update => 1,
            _ => 2,
        }] += 1;
        enc.emit(
            out,
            ctx,
            op,
            before.as_deref(),
            after.as_deref(),
            &source,
            Some(txn),
        )
        .await?;
    }
    for (op, n) in ["c", "u", "d"].into_iter().zip(counts) {
        change_stream::telemetry::source_events(op, n);
    }
    Ok(())
}

/// The binlog's column names must be the definition's.
fn check_columns(ctx: &TableCtx, row: &BinlogRow, file: &str, pos: u64) -> Result<(), SourceError> {
    let logged: Vec<String> = row
        .columns_ref()
        .iter()
        .map(|c| c.name_str().to_string())
        .collect();
    let defined = ctx.full.columns.iter().map(|c| c.name.as_str());
    if logged.iter().map(String::as_str).ne(defined) {
        let defined: Vec<&str> = ctx.full.columns.iter().map(|c| c.name.as_str()).collect();
        return Err(SourceError::Binlog(format!(
            "table {} has columns ({}) in the binlog at {file}:{pos} but ({}) in its definition; \
             its shape changed, which this version does not replicate yet",
            ctx.schema.id,
            logged.join(", "),
            defined.join(", ")
        )));
    }
    Ok(())
}

fn row_cells(ctx: &TableCtx, row: BinlogRow) -> Result<Vec<Cell>, SourceError> {
    row.unwrap()
        .into_iter()
        .zip(&ctx.full.columns)
        .map(|(v, col)| match v {
            BinlogValue::Value(v) => to_cell(col, v, Origin::Binlog)
                .map_err(|e| SourceError::Binlog(format!("table {}: {e}", ctx.full.id))),
            other => Err(SourceError::Binlog(format!(
                "table {}, column `{}`: unexpected binlog value {other:?}",
                ctx.full.id, col.name
            ))),
        })
        .collect()
}
