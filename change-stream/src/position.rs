//! Source positions: where in the source's history a change happened.
//!
//! Three kinds, each with a stored form that round-trips:
//! - [`BinlogCoordinates`]: a binlog file and a byte offset in it. Totally
//!   ordered on one server (files are numbered, offsets grow), which is what
//!   the sink needs to recognise a change it has already applied.
//! - [`GtidPosition`]: MariaDB's GTID state (`0-1-100,1-2-7`), one sequence
//!   number per replication domain. It is what a replica connects with, and it
//!   survives binlog rotation and purging, so it is what the source stores to
//!   resume from.
//! - [`ChangeOrder`]: one row change in the source's history: its
//!   transaction's GTID domain and sequence number, then the offset of its
//!   rows event and the row's index in the event. Within a GTID domain,
//!   records carry strictly increasing `ChangeOrder`s, and unlike binlog
//!   coordinates they do not start over when the binlog files do (`RESET
//!   MASTER` with the GTID state restored, another `log_bin` name): this is
//!   what the sink recognises a record sent twice by.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// A binlog file name and a byte offset in that file.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BinlogCoordinates {
    pub file: String,
    pub pos: u64,
}

impl BinlogCoordinates {
    pub fn new(file: impl Into<String>, pos: u64) -> Self {
        Self {
            file: file.into(),
            pos,
        }
    }

    /// The numeric suffix of the file name (`mariadb-bin.000042` -> 42).
    pub fn file_seq(&self) -> u64 {
        file_seq(&self.file)
    }
}

/// The numeric extension of a binlog file name; 0 when there is none.
pub fn file_seq(file: &str) -> u64 {
    file.rsplit_once('.')
        .and_then(|(_, ext)| ext.parse().ok())
        .unwrap_or(0)
}

impl Ord for BinlogCoordinates {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.file_seq(), &self.file, self.pos).cmp(&(other.file_seq(), &other.file, other.pos))
    }
}

impl PartialOrd for BinlogCoordinates {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for BinlogCoordinates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// One GTID: `domain-server-sequence`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gtid {
    pub domain: u32,
    pub server_id: u32,
    pub seq: u64,
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq)
    }
}

impl FromStr for Gtid {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad =
            || Error::InvalidPosition(format!("`{s}` is not a GTID (domain-server-sequence)"));
        let mut parts = s.trim().splitn(3, '-');
        let domain = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let server_id = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let seq = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        Ok(Gtid {
            domain,
            server_id,
            seq,
        })
    }
}

/// MariaDB's GTID position: the last GTID of each replication domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GtidPosition {
    domains: BTreeMap<u32, Gtid>,
}

impl GtidPosition {
    /// Records that `gtid` has been seen (it becomes its domain's last GTID).
    pub fn advance(&mut self, gtid: Gtid) {
        self.domains.insert(gtid.domain, gtid);
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    pub fn get(&self, domain: u32) -> Option<Gtid> {
        self.domains.get(&domain).copied()
    }

    /// The last GTID of each domain.
    pub fn domains(&self) -> impl Iterator<Item = Gtid> + '_ {
        self.domains.values().copied()
    }

    /// True when `gtid` is already contained in this position.
    pub fn contains(&self, gtid: Gtid) -> bool {
        self.domains
            .get(&gtid.domain)
            .is_some_and(|last| last.seq >= gtid.seq)
    }
}

impl fmt::Display for GtidPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for gtid in self.domains.values() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{gtid}")?;
        }
        Ok(())
    }
}

impl FromStr for GtidPosition {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let mut pos = GtidPosition::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            pos.advance(part.parse()?);
        }
        Ok(pos)
    }
}

impl Serialize for GtidPosition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GtidPosition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where one row change sits in the source's history: the GTID of its
/// transaction (domain, sequence number), then the offset of its rows event
/// and the row's index in it (a transaction lies within one binlog file, so
/// the offsets grow along it). Records of one domain are strictly ordered;
/// records of different domains are not comparable, and the derived order
/// (domain first) only serves to keep them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangeOrder {
    pub domain: u32,
    pub seq: u64,
    pub pos: u64,
    pub row: u32,
}

impl ChangeOrder {
    pub fn new(gtid: Gtid, pos: u64, row: u32) -> Self {
        Self {
            domain: gtid.domain,
            seq: gtid.seq,
            pos,
            row,
        }
    }
}

impl fmt::Display for ChangeOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}:{}:{}", self.domain, self.seq, self.pos, self.row)
    }
}

impl FromStr for ChangeOrder {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad =
            || Error::InvalidPosition(format!("`{s}` is not a change order (domain-seq:pos:row)"));
        let (gtid, rest) = s.split_once(':').ok_or_else(bad)?;
        let (domain, seq) = gtid.split_once('-').ok_or_else(bad)?;
        let (pos, row) = rest.split_once(':').ok_or_else(bad)?;
        Ok(ChangeOrder {
            domain: domain.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
            pos: pos.parse().map_err(|_| bad())?,
            row: row.parse().map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_order_by_file_number_then_offset() {
        let a = BinlogCoordinates::new("mariadb-bin.000009", 900);
        let b = BinlogCoordinates::new("mariadb-bin.000010", 4);
        let c = BinlogCoordinates::new("mariadb-bin.000010", 5);
        assert!(a < b && b < c);
        assert_eq!(b.file_seq(), 10);
    }

    #[test]
    fn gtid_position_round_trips_and_advances() {
        let mut p: GtidPosition = "0-1-100, 1-2-7".parse().unwrap();
        assert_eq!(p.to_string(), "0-1-100,1-2-7");
        p.advance("0-3-101".parse().unwrap());
        assert_eq!(p.to_string(), "0-3-101,1-2-7");
        assert!(p.contains("1-2-7".parse().unwrap()));
        assert!(!p.contains("1-2-8".parse().unwrap()));
        assert!(!p.contains("2-2-1".parse().unwrap()));
        assert_eq!("".parse::<GtidPosition>().unwrap(), GtidPosition::default());
        assert!("0-1".parse::<GtidPosition>().is_err());
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<GtidPosition>(&json).unwrap(), p);
    }

    #[test]
    fn change_order_round_trips_and_orders_within_a_domain() {
        let g = |s: &str| s.parse::<Gtid>().unwrap();
        let a = ChangeOrder::new(g("0-1-7"), 900, 3);
        let b = ChangeOrder::new(g("0-1-7"), 900, 4);
        // A later transaction at a smaller offset (the binlog files started
        // over) is still later.
        let c = ChangeOrder::new(g("0-2-8"), 4, 0);
        assert!(a < b && b < c);
        assert_eq!(a.to_string(), "0-7:900:3");
        assert_eq!(a.to_string().parse::<ChangeOrder>().unwrap(), a);
        assert!("1:2".parse::<ChangeOrder>().is_err());
        assert!("0-1:2".parse::<ChangeOrder>().is_err());
    }
}
