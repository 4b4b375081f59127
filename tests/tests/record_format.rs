//! The topics as another consumer sees them: every record is decoded here
//! with the Avro library alone, the writer schema found by the fingerprint
//! in the single-object header on `<prefix>.schemas`.

use std::collections::HashMap;
use std::time::Duration;

use apache_avro::types::Value;
use e2e_tests::*;

fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    let Value::Record(fields) = v else {
        panic!("not a record: {v:?}")
    };
    let v = &fields
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no field {name}"))
        .1;
    match v {
        Value::Union(_, inner) => inner,
        v => v,
    }
}

fn decode(schemas: &HashMap<String, apache_avro::Schema>, bytes: &[u8]) -> Value {
    assert_eq!(&bytes[..2], &[0xC3, 0x01], "single-object header");
    let fp = u64::from_le_bytes(bytes[2..10].try_into().unwrap());
    let schema = schemas
        .get(&format!("{fp:016x}"))
        .unwrap_or_else(|| panic!("schema {fp:016x} not on the schemas topic"));
    apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .build()
        .unwrap()
        .read_value(&mut &bytes[10..])
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_decode_with_the_avro_library_alone() -> Result<()> {
    let db = unique("e2e_format");
    let prefix = unique("format");
    drop_database(&[source_port()], &db).await?;
    let mut src = Db::connect(source_port()).await?;
    src.exec(&format!("CREATE DATABASE `{db}`")).await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.items (id INT PRIMARY KEY, name VARCHAR(20), amount DECIMAL(8,2), at DATETIME(3))"
    ))
    .await?;
    src.exec(&format!(
        "CREATE TABLE `{db}`.ledger (id INT PRIMARY KEY, note VARCHAR(20))"
    ))
    .await?;
    src.exec(&format!(
        "INSERT INTO `{db}`.items VALUES (1, 'one', 1.50, '2024-01-02 03:04:05.678'), (2, 'two', NULL, NULL)"
    ))
    .await?;
    let mut source = Connector::start(
        "source-connector",
        &format!("{prefix}-source"),
        &source_config(&prefix, &[&db], 5505, ""),
    )?;
    source
        .wait_log("snapshot finished", Duration::from_secs(60))
        .await?;
    src.exec(&format!(
        "INSERT INTO `{db}`.items VALUES (3, 'three', -2.25, NULL)"
    ))
    .await?;
    src.exec(&format!(
        "UPDATE `{db}`.items SET name = 'uno' WHERE id = 1"
    ))
    .await?;
    src.exec(&format!("DELETE FROM `{db}`.items WHERE id = 2"))
        .await?;
    // One transaction over two tables.
    src.exec(&format!(
        "START TRANSACTION; INSERT INTO `{db}`.ledger VALUES (1, 'a'), (2, 'b'); \
         INSERT INTO `{db}`.items VALUES (4, 'four', 4.00, NULL); COMMIT"
    ))
    .await?;

    let topic = format!("{prefix}.{db}.items");
    wait_until(
        "seven records on the table topic",
        Duration::from_secs(60),
        || {
            let topic = topic.clone();
            async move {
                let n = read_topic(&topic)?.len();
                Ok((n < 7).then(|| format!("{n} records")))
            }
        },
    )
    .await?;
    let messages = read_topic(&topic)?;
    source.stop()?;

    let mut schemas = HashMap::new();
    for (k, v) in read_topic(&format!("{prefix}.schemas"))? {
        let (k, v) = (
            String::from_utf8(k.unwrap())?,
            String::from_utf8(v.unwrap())?,
        );
        schemas.insert(k, apache_avro::Schema::parse_str(&v)?);
    }

    // The table topic holds change records and tombstones only; where the
    // table's definition and the end of its full synchronization fall
    // among them is on the schema-changes topic, by offset.
    let changes: Vec<Value> = read_topic(&format!("{prefix}.schema-changes"))?
        .iter()
        .map(|(_, v)| decode(&schemas, v.as_ref().unwrap()))
        .filter(|c| {
            matches!(field(c, "tables"), Value::Array(t) if t.iter().any(|t| field(t, "table") == &Value::String("items".into())))
        })
        .collect();
    let kinds: Vec<&Value> = changes.iter().map(|c| field(c, "kind")).collect();
    assert_eq!(
        kinds,
        [
            &Value::String("DEFINITION".into()),
            &Value::String("SNAPSHOT DONE".into())
        ]
    );
    let offsets = |c: &Value| match field(c, "tables") {
        Value::Array(t) => field(&t[0], "topic_offsets").clone(),
        other => panic!("tables is {other:?}"),
    };
    // Before the first row, and after the snapshot's two (and the commit
    // marker after them, if their Kafka transaction was committed first).
    assert_eq!(offsets(&changes[0]), Value::Array(vec![Value::Long(0)]));
    assert!(
        matches!(offsets(&changes[1]), Value::Array(o) if matches!(o[..], [Value::Long(2 | 3)])),
        "SNAPSHOT DONE falls at {:?}",
        offsets(&changes[1])
    );
    assert_eq!(field(&changes[1], "ddl"), &Value::Null);

    let ops: Vec<String> = messages
        .iter()
        .map(|(_, v)| match v {
            None => "tombstone".to_string(),
            Some(v) => match field(&decode(&schemas, v), "op") {
                Value::String(s) => s.clone(),
                other => panic!("op is {other:?}"),
            },
        })
        .collect();
    assert_eq!(ops, ["r", "r", "c", "u", "d", "tombstone", "c"]);

    // Keys are Avro records of the primary key.
    let keys: Vec<Value> = messages
        .iter()
        .map(|(k, _)| field(&decode(&schemas, k.as_ref().unwrap()), "id").clone())
        .collect();
    assert_eq!(keys, [1, 2, 3, 1, 2, 2, 4].map(Value::Int));

    // The first snapshot record, field by field.
    let first = decode(&schemas, messages[0].1.as_ref().unwrap());
    let after = field(&first, "after");
    assert_eq!(field(after, "name"), &Value::String("one".into()));
    let Value::Decimal(d) = field(after, "amount") else {
        panic!("amount is not a decimal")
    };
    // 150 (1.50 at scale 2), big-endian two's complement.
    assert_eq!(Vec::<u8>::try_from(d)?, vec![0u8, 150]);
    // 2024-01-02 03:04:05.678 as microseconds since the epoch, no zone.
    assert_eq!(
        field(after, "at"),
        &Value::LocalTimestampMicros(1_704_164_645_678_000)
    );
    let source_block = field(&first, "source");
    assert_eq!(field(source_block, "snapshot"), &Value::Boolean(true));
    assert_eq!(field(source_block, "db"), &Value::String(db.clone()));
    assert_eq!(field(&first, "before"), &Value::Null);
    // Snapshot records belong to no transaction.
    assert_eq!(field(&first, "transaction"), &Value::Null);

    // The update carries both images and binlog coordinates.
    let update = decode(&schemas, messages[3].1.as_ref().unwrap());
    assert_eq!(
        field(field(&update, "before"), "name"),
        &Value::String("one".into())
    );
    assert_eq!(
        field(field(&update, "after"), "name"),
        &Value::String("uno".into())
    );
    let s = field(&update, "source");
    assert_eq!(field(s, "snapshot"), &Value::Boolean(false));
    assert!(matches!(field(s, "file"), Value::String(f) if f.starts_with("mariadb-bin.")));
    assert!(matches!(field(s, "gtid"), Value::String(g) if g.starts_with("0-1-")));
    // Its transaction block: the GTID, first of one record.
    let block = field(&update, "transaction");
    assert_eq!(field(block, "id"), field(s, "gtid"));
    assert_eq!(field(block, "total_order"), &Value::Long(1));
    assert_eq!(field(block, "data_collection_order"), &Value::Long(1));

    // The transaction over two tables: the items row is its third record,
    // the first of its table.
    let four = decode(&schemas, messages[6].1.as_ref().unwrap());
    let block = field(&four, "transaction");
    let id = field(block, "id").clone();
    assert_eq!(&id, field(field(&four, "source"), "gtid"));
    assert_eq!(field(block, "total_order"), &Value::Long(3));
    assert_eq!(field(block, "data_collection_order"), &Value::Long(1));
    let ledger = read_topic(&format!("{prefix}.{db}.ledger"))?;
    let ledger_blocks: Vec<(Value, Value)> = ledger
        .iter()
        .filter_map(|(_, v)| v.as_ref())
        .map(|v| decode(&schemas, v))
        .map(|r| {
            let b = field(&r, "transaction");
            assert_eq!(field(b, "id"), &id);
            (
                field(b, "total_order").clone(),
                field(b, "data_collection_order").clone(),
            )
        })
        .collect();
    assert_eq!(
        ledger_blocks,
        [
            (Value::Long(1), Value::Long(1)),
            (Value::Long(2), Value::Long(2))
        ]
    );

    // The transaction topic: BEGIN and END of each of the four
    // transactions, in commit order, keyed by id; the last END counts
    // the records per table.
    let boundaries: Vec<(Value, Value)> = read_topic(&format!("{prefix}.transaction"))?
        .iter()
        .map(|(k, v)| {
            (
                decode(&schemas, k.as_ref().unwrap()),
                decode(&schemas, v.as_ref().unwrap()),
            )
        })
        .collect();
    let statuses: Vec<&Value> = boundaries.iter().map(|(_, v)| field(v, "status")).collect();
    assert_eq!(
        statuses,
        ["BEGIN", "END"]
            .repeat(4)
            .iter()
            .map(|s| Value::String(s.to_string()))
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>()
    );
    for pair in boundaries.chunks(2) {
        assert_eq!(field(&pair[0].1, "id"), field(&pair[1].1, "id"));
        assert_eq!(field(&pair[0].0, "id"), field(&pair[0].1, "id"));
        assert_eq!(field(&pair[0].1, "event_count"), &Value::Null);
    }
    let end = &boundaries[7].1;
    assert_eq!(field(end, "id"), &id);
    assert_eq!(field(end, "event_count"), &Value::Long(3));
    let Value::Array(collections) = field(end, "data_collections") else {
        panic!("data_collections is not an array")
    };
    let counts: Vec<(Value, Value)> = collections
        .iter()
        .map(|c| {
            (
                field(c, "data_collection").clone(),
                field(c, "event_count").clone(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            (Value::String(format!("{db}.ledger")), Value::Long(2)),
            (Value::String(format!("{db}.items")), Value::Long(1)),
        ]
    );

    // The table's definition is on the schema-changes topic.
    let changes = read_topic(&format!("{prefix}.schema-changes"))?;
    let definitions: Vec<Value> = changes
        .iter()
        .map(|(_, v)| decode(&schemas, v.as_ref().unwrap()))
        .filter(|c| field(c, "kind") == &Value::String("DEFINITION".into()))
        .collect();
    let items = definitions
        .iter()
        .find_map(|c| match field(c, "tables") {
            Value::Array(tables) => tables
                .iter()
                .find(|t| field(t, "table") == &Value::String("items".into()))
                .cloned(),
            _ => None,
        })
        .expect("a definition of items");
    assert!(matches!(
        field(field(&items, "definition"), "create_table"),
        Value::String(s) if s.starts_with("CREATE TABLE `items`")
    ));
    Ok(())
}
