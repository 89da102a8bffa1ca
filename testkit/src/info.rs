//! The one INFO parser's typed view: the fields come from the library's
//! `sraft::server::parse_info` (the same code that writes INFO reads it).

use crate::resp::{Auth, INFO_TIMEOUT, call};
use sraft::kv::resp::Value;
use sraft::server::parse_info;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// One node's view, from INFO.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Info {
    pub fields: BTreeMap<String, String>,
}

impl Info {
    /// Parses INFO's text.
    pub fn parse(text: &str) -> Info {
        Info {
            fields: parse_info(text),
        }
    }

    /// Node `addr`'s INFO, or None if it did not answer with one within
    /// [`INFO_TIMEOUT`].
    pub fn fetch(addr: SocketAddr, auth: &Auth) -> Option<Info> {
        Info::from_reply(call(addr, auth, &[b"INFO"], INFO_TIMEOUT).ok()?)
    }

    /// The INFO in a reply to INFO, if it is one.
    pub fn from_reply(reply: Value) -> Option<Info> {
        match reply {
            Value::Bulk(text) => Some(Info::parse(&String::from_utf8_lossy(&text))),
            _ => None,
        }
    }

    /// The field `key`; panics, showing every field, if there is none.
    pub fn get(&self, key: &str) -> &str {
        self.field(key)
            .unwrap_or_else(|| panic!("INFO has no {key}: {:?}", self.fields))
    }

    /// The field `key`, if present.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// The field `key` as a number, if present and numeric.
    pub fn number_field(&self, key: &str) -> Option<u64> {
        self.field(key)?.parse().ok()
    }

    pub fn role(&self) -> &str {
        self.get("role")
    }

    pub fn is_leader(&self) -> bool {
        self.field("role") == Some("leader")
    }

    pub fn term(&self) -> u64 {
        self.number("term")
    }

    /// None while the node knows no leader (`leader_id:-`).
    pub fn leader_id(&self) -> Option<usize> {
        self.get("leader_id").parse().ok()
    }

    pub fn commit_index(&self) -> u64 {
        self.number("commit_index")
    }

    pub fn applied_index(&self) -> u64 {
        self.number("applied_index")
    }

    /// The leader's sub-leaders, primary first (empty on other nodes and
    /// in original-Raft mode).
    pub fn sub_leaders(&self) -> Vec<usize> {
        self.field("sub_leaders")
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("sub_leaders {s:?}: {e}"))
            })
            .collect()
    }

    fn number(&self, key: &str) -> u64 {
        let text = self.get(key);
        text.parse()
            .unwrap_or_else(|e| panic!("INFO {key}:{text} is not a number: {e}"))
    }
}

/// Who leads, as every running node agreed at one poll.
#[derive(Clone, Debug)]
pub struct Leadership {
    pub leader: usize,
    pub term: u64,
    pub infos: BTreeMap<usize, Info>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_fields_the_toolkit_reads() {
        let info = Info::parse(
            "# Raft\r\nrole:leader\r\nterm:7\r\nleader_id:2\r\nsub_leaders:3,1\r\n\
             commit_index:10\r\napplied_index:9\r\n",
        );
        assert!(info.is_leader());
        assert_eq!(info.term(), 7);
        assert_eq!(info.leader_id(), Some(2));
        assert_eq!(info.sub_leaders(), vec![3, 1]);
        assert_eq!(info.commit_index(), 10);
        assert_eq!(info.applied_index(), 9);
        assert_eq!(info.field("missing"), None);
    }

    #[test]
    fn no_leader_and_no_sub_leaders() {
        let info = Info::parse("role:follower\r\nleader_id:-\r\nsub_leaders:\r\n");
        assert_eq!(info.leader_id(), None);
        assert!(info.sub_leaders().is_empty());
    }
}
