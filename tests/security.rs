//! Security (DESIGN.md 9) with real processes on loopback: the cluster
//! secret keeps a node with another secret out, a secret file that others
//! can read refuses start, and clients must AUTH. Every wait is a poll
//! against a deadline.

use sraft::kv::resp::{RespLimits, Value};
use sraft::server::Forwarder;
use sraft_testkit::{
    CALL_TIMEOUT, TestCluster, deadline_in, hermetic_command, make_certs, reserve_ports,
    run_command_to_exit, run_to_exit, sraft_bin, write_private,
};
use std::io::{Read, Write};
use std::time::Duration;

/// Loose on purpose: a loaded 2-core box running debug builds.
const ELECTION_DEADLINE: Duration = Duration::from_secs(20);
const LOG_DEADLINE: Duration = Duration::from_secs(10);

/// A node restarted with the wrong cluster secret cannot rejoin: the
/// healthy nodes refuse its connections and say why, it says why it cannot
/// connect, and the healthy nodes' leader and term do not move; writes go on
/// without it.
#[test]
fn a_node_with_the_wrong_secret_cannot_join_or_disturb_the_cluster() {
    let mut cluster = TestCluster::builder(3).cluster_secret().start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let leader = lead.leader;
    let intruder = (leader + 1) % cluster.len();
    let healthy: Vec<usize> = (0..cluster.len()).filter(|&i| i != intruder).collect();
    cluster.set(leader, "before", "1");

    cluster.kill(intruder);
    let wrong = cluster.dir().join("wrong.secret");
    write_private(&wrong, "not-the-cluster-secret\n");
    cluster.set_flag(
        intruder,
        "--cluster-secret-file",
        &wrong.display().to_string(),
    );
    let marks: Vec<u64> = (0..cluster.len()).map(|i| cluster.log_len(i)).collect();
    cluster.restart(intruder);

    let refused = cluster.wait_log_line(
        leader,
        marks[leader],
        &format!("node {intruder} authentication failed"),
        deadline_in(LOG_DEADLINE),
    );
    let refused = refused.expect("the leader logged no refusal of the intruder");
    assert!(
        refused.contains("closing connection from 127.0.0.1:"),
        "{refused}"
    );
    let own = cluster.wait_log_line(
        intruder,
        marks[intruder],
        "authentication failed",
        deadline_in(LOG_DEADLINE),
    );
    assert!(own.is_some(), "the intruder's log does not say why");
    let own = cluster.wait_log_line(
        intruder,
        marks[intruder],
        "refused our proof",
        deadline_in(LOG_DEADLINE),
    );
    assert!(
        own.is_some(),
        "the intruder's log does not say it was refused"
    );

    // Several election timeouts of the intruder's.
    std::thread::sleep(Duration::from_secs(3));
    cluster.set(leader, "after", "2");
    for &i in &healthy {
        let info = cluster.info(i).expect("a healthy node answers INFO");
        assert_eq!(info.term(), lead.term, "node {i}'s term moved");
        assert_eq!(info.leader_id(), Some(leader), "node {i}'s leader moved");
    }
    let outside = cluster.info(intruder).expect("the intruder answers INFO");
    assert_eq!(outside.leader_id(), None, "the intruder found a leader");
    assert!(
        outside.commit_index() < cluster.info(leader).unwrap().commit_index(),
        "the intruder got the new entries"
    );
    // One line per source and reason per interval, not one per attempt.
    let refusals = cluster
        .log_since(leader, marks[leader])
        .lines()
        .filter(|l| l.contains(&format!("node {intruder} authentication failed")))
        .count();
    assert!(
        refusals <= 2,
        "{refusals} refusal lines in 3 s: not rate-limited"
    );
}

/// A secret file that group or others can read, or an empty one, refuses
/// start with one line on stderr and exit status 2, before anything is
/// opened.
#[test]
fn a_bad_secret_file_refuses_start_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let ports = reserve_ports(1);
    let path = dir.path().join("secret");
    for (mode, text, expected) in [
        (
            0o644,
            "s3cret\n",
            "mode 0644 lets group or others read it; chmod 600 it",
        ),
        (0o640, "s3cret\n", "mode 0640"),
        (0o600, "\n", "empty"),
    ] {
        write_private(&path, text);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let args: Vec<String> = [
            "--node-id",
            "0",
            "--peers",
            &format!("127.0.0.1:{}", ports[0]),
            "--data-dir",
            &dir.path().join("data").display().to_string(),
            "--cluster-secret-file",
            &path.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (status, _, stderr) = run_to_exit(&args, deadline_in(Duration::from_secs(10)));
        assert_eq!(status.code(), Some(2), "{mode:o}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{mode:o}: {stderr}");
        assert!(
            stderr.starts_with("sraft: bad cluster_secret_file '"),
            "{stderr}"
        );
        assert!(stderr.contains(expected), "{mode:o}: {stderr}");
        assert!(
            !dir.path().join("data").exists(),
            "the data dir was created"
        );
    }
}

/// One request on `conn`'s cached connection (a raw client: no AUTH of
/// its own).
fn send(conn: &mut Forwarder, addr: std::net::SocketAddr, args: &[&str]) -> Value {
    let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
    conn.call(addr, &args, CALL_TIMEOUT, &RespLimits::default())
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn error(text: &str) -> Value {
    Value::Error(text.into())
}

const NOAUTH: &str = "NOAUTH Authentication required.";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// Redis's rules: before AUTH only AUTH, HELLO, PING and QUIT; NOAUTH for
/// the rest (unknown commands included); WRONGPASS for a wrong password or
/// user; after AUTH everything a Redis client may say, and a follower
/// forwards to the leader over the peer transport, where the cluster secret
/// authenticates the nodes and the client password plays no part
/// (DESIGN.md 4.4). The old internal forwarding commands are unknown
/// commands even after AUTH.
#[test]
fn a_client_must_auth_before_anything_but_ping_and_quit() {
    let cluster = TestCluster::builder(3)
        .cluster_secret()
        .client_password()
        .start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let follower = (lead.leader + 1) % cluster.len();
    let addr = cluster.client_addr(follower);
    let password = cluster.password().unwrap().to_string();

    let mut conn = Forwarder::default();
    assert_eq!(
        send(&mut conn, addr, &["PING"]),
        Value::Simple("PONG".into())
    );
    for command in [
        &["GET", "k"][..],
        &["SET", "k", "v"],
        &["INFO"],
        &["SRAFT.PROPOSE", "x"],
        &["SRAFT.LOCAL", "GET", "k"],
        &["NOSUCHCOMMAND"],
    ] {
        assert_eq!(send(&mut conn, addr, command), error(NOAUTH), "{command:?}");
    }
    assert_eq!(send(&mut conn, addr, &["AUTH", "wrong"]), error(WRONGPASS));
    assert_eq!(
        send(&mut conn, addr, &["AUTH", "alice", &password]),
        error(WRONGPASS)
    );
    assert_eq!(send(&mut conn, addr, &["GET", "k"]), error(NOAUTH));
    assert_eq!(
        send(&mut conn, addr, &["AUTH", "a", "b", "c"]),
        error("ERR wrong number of arguments for 'auth' command")
    );
    assert_eq!(send(&mut conn, addr, &["AUTH", &password]), Value::ok());
    // On a follower: forwarded to the leader over the peer connections.
    assert_eq!(send(&mut conn, addr, &["SET", "k", "v"]), Value::ok());
    for command in [&["SRAFT.PROPOSE", "x"][..], &["SRAFT.LOCAL", "GET", "k"]] {
        let reply = send(&mut conn, addr, command);
        assert!(
            matches!(&reply, Value::Error(e) if e.starts_with("ERR unknown command")),
            "{command:?}: {reply:?}"
        );
    }
    assert_eq!(
        send(&mut conn, addr, &["GET", "k"]),
        Value::Bulk(b"v".to_vec())
    );

    let mut conn = Forwarder::default();
    assert_eq!(
        send(&mut conn, addr, &["AUTH", "default", &password]),
        Value::ok()
    );
    assert_eq!(
        send(&mut conn, addr, &["GET", "k"]),
        Value::Bulk(b"v".to_vec())
    );

    let mut conn = Forwarder::default();
    let hello = send(&mut conn, addr, &["HELLO", "2"]);
    assert!(
        matches!(&hello, Value::Error(e) if e.starts_with("NOAUTH HELLO must be called")),
        "{hello:?}"
    );
    let hello = send(
        &mut conn,
        addr,
        &["HELLO", "2", "AUTH", "default", &password],
    );
    assert!(matches!(hello, Value::Array(_)), "{hello:?}");
    assert_eq!(
        send(&mut conn, addr, &["HELLO", "3"]),
        error("NOPROTO unsupported protocol version")
    );
    assert_eq!(
        send(&mut conn, addr, &["GET", "k"]),
        Value::Bulk(b"v".to_vec())
    );
    assert_eq!(send(&mut conn, addr, &["QUIT"]), Value::ok());
}

/// Runs `sraft args` with `env`, to its exit; (status code, stdout, stderr).
fn sraft(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut command = hermetic_command(sraft_bin());
    command.env_remove("SRAFT_PASSWORD");
    command.args(args).envs(env.iter().copied());
    let (status, out, err) = run_command_to_exit(command, deadline_in(Duration::from_secs(30)));
    (status.code(), out, err)
}

/// `sraft client` and `sraft status` take the password from
/// `--password-file` or SRAFT_PASSWORD; without one they are refused.
#[test]
fn the_client_tools_take_the_password_from_a_file_or_the_environment() {
    let cluster = TestCluster::builder(3).client_password().start();
    cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let peers = cluster.peers_arg();
    let file = cluster.password_path().display().to_string();
    let password = cluster.password().unwrap().to_string();

    let set = [
        "client",
        "--peers",
        &peers,
        "--password-file",
        &file,
        "set",
        "a",
        "1",
    ];
    let (code, out, err) = sraft(&set, &[]);
    assert_eq!((code, out.trim()), (Some(0), "OK"), "{err}");
    let get = ["client", "--peers", &peers, "get", "a"];
    let (code, out, err) = sraft(&get, &[("SRAFT_PASSWORD", &password)]);
    assert_eq!((code, out.trim()), (Some(0), "1"), "{err}");
    let (code, _, err) = sraft(&get, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("NOAUTH"), "{err}");
    let (code, _, err) = sraft(&get, &[("SRAFT_PASSWORD", "wrong")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("WRONGPASS"), "{err}");

    let status = [
        "status",
        "--peers",
        &peers,
        "--password-file",
        &file,
        "--json",
    ];
    let (code, out, err) = sraft(&status, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.matches("\"up\":true").count(), 3, "{out}");
}

/// redis-cli and redis-benchmark with `-a` (Debian's redis-tools).
#[test]
fn redis_cli_and_redis_benchmark_work_with_a_password() {
    if std::process::Command::new("redis-cli")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: redis-cli is not installed (apt-get install redis-tools)");
        return;
    }
    let cluster = TestCluster::builder(3).client_password().start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let port = cluster.client_addr(lead.leader).port().to_string();
    let password = cluster.password().unwrap().to_string();
    let run = |program: &str, args: &[&str]| {
        let out = std::process::Command::new("timeout")
            .arg("60")
            .arg(program)
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(args)
            .output()
            .expect("run a redis tool");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let auth = ["-a", &password, "--no-auth-warning"];
    let (code, out) = run("redis-cli", &[&auth[..], &["SET", "r", "x"]].concat());
    assert_eq!((code, out.trim()), (Some(0), "OK"));
    let (_, out) = run("redis-cli", &["GET", "r"]);
    assert!(out.contains("NOAUTH"), "{out}");
    let (code, out) = run("redis-cli", &[&auth[..], &["GET", "r"]].concat());
    assert_eq!((code, out.trim()), (Some(0), "x"));
    let bench = ["-t", "set,get", "-n", "200", "-c", "4", "-q"];
    let (code, out) = run("redis-benchmark", &[&auth[..2], &bench[..]].concat());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("SET:") && out.contains("GET:"), "{out}");
}

/// Reads from `stream` until the node closes it (a TLS alert of a few
/// bytes may come first); panics if it stays open.
fn assert_closed(mut stream: std::net::TcpStream, what: &str) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1024];
    let mut received = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) if received + n < 4096 => received += n,
            Err(e)
                if e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut =>
            {
                return;
            }
            other => panic!("{what}: the node kept the connection open: {other:?}"),
        }
    }
}

/// DESIGN.md 9 with everything on: peers over mutual TLS with the secret,
/// clients over TLS with AUTH, forwarding on the peer connections (so over
/// their TLS); plain TCP on either port is closed and the node goes on.
#[test]
fn with_tls_secret_and_password_the_cluster_serves_and_refuses_plain_tcp() {
    let cluster = TestCluster::builder(3)
        .cluster_secret()
        .client_password()
        .tls()
        .start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let follower = (lead.leader + 1) % cluster.len();
    // Through a follower: forwarded to the leader over the peers' TLS.
    cluster.set(follower, "tls-key", "tls-value");
    assert_eq!(
        cluster.get(lead.leader, "tls-key").as_deref(),
        Some("tls-value")
    );

    for (port, what) in [
        (
            cluster.client_addr(follower),
            "plain RESP on the client port",
        ),
        (cluster.peer_addr(follower), "plain bytes on the peer port"),
    ] {
        let mut stream = std::net::TcpStream::connect(port).unwrap();
        stream.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
        assert_closed(stream, what);
    }
    let mark = cluster.log_len(follower);
    assert!(
        cluster
            .wait_log_line(
                follower,
                0,
                "TLS handshake failed",
                deadline_in(LOG_DEADLINE)
            )
            .is_some(),
        "no log line for the plain-TCP clients"
    );
    let info = cluster.info(follower).expect("the node still answers");
    assert_eq!(info.term(), lead.term);
    assert!(cluster.log_since(follower, mark).lines().count() < 50);

    // The client tools with the CA and the password.
    let peers = cluster.peers_arg();
    let ca = cluster
        .tls_dir()
        .join("cluster-ca.crt")
        .display()
        .to_string();
    let pw = cluster.password_path().display().to_string();
    let get = [
        "client",
        "--peers",
        &peers,
        "--password-file",
        &pw,
        "--tls-ca-cert-file",
        &ca,
        "get",
        "tls-key",
    ];
    let (code, out, err) = sraft(&get, &[]);
    assert_eq!((code, out.trim()), (Some(0), "tls-value"), "{err}");
    let plain = [
        "client",
        "--peers",
        &peers,
        "--password-file",
        &pw,
        "get",
        "tls-key",
    ];
    let (code, _, err) = sraft(&plain, &[]);
    assert_ne!(code, Some(0), "a plain-TCP client got an answer: {err}");

    if std::process::Command::new("redis-cli")
        .arg("--version")
        .output()
        .is_ok()
    {
        let port = cluster.client_addr(lead.leader).port().to_string();
        let password = cluster.password().unwrap();
        let out = std::process::Command::new("timeout")
            .args([
                "30",
                "redis-cli",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "--tls",
                "--cacert",
                &ca,
            ])
            .args(["-a", password, "--no-auth-warning", "GET", "tls-key"])
            .output()
            .expect("run redis-cli");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout.trim(),
            "tls-value",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("skipped redis-cli --tls: redis-cli is not installed");
    }
}

/// Mutual TLS: a node whose certificate another CA signed cannot join,
/// even with the right cluster secret, and the cluster does not move.
#[test]
fn a_node_with_a_certificate_from_another_ca_cannot_join() {
    let mut cluster = TestCluster::builder(3).cluster_secret().tls().start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let leader = lead.leader;
    let intruder = (leader + 1) % cluster.len();
    cluster.kill(intruder);
    let other = make_certs(&cluster.dir().join("other-ca"), "other");
    cluster.set_flag(
        intruder,
        "--tls-cert-file",
        &other.cert.display().to_string(),
    );
    cluster.set_flag(intruder, "--tls-key-file", &other.key.display().to_string());
    let mark = cluster.log_len(leader);
    cluster.restart(intruder);
    let refused = cluster.wait_log_line(
        leader,
        mark,
        "TLS handshake failed",
        deadline_in(LOG_DEADLINE),
    );
    assert!(refused.is_some(), "the leader logged no TLS refusal");
    std::thread::sleep(Duration::from_secs(2));
    for i in (0..cluster.len()).filter(|&i| i != intruder) {
        let info = cluster.info(i).expect("a healthy node answers INFO");
        assert_eq!(info.term(), lead.term, "node {i}'s term moved");
        assert_eq!(info.leader_id(), Some(leader), "node {i}'s leader moved");
    }
    // The intruder's own log says why (its client port presents the other
    // CA's certificate, so the harness cannot ask it over INFO).
    let own = cluster.wait_log_line(
        intruder,
        0,
        "TLS handshake failed",
        deadline_in(LOG_DEADLINE),
    );
    let own = own.expect("the intruder's log does not say why");
    assert!(
        own.contains("alert") || own.contains("certificate"),
        "{own}"
    );
}
