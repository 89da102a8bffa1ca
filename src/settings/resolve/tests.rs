//! Precedence (flag > environment > file > default) for every setting that
//! has several sources, with an injected environment and an injected notion
//! of "this host's addresses".

use super::*;
use std::io::Write;

/// Five EC2-like peers on TEST-NET-1 (RFC 5737); `this_host` pretends to be
/// the last one, whatever this machine's real addresses are.
const PEERS: &str =
    "192.0.2.10:5000,192.0.2.11:5000,192.0.2.12:5000,192.0.2.13:5000,192.0.2.14:5000";
const OWN_IP: &str = "192.0.2.14";

fn this_host(ip: IpAddr) -> bool {
    ip.is_loopback() || ip == OWN_IP.parse::<IpAddr>().unwrap()
}

/// Runs the command line `sraft <args>` with `env`, and with `--config` at
/// the end pointing to a file holding `file` when there is one.
fn run(args: &[&str], env: &[(&str, &str)], file: Option<&str>) -> Result<Command, SettingsError> {
    let mut file_handle = tempfile::NamedTempFile::new().unwrap();
    let mut argv: Vec<String> = std::iter::once("sraft")
        .chain(args.iter().copied())
        .map(str::to_owned)
        .collect();
    if let Some(text) = file {
        file_handle.write_all(text.as_bytes()).unwrap();
        argv.push("--config".to_owned());
        argv.push(file_handle.path().to_str().unwrap().to_owned());
    }
    let lookup = |var: &str| {
        env.iter()
            .find(|(name, _)| *name == var)
            .map(|(_, value)| value.to_string())
    };
    command(argv, &lookup, &this_host)
}

fn server(args: &[&str], env: &[(&str, &str)], file: Option<&str>) -> Settings {
    match run(args, env, file) {
        Ok(Command::Server(settings)) => settings,
        other => panic!("expected server settings, got {other:?}"),
    }
}

fn error(args: &[&str], env: &[(&str, &str)], file: Option<&str>) -> String {
    match run(args, env, file) {
        Err(e) => e.to_string(),
        Ok(command) => panic!("expected an error, got {command:?}"),
    }
}

fn file_with(extra: &str) -> String {
    let peers: Vec<String> = PEERS.split(',').map(|p| format!("\"{p}\"")).collect();
    format!("peers = [{}]\n{extra}", peers.join(", "))
}

#[test]
fn node_id_comes_from_flag_then_env_then_file_then_discovery() {
    let file = file_with("node_id = 1\n");
    let env = [(ENV_NODE_ID, "2")];
    let id =
        |args: &[&str], env: &[(&str, &str)], file: Option<&str>| server(args, env, file).node_id;
    assert_eq!(id(&["--node-id", "3"], &env, Some(&file)), NodeId(3));
    assert_eq!(id(&[], &env, Some(&file)), NodeId(2));
    assert_eq!(id(&[], &[], Some(&file)), NodeId(1));
    assert_eq!(id(&[], &[], Some(&file_with(""))), NodeId(4));
}

#[test]
fn port_comes_from_flag_then_env_then_file_then_the_peer_list() {
    let file = file_with("node_id = 0\nport = 7001\n");
    let env = [(ENV_PORT, "7002")];
    let port = |args: &[&str], env: &[(&str, &str)], file: &str| {
        server(args, env, Some(file)).listen.port()
    };
    assert_eq!(port(&["--port", "7003"], &env, &file), 7003);
    assert_eq!(port(&[], &env, &file), 7002);
    assert_eq!(port(&[], &[], &file), 7001);
    assert_eq!(port(&[], &[], &file_with("node_id = 0\n")), 5000);
}

#[test]
fn peers_come_from_flag_then_env_then_file() {
    let file = file_with("node_id = 0\n");
    let env = [(ENV_PEERS, "192.0.2.20:5000,192.0.2.21:5000,192.0.2.22:5000")];
    let flag = ["--peers", "192.0.2.30:5000,192.0.2.31:5000,192.0.2.32:5000"];
    let first = |args: &[&str], env: &[(&str, &str)]| server(args, env, Some(&file)).peers[0];
    assert_eq!(first(&flag, &env), "192.0.2.30:5000".parse().unwrap());
    assert_eq!(first(&[], &env), "192.0.2.20:5000".parse().unwrap());
    assert_eq!(first(&[], &[]), "192.0.2.10:5000".parse().unwrap());
    assert_eq!(
        error(&["--node-id", "0"], &[], None),
        SettingsError::NoPeers.to_string()
    );
}

#[test]
fn data_dir_comes_from_flag_then_env_then_file_then_default_with_id_substituted() {
    let file = file_with("data_dir = \"file/n{id}\"\n");
    let env = [(ENV_DATA_DIR, "env/n{id}")];
    let dir =
        |args: &[&str], env: &[(&str, &str)], file: &str| server(args, env, Some(file)).data_dir;
    assert_eq!(
        dir(&["--data-dir", "flag/n{id}"], &env, &file),
        Path::new("flag/n4")
    );
    assert_eq!(dir(&[], &env, &file), Path::new("env/n4"));
    assert_eq!(dir(&[], &[], &file), Path::new("file/n4"));
    assert_eq!(dir(&[], &[], &file_with("")), Path::new("./data/node-4"));
}

#[test]
fn mode_comes_from_flag_then_env_then_file_then_s_raft() {
    let file = file_with("[raft]\nenable_subleader = false\n");
    let on = |args: &[&str], env: &[(&str, &str)], file: &str| {
        server(args, env, Some(file)).raft.enable_subleader
    };
    let env_on = [(ENV_ENABLE_SUBLEADER, "true")];
    assert!(!on(&["--original-raft"], &env_on, &file_with("")));
    assert!(on(&[], &env_on, &file));
    assert!(!on(&[], &[(ENV_ENABLE_SUBLEADER, "0")], &file_with("")));
    assert!(!on(&[], &[], &file));
    assert!(on(&[], &[], &file_with("")));
}

#[test]
fn cluster_id_debug_and_metrics_come_from_flag_then_file() {
    let file = file_with("cluster_id = \"prod\"\ndebug = true\nmetrics_file = \"m/{id}.jsonl\"\n");
    let from_flags = server(
        &["--cluster-id", "test", "--metrics-file", "x-{id}.jsonl"],
        &[],
        Some(&file),
    );
    assert_eq!(from_flags.cluster_id, "test");
    assert_eq!(
        from_flags.metrics_file.as_deref(),
        Some(Path::new("x-4.jsonl"))
    );
    let from_file = server(&[], &[], Some(&file));
    assert_eq!(from_file.cluster_id, "prod");
    assert!(from_file.debug);
    assert_eq!(
        from_file.metrics_file.as_deref(),
        Some(Path::new("m/4.jsonl"))
    );
    let defaults = server(&["--peers", PEERS], &[], None);
    assert_eq!(defaults.cluster_id, CLUSTER_ID_DEFAULT);
    assert!(!defaults.debug);
    assert_eq!(defaults.metrics_file, None);
}

#[test]
fn metrics_addr_comes_from_flag_then_file_and_is_off_by_default() {
    let file = file_with("metrics_addr = \"0.0.0.0:9100\"\n");
    let from_file = server(&[], &[], Some(&file));
    assert_eq!(
        from_file.metrics_addr,
        Some("0.0.0.0:9100".parse().unwrap())
    );
    let from_flag = server(&["--metrics-addr", "127.0.0.1:9200"], &[], Some(&file));
    assert_eq!(
        from_flag.metrics_addr,
        Some("127.0.0.1:9200".parse().unwrap())
    );
    assert_eq!(server(&["--peers", PEERS], &[], None).metrics_addr, None);
    // `:PORT`: this node's own bind address.
    let own = server(
        &[
            "--peers",
            PEERS,
            "--host",
            OWN_IP,
            "--metrics-addr",
            ":9100",
        ],
        &[],
        None,
    );
    assert_eq!(own.metrics_addr, Some("192.0.2.14:9100".parse().unwrap()));
}

#[test]
fn a_bad_or_clashing_metrics_addr_is_named() {
    let e = |addr: &str| error(&["--peers", PEERS, "--metrics-addr", addr], &[], None);
    assert_eq!(
        e("localhost"),
        "bad metrics_addr: 'localhost' is not IP:PORT or :PORT (e.g. 127.0.0.1:9100)"
    );
    assert_eq!(
        e("127.0.0.1:0"),
        "bad metrics_addr: '127.0.0.1:0' needs a port (1-65535)"
    );
    assert_eq!(
        e("192.0.2.14:6000"),
        "bad metrics_addr: 192.0.2.14:6000 is also the client address 0.0.0.0:6000"
    );
    assert_eq!(
        e("0.0.0.0:5000"),
        "bad metrics_addr: 0.0.0.0:5000 is also the peer address 0.0.0.0:5000"
    );
}

#[test]
fn network_node_binds_every_interface_on_its_listed_ports() {
    let settings = server(&["--peers", PEERS], &[], None);
    assert_eq!(settings.listen, "0.0.0.0:5000".parse().unwrap());
    assert_eq!(settings.client_listen, "0.0.0.0:6000".parse().unwrap());
    assert_eq!(settings.client_addrs[1], "192.0.2.11:6000".parse().unwrap());
    assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);
    let bound = server(&["--peers", PEERS, "--host", "192.0.2.14"], &[], None);
    assert_eq!(bound.listen, "192.0.2.14:5000".parse().unwrap());
}

#[test]
fn loopback_node_binds_its_own_loopback_address() {
    let peers = "127.0.0.1:5000,127.0.0.1:5001,127.0.0.1:5002";
    let settings = server(&["--peers", peers, "--port", "5002"], &[], None);
    assert_eq!(settings.node_id, NodeId(2));
    assert_eq!(settings.listen, "127.0.0.1:5002".parse().unwrap());
    assert_eq!(settings.client_listen, "127.0.0.1:6002".parse().unwrap());
}

#[test]
fn client_port_offset_and_explicit_client_port() {
    let offset = server(&[], &[], Some(&file_with("client_port_offset = 100\n")));
    assert_eq!(offset.client_listen.port(), 5100);
    assert_eq!(offset.client_addrs[0].port(), 5100);
    let explicit = server(&["--peers", PEERS, "--client-port", "9000"], &[], None);
    assert_eq!(explicit.client_listen.port(), 9000);
    assert!(
        explicit.warnings[0].contains("expect it at 192.0.2.14:6000"),
        "{:?}",
        explicit.warnings
    );
}

#[test]
fn port_that_disagrees_with_the_peer_list_binds_and_warns() {
    let settings = server(
        &["--peers", PEERS, "--node-id", "4", "--port", "7000"],
        &[],
        None,
    );
    assert_eq!(settings.listen.port(), 7000);
    assert!(
        settings.warnings[0].contains("peers will dial 192.0.2.14:5000"),
        "{:?}",
        settings.warnings
    );
}

#[test]
fn bad_environment_values_name_the_variable() {
    let args = ["--peers", PEERS];
    assert_eq!(
        error(&args, &[(ENV_NODE_ID, "two")], None),
        "bad RAFT_NODE_ID='two': not a node id (a number from 0)"
    );
    assert_eq!(
        error(&args, &[(ENV_PORT, "0")], None),
        "bad RAFT_PORT='0': not a port (1-65535)"
    );
    assert_eq!(
        error(&args, &[(ENV_ENABLE_SUBLEADER, "yes please")], None),
        "bad ENABLE_SUBLEADER='yes please': expected true, false, 1 or 0"
    );
}

#[test]
fn empty_environment_variables_count_as_unset() {
    let env = [
        (ENV_NODE_ID, ""),
        (ENV_PORT, " "),
        (ENV_ENABLE_SUBLEADER, ""),
    ];
    let settings = server(&["--peers", PEERS], &env, None);
    assert_eq!(settings.node_id, NodeId(4));
    assert!(settings.raft.enable_subleader);
}

#[test]
fn out_of_range_node_id_is_named() {
    assert_eq!(
        error(&["--peers", PEERS, "--node-id", "5"], &[], None),
        "node id 5 is out of range: the peer list has 5 entries (ids 0..=4)"
    );
}

#[test]
fn invalid_values_are_named_by_key() {
    let file = |extra: &str| Some(file_with(extra));
    let e = error(
        &[],
        &[],
        file("[raft]\nheartbeat_interval_ms = 0\n").as_deref(),
    );
    assert_eq!(e, "invalid raft config: heartbeat_interval_ms must be > 0");
    let e = error(&[], &[], file("client_port_offset = 61000\n").as_deref());
    assert!(e.starts_with("bad client_port_offset: 61000"), "{e}");
    let e = error(
        &["--peers", "127.0.0.1:5000,127.0.0.1:5001", "--node-id", "0"],
        &[],
        Some("client_port_offset = 1\n"),
    );
    assert_eq!(
        e,
        "bad client_port_offset: 1 puts a client port on peer address 127.0.0.1:5001"
    );
    let e = error(&["--client-port", "5000"], &[], file("").as_deref());
    assert_eq!(e, "bad client_port: 5000 is also the peer port");
    let e = error(&["--cluster-id", "my cluster"], &[], file("").as_deref());
    assert!(e.starts_with("bad cluster_id: 'my cluster'"), "{e}");
    let e = error(&["--host", "eth0"], &[], file("").as_deref());
    assert!(e.starts_with("bad host 'eth0'"), "{e}");
}

#[test]
fn the_limits_table_comes_from_the_file_and_is_validated_at_start_up() {
    // DESIGN.md 7: "One table of limits, validated at start-up with their
    // relations asserted".
    let settings = server(&["--node-id", "0"], &[], Some(&file_with("")));
    assert_eq!(settings.raft.limits, Limits::default());
    let file = file_with("[limits]\nvalue_bytes_max = 4194304\n");
    let settings = server(&["--node-id", "0"], &[], Some(&file));
    assert_eq!(settings.raft.limits, Limits::derive(4 << 20));
    let file = file_with("[limits]\nvalue_bytes_max = 4194304\nframe_bytes_max = 1048576\n");
    assert_eq!(
        error(&["--node-id", "0"], &[], Some(&file)),
        "bad limits.frame_bytes_max: append_bytes_max + 256=4260096 exceeds \
         frame_bytes_max=1048576 (one frame must carry the largest Append)"
    );
}

#[test]
fn suspicious_clusters_are_warned_about() {
    let even = server(&["--peers", "192.0.2.13:5000,192.0.2.14:5000"], &[], None);
    assert!(
        even.warnings[0].starts_with("2 nodes tolerate 0 failure(s)"),
        "{:?}",
        even.warnings
    );
    let mixed_peers = "127.0.0.1:5000,192.0.2.13:5000,192.0.2.14:5000";
    let mixed = server(&["--peers", mixed_peers, "--node-id", "2"], &[], None);
    assert!(
        mixed.warnings[0].contains("cannot reach 127.0.0.1:5000"),
        "{:?}",
        mixed.warnings
    );
    let single = server(&["--peers", "127.0.0.1:5000"], &[], None);
    assert!(single.warnings.is_empty(), "{:?}", single.warnings);
}

#[test]
fn client_and_status_find_the_cluster_like_the_server() {
    let file = file_with("client_port_offset = 10\n");
    match run(&["client", "incr", "hits"], &[], None) {
        Err(SettingsError::NoPeers) => {}
        other => panic!("{other:?}"),
    }
    let env = [(ENV_PEERS, "192.0.2.20:5000")];
    let Ok(Command::Client(client)) = run(&["client", "get", "k"], &env, None) else {
        panic!("client from env");
    };
    assert_eq!(
        client.client_addrs,
        vec!["192.0.2.20:6000".parse().unwrap()]
    );
    assert_eq!(client.op, ClientOp::Get { key: "k".into() });

    let mut argv = vec!["status", "--json"];
    let path = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(path.path(), &file).unwrap();
    let path_str = path.path().to_str().unwrap();
    argv.extend(["--config", path_str]);
    let Ok(Command::Status(status)) = run(&argv, &env, None) else {
        panic!("status from file");
    };
    assert!(status.json);
    // RAFT_PEERS beats the file's peers; the file's offset still applies.
    assert_eq!(
        status.client_addrs,
        vec!["192.0.2.20:5010".parse().unwrap()]
    );
}

#[test]
fn server_flags_do_not_mix_with_subcommands() {
    let Err(SettingsError::Usage(e)) = run(&["--node-id", "1", "status"], &[], None) else {
        panic!("expected a usage error");
    };
    assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
}

#[test]
fn cluster_secret_file_comes_from_flag_then_file_and_is_checked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str, mode: u32| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path.display().to_string()
    };
    let from_file = write("file.secret", "from-file\n", 0o600);
    let from_flag = write("flag.secret", "from-flag\n", 0o400);
    let open = write("open.secret", "x", 0o644);
    let file = file_with(&format!("cluster_secret_file = \"{from_file}\"\n"));
    let settings = server(&["--node-id", "1"], &[], Some(&file));
    assert_eq!(settings.cluster_secret, Some(Secret::new("from-file")));
    let args = ["--node-id", "1", "--cluster-secret-file", &from_flag];
    let settings = server(&args, &[], Some(&file));
    assert_eq!(settings.cluster_secret, Some(Secret::new("from-flag")));
    let none = server(&["--node-id", "1", "--peers", PEERS], &[], None);
    assert_eq!(none.cluster_secret, None);
    let args = [
        "--node-id",
        "1",
        "--peers",
        PEERS,
        "--cluster-secret-file",
        &open,
    ];
    assert_eq!(
        error(&args, &[], None),
        format!(
            "bad cluster_secret_file '{open}': mode 0644 lets group or others read it; chmod 600 it"
        )
    );
}

#[test]
fn client_password_comes_from_password_file_then_env_then_config() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path.display().to_string()
    };
    let server_file = write("server.pw", "from-config\n");
    let flag_file = write("flag.pw", "from-flag\n");
    let config = file_with(&format!("client_password_file = \"{server_file}\"\n"));
    let password =
        |args: &[&str], env: &[(&str, &str)], file: Option<&str>| match run(args, env, file) {
            Ok(Command::Status(s)) => s.password,
            other => panic!("expected status settings, got {other:?}"),
        };
    let env = [(ENV_PASSWORD, "from-env")];
    let with_flag = ["status", "--password-file", &flag_file];
    assert_eq!(
        password(&with_flag, &env, Some(&config)),
        Some(Secret::new("from-flag"))
    );
    assert_eq!(
        password(&["status"], &env, Some(&config)),
        Some(Secret::new("from-env"))
    );
    assert_eq!(
        password(&["status"], &[], Some(&config)),
        Some(Secret::new("from-config"))
    );
    assert_eq!(password(&["status", "--peers", PEERS], &[], None), None);
    let settings = server(&["--node-id", "1"], &[], Some(&config));
    assert_eq!(settings.client_password, Some(Secret::new("from-config")));
}

#[test]
fn tls_files_go_together_and_a_bad_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.crt").display().to_string();
    let base = ["--node-id", "1", "--peers", PEERS];
    let only_cert = [&base[..], &["--tls-cert-file", &missing]].concat();
    assert_eq!(
        error(&only_cert, &[], None),
        "bad tls: tls_cert_file, tls_key_file and tls_ca_cert_file go together: give all three or none"
    );
    let all = [
        &base[..],
        &[
            "--tls-cert-file",
            &missing,
            "--tls-key-file",
            &missing,
            "--tls-ca-cert-file",
            &missing,
        ],
    ]
    .concat();
    let text = error(&all, &[], None);
    assert!(
        text.starts_with(&format!("bad tls: cannot read tls_cert_file '{missing}'")),
        "{text}"
    );
    assert!(!text.contains('\n'), "{text}");
    assert_eq!(server(&base, &[], None).tls, None);
}
