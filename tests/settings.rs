//! The `sraft` command line through the public API, with this host's real
//! addresses: the shipped config files, discovery on loopback, and the
//! one-line error for each way a configuration can be wrong.

use clap::error::ErrorKind;
use sraft::core::{NodeId, RaftConfig, ReadMode};
use sraft::limits::Limits;
use sraft::settings::{ClientOp, Command, Settings, SettingsError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(args: &[&str]) -> Result<Command, SettingsError> {
    Settings::from_args(
        std::iter::once("sraft").chain(args.iter().copied()),
        &no_env,
    )
}

fn server(args: &[&str]) -> Settings {
    match parse(args) {
        Ok(Command::Server(settings)) => settings,
        other => panic!("sraft {args:?}: expected server settings, got {other:?}"),
    }
}

fn error(args: &[&str]) -> String {
    match parse(args) {
        Err(SettingsError::Usage(e)) => panic!("sraft {args:?}: usage error {e}"),
        Err(e) => e.to_string(),
        Ok(command) => panic!("sraft {args:?}: expected an error, got {command:?}"),
    }
}

fn conf(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "conf", name].iter().collect();
    path.to_str().unwrap().to_owned()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn local_5_conf_describes_five_loopback_nodes() {
    let settings = server(&["--config", &conf("local-5.toml"), "--node-id", "2"]);
    assert_eq!(settings.node_id, NodeId(2));
    assert_eq!(settings.cluster_id, "local-5");
    assert_eq!(settings.peers.len(), 5);
    assert_eq!(settings.peers[4], addr("127.0.0.1:5004"));
    assert_eq!(settings.listen, addr("127.0.0.1:5002"));
    assert_eq!(settings.client_listen, addr("127.0.0.1:6002"));
    let client_ports: Vec<u16> = settings.client_addrs.iter().map(|a| a.port()).collect();
    assert_eq!(client_ports, vec![6000, 6001, 6002, 6003, 6004]);
    assert_eq!(settings.data_dir, Path::new("data/node-2"));
    assert!(settings.raft.enable_subleader);
    // What a new user starts with (scripts/start_local.sh): the defaults.
    assert_eq!(settings.raft, RaftConfig::default());
    assert!(settings.storage.fsync);
    assert_eq!(settings.raft.limits, Limits::default());
    assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);
}

#[test]
fn ec2_conf_describes_five_vpc_nodes_bound_to_every_interface() {
    let settings = server(&["--config", &conf("ec2-example.toml"), "--node-id", "1"]);
    assert_eq!(settings.cluster_id, "ec2-5");
    assert_eq!(settings.peers[1], addr("10.0.1.11:5000"));
    assert_eq!(settings.listen, addr("0.0.0.0:5000"));
    assert_eq!(settings.client_listen, addr("0.0.0.0:6000"));
    assert_eq!(settings.client_addrs[4], addr("10.0.1.14:6000"));
    assert_eq!(settings.data_dir, Path::new("data/node-1"));
    assert_eq!(
        settings.metrics_file.as_deref(),
        Some(Path::new("logs/metrics-node-1.jsonl"))
    );
    assert_eq!(settings.raft, RaftConfig::default());
    let original = server(&[
        "--config",
        &conf("ec2-example.toml"),
        "--node-id",
        "1",
        "--original-raft",
    ]);
    assert!(!original.raft.enable_subleader);
}

#[test]
fn loopback_node_is_discovered_by_its_port() {
    let settings = server(&["--config", &conf("local-5.toml"), "--port", "5003"]);
    assert_eq!(settings.node_id, NodeId(3));
    assert_eq!(settings.listen, addr("127.0.0.1:5003"));
}

#[test]
fn loopback_cluster_without_id_or_port_is_ambiguous() {
    assert_eq!(
        error(&["--config", &conf("local-5.toml")]),
        "several peers are this host (ids 0,1,2,3,4); pass --node-id or --port"
    );
}

#[test]
fn host_that_is_no_peer_asks_for_node_id() {
    // TEST-NET-3 (RFC 5737). Documentation ranges do get assigned in
    // containers (this suite once ran on 192.0.2.2), so check first.
    let peers = ["203.0.113.1:5000", "203.0.113.2:5000", "203.0.113.3:5000"];
    let local = |peer: &&str| std::net::UdpSocket::bind(addr(peer).ip().to_string() + ":0").is_ok();
    if peers.iter().any(local) {
        eprintln!("skipped: this host owns one of {peers:?}");
        return;
    }
    assert_eq!(
        error(&["--peers", &peers.join(",")]),
        "this host is none of the peers (203.0.113.1:5000, 203.0.113.2:5000, 203.0.113.3:5000); pass --node-id"
    );
}

#[test]
fn bad_peer_lists_are_named() {
    let cases = [
        (
            "10.0.1.10:5000,10.0.1.x:5000",
            "bad peer '10.0.1.x:5000': invalid IP address",
        ),
        (
            "10.0.1.10:99999",
            "bad peer '10.0.1.10:99999': invalid port '99999' (must be 1-65535)",
        ),
        (
            "10.0.1.10:5000,10.0.1.10:5000",
            "duplicate peer 10.0.1.10:5000: ids 0 and 1 are the same address",
        ),
        (
            "",
            "no peers: pass --peers, set RAFT_PEERS, or list peers in the config file",
        ),
    ];
    for (peers, expected) in cases {
        assert_eq!(error(&["--node-id", "0", "--peers", peers]), expected);
    }
    let unresolvable = error(&["--node-id", "0", "--peers", "no-such-node.invalid:5000"]);
    assert!(
        unresolvable.starts_with("bad peer 'no-such-node.invalid:5000': cannot resolve host"),
        "{unresolvable}"
    );
}

#[test]
fn node_id_beyond_the_peer_list_is_named() {
    assert_eq!(
        error(&["--config", &conf("local-5.toml"), "--node-id", "5"]),
        "node id 5 is out of range: the peer list has 5 entries (ids 0..=4)"
    );
}

#[test]
fn environment_is_read_through_the_injected_lookup() {
    let env = |var: &str| match var {
        "RAFT_PEERS" => Some("127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002".to_owned()),
        "RAFT_PORT" => Some("7001".to_owned()),
        "ENABLE_SUBLEADER" => Some("false".to_owned()),
        "RAFT_DATA_DIR" => Some("/var/lib/sraft/{id}".to_owned()),
        _ => None,
    };
    let Ok(Command::Server(settings)) = Settings::from_args(["sraft"], &env) else {
        panic!("expected server settings");
    };
    assert_eq!(settings.node_id, NodeId(1));
    assert_eq!(settings.client_listen, addr("127.0.0.1:8001"));
    assert!(!settings.raft.enable_subleader);
    assert_eq!(settings.data_dir, Path::new("/var/lib/sraft/1"));
}

#[test]
fn unknown_config_key_is_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.toml");
    std::fs::write(
        &path,
        "peers = [\"127.0.0.1:5000\"]\n\n[raft]\nheartbeat_ms = 10\n",
    )
    .unwrap();
    let e = error(&["--config", path.to_str().unwrap()]);
    assert!(
        e.contains("typo.toml' line 4: unknown field `heartbeat_ms`"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn missing_config_file_is_named() {
    let e = error(&["--config", "/nonexistent/sraft.toml"]);
    assert!(
        e.starts_with("cannot read config file '/nonexistent/sraft.toml': "),
        "{e}"
    );
}

#[test]
fn help_and_version_are_clap_outcomes_for_main_to_exit_with() {
    let Err(SettingsError::Usage(help)) = parse(&["--help"]) else {
        panic!("--help");
    };
    assert_eq!(help.kind(), ErrorKind::DisplayHelp);
    let text = help.to_string();
    for expected in [
        "--node-id",
        "--peers",
        "--original-raft",
        "RAFT_NODE_ID",
        "client",
        "status",
    ] {
        assert!(text.contains(expected), "help lacks {expected}:\n{text}");
    }
    let Err(SettingsError::Usage(version)) = parse(&["--version"]) else {
        panic!("--version");
    };
    assert_eq!(version.kind(), ErrorKind::DisplayVersion);
    let Err(SettingsError::Usage(bad)) = parse(&["--port", "seventy"]) else {
        panic!("bad --port");
    };
    assert_eq!(bad.kind(), ErrorKind::ValueValidation);
}

#[test]
fn client_commands_parse_into_typed_ops() {
    let peers = "127.0.0.1:5000,127.0.0.1:5001,127.0.0.1:5002";
    let Ok(Command::Client(client)) =
        parse(&["client", "--peers", peers, "cas", "k", "old", "new"])
    else {
        panic!("client cas");
    };
    assert_eq!(
        client.op,
        ClientOp::Cas {
            key: "k".into(),
            expected: "old".into(),
            new: "new".into()
        }
    );
    assert_eq!(client.client_addrs[2], addr("127.0.0.1:6002"));
    let Ok(Command::Status(status)) = parse(&["status", "--config", &conf("local-5.toml")]) else {
        panic!("status from conf");
    };
    assert_eq!(status.peers.len(), 5);
    assert!(!status.json);
    let Err(SettingsError::Usage(missing)) = parse(&["client", "--peers", peers, "set", "k"])
    else {
        panic!("set without value");
    };
    assert_eq!(missing.kind(), ErrorKind::MissingRequiredArgument);
}

/// Issue 13: "the seed's `RaftConfig` names and units (`primary_timeout_min
/// = 0.15` in seconds, etc.) are accepted as aliases of today's `*_ms` keys"
/// and "the seed's exact timings stay available as a config file in
/// `conf/`".
#[test]
fn seed_timings_conf_gives_seed_000s_raft_config() {
    let settings = server(&["--config", &conf("seed-timings.toml"), "--node-id", "0"]);
    let raft = &settings.raft;
    // Seed 000, "RaftConfig 주요 설정", value by value.
    assert_eq!(raft.heartbeat_interval_ms, 50);
    assert!(raft.enable_subleader);
    assert_eq!(raft.subleader_ratio, 0.4);
    assert_eq!(
        (raft.primary_timeout_ms_min, raft.primary_timeout_ms_max),
        (150, 200)
    );
    assert_eq!(
        (raft.secondary_timeout_ms_min, raft.secondary_timeout_ms_max),
        (250, 350)
    );
    assert_eq!(
        (raft.follower_timeout_ms_min, raft.follower_timeout_ms_max),
        (300, 1000)
    );
    assert_eq!(raft.leader_stickiness_ms, 100);
    assert!(!raft.primary_timeout_adaptive, "the seed draws its timeout");
    assert_eq!(*raft, RaftConfig::default().seed_timings());
    assert_eq!(settings.peers.len(), 5);
    assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);
}

#[test]
fn every_seed_name_is_an_alias_of_its_ms_key() {
    // A valid value for each, off the default so that it shows.
    let cases = [
        ("heartbeat_interval", "0.04", 40),
        ("primary_timeout_min", "0.16", 160),
        ("primary_timeout_max", "0.21", 210),
        ("secondary_timeout_min", "0.26", 260),
        ("secondary_timeout_max", "0.36", 360),
        ("follower_timeout_min", "0.31", 310),
        ("follower_timeout_max", "1.5", 1500),
    ];
    let aliases = sraft::settings::SEED_ALIASES;
    assert_eq!(aliases.len(), cases.len());
    for ((seed, ms_key), (name, seconds, ms)) in aliases.iter().zip(cases) {
        assert_eq!(*seed, name);
        // Over the seed's timings: today's defaults (issue 13) are too
        // tight for a seed-sized value of one key alone to validate.
        let base = seed_timings_except(ms_key);
        let by_seed = with_raft_table(&format!("{base}{seed} = {seconds}\n")).raft;
        let by_ms = with_raft_table(&format!("{base}{ms_key} = {ms}\n")).raft;
        assert_eq!(by_seed, by_ms, "{seed} = {seconds} vs {ms_key} = {ms}");
        let fields = toml::Value::try_from(&by_seed).unwrap();
        assert_eq!(fields[*ms_key].as_integer(), Some(ms), "{ms_key}");
    }
}

/// Issue 13: "a file mixing both for one setting is an error naming both".
#[test]
fn one_setting_under_both_names_is_a_one_line_error_naming_both_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.toml");
    std::fs::write(
        &path,
        "peers = [\"127.0.0.1:5000\"]\n[raft]\nheartbeat_interval = 0.05\nheartbeat_interval_ms = 50\n",
    )
    .unwrap();
    let e = error(&["--config", path.to_str().unwrap()]);
    assert!(e.contains("mixed.toml' line 4: "), "{e}");
    assert!(e.contains("`heartbeat_interval`"), "{e}");
    assert!(e.contains("`heartbeat_interval_ms`"), "{e}");
    assert!(!e.contains('\n'), "{e}");

    // The binary: that line on stderr, status 2, nothing opened.
    let data_dir = dir.path().join("data");
    let mut child = Process::new(env!("CARGO_BIN_EXE_sraft"))
        .args(["--config", path.to_str().unwrap(), "--node-id", "0"])
        .arg("--data-dir")
        .arg(&data_dir)
        .env_remove("RAFT_PEERS")
        .env_remove("RAFT_NODE_ID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sraft");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sraft with a mixed config did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(stderr, format!("sraft: {e}\n"));
    assert!(!data_dir.exists(), "the data dir was created");
}

#[test]
fn a_bad_value_given_by_its_seed_name_is_reported_with_that_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverted.toml");
    std::fs::write(
        &path,
        "peers = [\"127.0.0.1:5000\"]\n[raft]\nprimary_timeout_min = 0.3\n",
    )
    .unwrap();
    assert_eq!(
        error(&["--config", path.to_str().unwrap()]),
        format!(
            "invalid raft config: primary_timeout_ms_min=300 is above primary_timeout_ms_max={} \
             (in the file, `primary_timeout_min` (seconds) sets primary_timeout_ms_min)",
            RaftConfig::default().primary_timeout_ms_max
        )
    );
}

/// Settings of a one-node cluster whose `[raft]` table is `raft`.
/// `RaftConfig::seed_timings` as `[raft]` lines, leaving out `ms_key`.
fn seed_timings_except(ms_key: &str) -> String {
    let seed = toml::Value::try_from(RaftConfig::default().seed_timings()).unwrap();
    let mut keys: Vec<&str> = sraft::settings::SEED_ALIASES
        .iter()
        .map(|(_, ms)| *ms)
        .collect();
    keys.extend(["leader_stickiness_ms", "primary_timeout_adaptive"]);
    keys.iter()
        .filter(|k| **k != ms_key)
        .map(|k| format!("{k} = {}\n", seed[*k]))
        .collect()
}

fn with_raft_table(raft: &str) -> Settings {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft.toml");
    std::fs::write(
        &path,
        format!("peers = [\"127.0.0.1:5000\"]\n[raft]\n{raft}"),
    )
    .unwrap();
    server(&["--config", path.to_str().unwrap(), "--node-id", "0"])
}

#[test]
fn join_takes_its_address_from_host_and_port_and_ignores_the_files_peers() {
    let settings = server(&[
        "--join",
        "--node-id",
        "7",
        "--host",
        "127.0.0.1",
        "--port",
        "5007",
        "--config",
        &conf("local-5.toml"),
    ]);
    assert!(settings.join);
    assert_eq!(settings.node_id, NodeId(7));
    assert!(settings.peers.is_empty(), "{:?}", settings.peers);
    assert_eq!(settings.peer_addr, addr("127.0.0.1:5007"));
    assert_eq!(settings.listen, addr("127.0.0.1:5007"));
    assert_eq!(settings.client_listen, addr("127.0.0.1:6007"));
    assert_eq!(settings.data_dir, Path::new("data/node-7"));
}

#[test]
fn join_refuses_what_it_cannot_work_with() {
    let join = |extra: &[&str]| {
        let mut args = vec!["--join"];
        args.extend_from_slice(extra);
        error(&args)
    };
    let e = join(&["--host", "127.0.0.1", "--port", "5007"]);
    assert!(e.contains("--join needs --node-id"), "{e}");
    let e = join(&["--node-id", "7", "--port", "5007"]);
    assert!(e.contains("--join needs --host"), "{e}");
    let e = join(&["--node-id", "7", "--host", "0.0.0.0"]);
    assert!(e.contains("not 0.0.0.0"), "{e}");
    let e = join(&[
        "--node-id",
        "7",
        "--host",
        "127.0.0.1",
        "--peers",
        "127.0.0.1:5000",
    ]);
    assert!(e.contains("--join and --peers exclude each other"), "{e}");
    let e = join(&[
        "--node-id",
        "7",
        "--host",
        "127.0.0.1",
        "--port",
        "5007",
        "--client-port",
        "5007",
    ]);
    assert!(e.contains("also the peer port"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn member_commands_take_endpoints_instead_of_peers() {
    match parse(&[
        "member",
        "--endpoints",
        "127.0.0.1:6000,127.0.0.1:6007",
        "add",
        "7",
        "127.0.0.1:5007",
    ]) {
        Ok(Command::Member(m)) => {
            assert_eq!(
                m.cluster.client_addrs,
                vec![addr("127.0.0.1:6000"), addr("127.0.0.1:6007")]
            );
            assert!(m.cluster.peers.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let e = error(&["member", "--endpoints", "nonsense", "list"]);
    assert!(e.contains("endpoints"), "{e}");
}

#[test]
fn read_mode_and_drift_bound_come_from_the_file_and_the_flags() {
    // DESIGN.md 3.8: ReadIndex stays the default; lease mode is opt-in.
    let default = with_raft_table("");
    assert_eq!(default.raft.read_mode, ReadMode::ReadIndex);
    let lease = with_raft_table("read_mode = \"lease\"\nclock_drift_ppm_max = 1000\n");
    assert_eq!(lease.raft.read_mode, ReadMode::Lease);
    assert_eq!(lease.raft.clock_drift_ppm_max, 1000);
    let flags = server(&[
        "--peers",
        "127.0.0.1:5000",
        "--node-id",
        "0",
        "--read-mode",
        "lease",
        "--clock-drift-ppm-max",
        "20000",
    ]);
    assert_eq!(flags.raft.read_mode, ReadMode::Lease);
    assert_eq!(flags.raft.clock_drift_ppm_max, 20_000);
}

#[test]
fn bad_read_mode_settings_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, raft: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!("peers = [\"127.0.0.1:5000\"]\n[raft]\n{raft}"),
        )
        .unwrap();
        error(&["--config", path.to_str().unwrap(), "--node-id", "0"])
    };
    let cases = [
        (
            "mode.toml",
            "read_mode = \"leases\"\n",
            "unknown variant `leases`",
        ),
        (
            "drift.toml",
            "clock_drift_ppm_max = 2000000\n",
            "clock_drift_ppm_max=2000000 is above 1000000",
        ),
        (
            "short.toml",
            "read_mode = \"lease\"\nleader_stickiness_ms = 10\n",
            "read_mode=lease: the lease (leader_stickiness_ms=10",
        ),
    ];
    for (name, raft, expected) in cases {
        let e = write(name, raft);
        assert!(e.contains(expected), "{raft:?}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
    // A flag with a bad mode is clap's usage error, naming the value.
    match parse(&["--peers", "127.0.0.1:5000", "--read-mode", "fast"]) {
        Err(SettingsError::Usage(e)) => assert!(e.to_string().contains("fast"), "{e}"),
        other => panic!("expected a usage error, got {other:?}"),
    }
}
