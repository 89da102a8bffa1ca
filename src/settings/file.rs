//! The TOML config file (`--config`). One file usually serves a whole
//! cluster: the node id is a position in `peers`, and `{id}` in paths is
//! replaced by it. Every key is optional; flags and environment variables
//! override the file (DESIGN.md 4.1). Unknown keys are errors, so a typo does
//! not quietly leave a setting at its default.

use super::SettingsError;
use super::raft_table::RaftTable;
use crate::limits::LimitsOverrides;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Client port = peer port + this, unless `client_port` is given
/// (DESIGN.md 4.1: 5000 -> 6000).
pub const CLIENT_PORT_OFFSET_DEFAULT: u16 = 1000;

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    pub cluster_id: Option<String>,
    /// For a per-node file; a shared file leaves it to discovery.
    pub node_id: Option<u64>,
    pub peers: Option<Vec<String>>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub client_port: Option<u16>,
    pub client_port_offset: Option<u16>,
    pub data_dir: Option<PathBuf>,
    pub metrics_file: Option<PathBuf>,
    /// `IP:PORT` of the Prometheus endpoint (`GET /metrics`), or `:PORT`
    /// for this node's own bind address.
    pub metrics_addr: Option<String>,
    pub debug: Option<bool>,
    /// The shared secret of the peer handshake (DESIGN.md 9).
    pub cluster_secret_file: Option<PathBuf>,
    /// The password of Redis AUTH on the client port (DESIGN.md 9); the
    /// client tools take it from here too.
    pub client_password_file: Option<PathBuf>,
    /// TLS on both ports (DESIGN.md 9): all three or none.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_ca_cert_file: Option<PathBuf>,
    /// `[raft]`: `RaftConfig`'s keys, or seed 000's names in seconds.
    #[serde(default)]
    pub raft: RaftTable,
    #[serde(default)]
    pub storage: StorageSettings,
    #[serde(default)]
    pub transport: TransportSettings,
    /// `[limits]`: byte limits (DESIGN.md 7); unset ones are derived.
    #[serde(default)]
    pub limits: LimitsOverrides,
}

/// `[storage]`: the write-ahead log (DESIGN.md 5.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// fsync before a vote or an append is acknowledged. Turning it off
    /// gives up Raft's safety on power loss; only for benchmarks on tmpfs.
    pub fsync: bool,
    /// A log segment is closed and a new one started past this size.
    pub segment_bytes_max: u64,
}

impl Default for StorageSettings {
    fn default() -> StorageSettings {
        StorageSettings {
            fsync: true,
            segment_bytes_max: 64 << 20,
        }
    }
}

/// `[transport]`: peer connections (DESIGN.md 2.4, 2.6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportSettings {
    /// Frames waiting for one peer's sender thread; beyond it they are
    /// dropped and Raft retransmits.
    pub queue_depth: usize,
}

impl Default for TransportSettings {
    fn default() -> TransportSettings {
        TransportSettings { queue_depth: 1024 }
    }
}

impl StorageSettings {
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        if self.segment_bytes_max == 0 {
            return Err(bad("storage.segment_bytes_max", "must be > 0"));
        }
        Ok(())
    }
}

impl TransportSettings {
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        if self.queue_depth == 0 {
            return Err(bad("transport.queue_depth", "must be > 0"));
        }
        Ok(())
    }
}

fn bad(key: &str, reason: &str) -> SettingsError {
    SettingsError::BadValue {
        key: key.to_owned(),
        reason: reason.to_owned(),
    }
}

impl ConfigFile {
    pub(crate) fn load(path: &Path) -> Result<ConfigFile, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::ConfigRead {
            path: path.to_owned(),
            source,
        })?;
        ConfigFile::parse(&text, path)
    }

    /// `path` only names the file in errors. toml's own Display draws the
    /// offending line with a caret over several lines; we keep the message
    /// (which names the key) and turn the span into a line number.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<ConfigFile, SettingsError> {
        toml::from_str(text).map_err(|e: toml::de::Error| SettingsError::ConfigParse {
            path: path.to_owned(),
            line: e
                .span()
                .map(|span| text[..span.start].matches('\n').count() + 1),
            message: e.message().trim().replace('\n', " "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::RaftConfig;
    use crate::limits::Limits;

    fn parse(text: &str) -> Result<ConfigFile, SettingsError> {
        ConfigFile::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let file = parse("").unwrap();
        assert_eq!(file, ConfigFile::default());
        assert_eq!(file.raft.0, RaftConfig::default());
    }

    #[test]
    fn sections_fill_missing_keys_with_defaults() {
        let file = parse("[raft]\nheartbeat_interval_ms = 20\n[storage]\nfsync = false\n").unwrap();
        assert_eq!(file.raft.0.heartbeat_interval_ms, 20);
        assert_eq!(file.raft.0.follower_timeout_ms_max, 1000);
        assert!(!file.storage.fsync);
        assert_eq!(file.storage.segment_bytes_max, 64 << 20);
    }

    #[test]
    fn unknown_top_level_key_is_named_with_its_line() {
        let e = parse("cluster_id = \"x\"\npeer = [\"127.0.0.1:5000\"]\n").unwrap_err();
        let line = e.to_string();
        assert!(
            line.starts_with("config file 'test.toml' line 2: unknown field `peer`"),
            "{line}"
        );
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn unknown_key_in_a_section_is_named() {
        for (section, key) in [
            ("raft", "heartbeat_ms"),
            ("storage", "sync"),
            ("transport", "queue_len"),
        ] {
            let e = parse(&format!("[{section}]\n{key} = 1\n")).unwrap_err();
            let line = e.to_string();
            assert!(line.contains(&format!("unknown field `{key}`")), "{line}");
            assert!(line.contains("line 2"), "{line}");
        }
    }

    #[test]
    fn seed_names_in_seconds_set_the_millisecond_keys() {
        let file = parse(
            "[raft]\nheartbeat_interval = 0.05\nprimary_timeout_min = 0.12\n\
             primary_timeout_max = 0.2\nfollower_timeout_max = 2\nsecondary_timeout_ms_min = 260\n",
        )
        .unwrap();
        let raft = file.raft.0;
        assert_eq!(raft.heartbeat_interval_ms, 50);
        assert_eq!(raft.primary_timeout_ms_min, 120);
        assert_eq!(raft.primary_timeout_ms_max, 200);
        assert_eq!(raft.follower_timeout_ms_max, 2000);
        // A `_ms` key of another setting mixes freely with the seed's names.
        assert_eq!(raft.secondary_timeout_ms_min, 260);
        assert_eq!(
            raft.secondary_timeout_ms_max,
            RaftConfig::default().secondary_timeout_ms_max,
            "untouched default"
        );
    }

    #[test]
    fn a_setting_under_both_names_is_an_error_naming_both() {
        for text in [
            "[raft]\nprimary_timeout_min = 0.15\nprimary_timeout_ms_min = 150\n",
            "[raft]\nprimary_timeout_ms_min = 150\nprimary_timeout_min = 0.15\n",
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains("line 3"), "{e}");
            assert!(e.contains("`primary_timeout_min`"), "{e}");
            assert!(e.contains("`primary_timeout_ms_min`"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn bad_seed_values_are_named_with_their_line() {
        let e = parse("[raft]\n\nheartbeat_interval = \"50ms\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 3") && e.contains("`heartbeat_interval`"),
            "{e}"
        );
        let e = parse("[raft]\nheartbeat_interval = 0.0505\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("whole number"), "{e}");
        let e = parse("[raft]\nenable_subleader = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("invalid type"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = parse("port = \"5000\"\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("invalid type"), "{e}");
    }

    #[test]
    fn the_limits_table_takes_its_keys_and_derives_the_rest() {
        let file = parse("[limits]\nvalue_bytes_max = 2048\n").unwrap();
        let limits = Limits::with_overrides(&file.limits);
        assert_eq!(limits, Limits::derive(2048));
        let e = parse("[limits]\nframe_bytes = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `frame_bytes`"), "{e}");
    }

    #[test]
    fn frame_bytes_max_is_no_longer_a_transport_key() {
        let e = parse("[transport]\nframe_bytes_max = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `frame_bytes_max`"), "{e}");
    }

    #[test]
    fn zero_sizes_are_rejected_by_key() {
        let storage = StorageSettings {
            segment_bytes_max: 0,
            ..StorageSettings::default()
        };
        assert_eq!(
            storage.validate().unwrap_err().to_string(),
            "bad storage.segment_bytes_max: must be > 0"
        );
        let transport = TransportSettings { queue_depth: 0 };
        assert_eq!(
            transport.validate().unwrap_err().to_string(),
            "bad transport.queue_depth: must be > 0"
        );
    }
}
