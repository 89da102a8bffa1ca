//! The config file's `[raft]` table: `RaftConfig`'s own keys, with the unit
//! in the name (`primary_timeout_ms_min = 150`), and, as aliases, the names
//! of seed 000's Python `RaftConfig` in its unit, seconds
//! (`primary_timeout_min = 0.15`), so that a seed user's settings carry over
//! as written (issue 13). A setting given under both names is an error that
//! names both keys, not a silent choice between them.
//!
//! The table is read key by key so that every error, an alias's included,
//! keeps the line of the key it is about (`config file 'x' line 7: ...`).

use crate::core::RaftConfig;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;

/// Seed 000's names (seconds) and the `RaftConfig` key (milliseconds) each
/// stands for. `enable_subleader` and `subleader_ratio` have no unit and
/// the same name in both.
pub const SEED_ALIASES: &[(&str, &str)] = &[
    ("heartbeat_interval", "heartbeat_interval_ms"),
    ("primary_timeout_min", "primary_timeout_ms_min"),
    ("primary_timeout_max", "primary_timeout_ms_max"),
    ("secondary_timeout_min", "secondary_timeout_ms_min"),
    ("secondary_timeout_max", "secondary_timeout_ms_max"),
    ("follower_timeout_min", "follower_timeout_ms_min"),
    ("follower_timeout_max", "follower_timeout_ms_max"),
];

/// Above this a number of seconds is surely a mistake (and its milliseconds
/// no longer an exact float): about 31 years.
const ALIAS_SECONDS_MAX: f64 = 1e9;

/// `[raft]` as the file gives it, resolved to a `RaftConfig`, and the seed
/// names the file used (seed name, `RaftConfig` key).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct RaftTable(pub RaftConfig, pub Vec<(&'static str, &'static str)>);

impl RaftTable {
    /// A note for an error about the config that names `_ms` keys the file
    /// spelled the seed's way, so that the operator finds the line; empty if
    /// there are none.
    pub(crate) fn alias_note(&self, message: &str) -> String {
        let named: Vec<String> = self
            .1
            .iter()
            .filter(|(_, ms)| message.contains(ms))
            .map(|(seed, ms)| format!("`{seed}` (seconds) sets {ms}"))
            .collect();
        if named.is_empty() {
            String::new()
        } else {
            format!(" (in the file, {})", named.join(", "))
        }
    }
}

impl<'de> Deserialize<'de> for RaftTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RaftTable, D::Error> {
        deserializer.deserialize_map(TableVisitor)
    }
}

struct TableVisitor;

impl<'de> Visitor<'de> for TableVisitor {
    type Value = RaftTable;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a table of raft settings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RaftTable, A::Error> {
        let mut table = toml::Table::new();
        // RaftConfig key -> the spelling the file used for it.
        let mut given: BTreeMap<String, String> = BTreeMap::new();
        let mut aliases = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let alias = SEED_ALIASES.iter().find(|(seed, _)| *seed == key);
            let target = alias.map_or(key.as_str(), |(_, ms)| *ms).to_owned();
            let seed = KeySeed {
                key: &key,
                target: &target,
                alias: alias.is_some(),
                given_as: given.get(&target).map(String::as_str),
            };
            let value = map.next_value_seed(seed)?;
            aliases.extend(alias.copied());
            given.insert(target.clone(), key);
            table.insert(target, value);
        }
        toml::Value::Table(table)
            .try_into()
            .map(|config| RaftTable(config, aliases))
            .map_err(|e: toml::de::Error| de::Error::custom(e.message()))
    }
}

/// Reads one key's value and checks it on its own, so that an error is
/// raised while the deserializer still knows the key's line.
struct KeySeed<'a> {
    /// As written in the file.
    key: &'a str,
    /// The `RaftConfig` field it sets.
    target: &'a str,
    /// `key` is a seed name in seconds.
    alias: bool,
    /// The spelling an earlier key of this table set `target` with.
    given_as: Option<&'a str>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = toml::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<toml::Value, D::Error> {
        if let Some(earlier) = self.given_as {
            // Only an alias and its `_ms` key can meet here: TOML itself
            // refuses a key written twice.
            return Err(de::Error::custom(format!(
                "`{earlier}` and `{}` both set {}; keep one (the seed's name is in seconds, the `_ms` key in milliseconds)",
                self.key, self.target
            )));
        }
        let mut value = toml::Value::deserialize(deserializer)?;
        if self.alias {
            let ms = alias_ms(self.key, &value).map_err(de::Error::custom)?;
            value = toml::Value::Integer(ms);
        }
        // RaftConfig names unknown keys and wrong types; a one-key table
        // asks it about this key alone.
        let mut one = toml::Table::new();
        one.insert(self.target.to_owned(), value.clone());
        toml::Value::Table(one)
            .try_into::<RaftConfig>()
            .map_err(|e| de::Error::custom(e.message()))?;
        Ok(value)
    }
}

/// A seed value in seconds as whole milliseconds; anything that would have
/// to be rounded is refused rather than silently changed.
fn alias_ms(key: &str, value: &toml::Value) -> Result<i64, String> {
    let seconds = match value {
        toml::Value::Float(s) => *s,
        toml::Value::Integer(s) => *s as f64,
        other => {
            return Err(format!(
                "`{key}` is a number of seconds (the seed's unit), not a {}",
                other.type_str()
            ));
        }
    };
    if !(0.0..=ALIAS_SECONDS_MAX).contains(&seconds) {
        return Err(format!(
            "`{key}` = {seconds} must be between 0 and {ALIAS_SECONDS_MAX} seconds"
        ));
    }
    let ms = seconds * 1000.0;
    let whole = ms.round();
    // 0.15 s is 150.00000000000003 ms in binary floating point: allow the
    // representation error, nothing more.
    if (ms - whole).abs() > 1e-6 {
        return Err(format!(
            "`{key}` = {seconds} s is not a whole number of milliseconds"
        ));
    }
    Ok(whole as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alias_names_a_millisecond_field_of_raft_config() {
        let fields = toml::Value::try_from(RaftConfig::default()).unwrap();
        let fields = fields.as_table().unwrap();
        for (seed, ms) in SEED_ALIASES {
            assert!(fields.contains_key(*ms), "{seed} -> {ms}");
            assert!(ms.contains("_ms"), "{ms}");
            assert!(!fields.contains_key(*seed), "{seed} is a field itself");
        }
    }

    #[test]
    fn seconds_become_whole_milliseconds() {
        let f = toml::Value::Float;
        assert_eq!(alias_ms("k", &f(0.15)), Ok(150));
        assert_eq!(alias_ms("k", &f(0.35)), Ok(350));
        assert_eq!(alias_ms("k", &f(0.05)), Ok(50));
        assert_eq!(alias_ms("k", &toml::Value::Integer(1)), Ok(1000));
        assert_eq!(alias_ms("k", &f(0.001)), Ok(1));
        let e = alias_ms("k", &f(0.0505)).unwrap_err();
        assert!(e.contains("not a whole number of milliseconds"), "{e}");
        let e = alias_ms("k", &f(-0.1)).unwrap_err();
        assert!(e.contains("between 0 and"), "{e}");
        assert!(alias_ms("k", &f(f64::NAN)).is_err());
        let e = alias_ms("k", &toml::Value::String("150ms".into())).unwrap_err();
        assert!(e.contains("not a string"), "{e}");
    }
}
