//! End to end test of the EC2 deployment scripts (`scripts/*_all.sh`,
//! `setup_ec2.sh`, `start_node.sh`, `stop_node.sh`), run for real against five
//! nodes on this machine: deploy, start, one leader in `status_all.sh`, stop,
//! no process left behind.
//!
//! Transport: when `/usr/sbin/sshd` exists (Debian: `apt-get install -y
//! openssh-server`), the test starts a private sshd on 127.0.0.1 with a
//! throwaway host key and user key, and the scripts reach every "instance"
//! over real ssh. Otherwise, or with `SRAFT_TEST_RUNNER=local`, the scripts
//! run with `SRAFT_SSH=local`, the documented runner that executes each node
//! command with bash on this machine instead of over ssh; the test says which
//! one it used.
//!
//! Nodes are 127.0.0.11-15, all on one peer port in 29000-30999 (clients on
//! that port + 1000), each installed in its own directory as if it were its
//! own instance. Every script call has a deadline; the guard kills only what
//! this test started (its sshd, and the node pids recorded under its own
//! temporary directory).

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const NODES: usize = 5;
const SCRIPTS: [&str; 11] = [
    "make_certs.sh",
    "bench_security.sh",
    "setup_ec2.sh",
    "start_node.sh",
    "stop_node.sh",
    "deploy_all.sh",
    "start_all.sh",
    "stop_all.sh",
    "status_all.sh",
    "add_node.sh",
    "remove_node.sh",
];

fn script(name: &str) -> PathBuf {
    Path::new(ROOT).join("scripts").join(name)
}

/// Runs a command with a deadline; returns its exit status and combined
/// output. Output goes to a file, not a pipe, so a background process that
/// inherited it cannot make the call hang. On timeout the command's whole
/// process group is killed (it runs in a group of its own).
fn run(mut cmd: Command, what: &str, timeout: Duration, scratch: &Path) -> (ExitStatus, String) {
    let out_path = scratch.join("last-command.out");
    let out = fs::File::create(&out_path).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > timeout {
            kill_group(child.id());
            let _ = child.wait();
            let mut text = String::new();
            let _ = fs::File::open(&out_path).and_then(|mut f| f.read_to_string(&mut text));
            panic!("{what}: still running after {timeout:?}; killed. Output:\n{text}");
        }
        sleep(Duration::from_millis(50));
    };
    let text = fs::read_to_string(&out_path).unwrap_or_default();
    println!("$ {what}  ->  {status} in {:.1?}\n{text}", start.elapsed());
    (status, text)
}

fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// A live (not zombie) process.
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Live processes whose command line mentions `needle` (our temp dir).
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let line = cmdline(pid);
        if pid != me && line.contains(needle) && alive(pid) {
            found.push((pid, line));
        }
    }
    found
}

/// A peer port P such that 127.0.0.11-15:P and :P+1000 and 127.0.0.1:P+1
/// (sshd) are free, all inside this crate's test range 29000-30999.
fn free_base_port() -> u16 {
    let start = 29000 + (std::process::id() % 90) as u16 * 20;
    for k in 0..90u16 {
        let base = 29000 + (start - 29000 + k * 20) % 1800;
        let mut addrs: Vec<String> = (0..NODES)
            .flat_map(|i| {
                [
                    format!("127.0.0.{}:{base}", 11 + i),
                    format!("127.0.0.{}:{}", 11 + i, base + 1000),
                ]
            })
            .collect();
        addrs.push(format!("127.0.0.1:{}", base + 1));
        let listeners: Vec<_> = addrs.iter().map(TcpListener::bind).collect();
        if listeners.iter().all(Result::is_ok) {
            return base;
        }
    }
    panic!("no free port block in 29000-30999");
}

struct Sshd {
    child: Child,
    port: u16,
    user: String,
    key: PathBuf,
    known_hosts: PathBuf,
}

/// Starts a private sshd on 127.0.0.1:port that accepts only a throwaway key
/// for the current user. Err says why it could not.
fn start_sshd(dir: &Path, port: u16) -> Result<Sshd, String> {
    let sshd = Path::new("/usr/sbin/sshd");
    if !sshd.exists() {
        return Err("/usr/sbin/sshd not found (apt-get install -y openssh-server)".into());
    }
    for tool in ["ssh", "ssh-keygen"] {
        if Command::new(tool).arg("-?").output().is_err() {
            return Err(format!("{tool} not found"));
        }
    }
    fs::create_dir_all(dir).unwrap();
    for key in ["host_key", "user_key"] {
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join(key))
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("ssh-keygen: {e}"))?;
        if !status.success() {
            return Err(format!("ssh-keygen failed for {key}"));
        }
    }
    fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).unwrap();
    let user = String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout)
        .trim()
        .to_owned();
    let root = user == "root";
    // sshd refuses to start without its privilege separation directory,
    // which a container without a running system sshd lacks.
    if root && !Path::new("/run/sshd").exists() {
        let _ = fs::create_dir_all("/run/sshd");
    }
    let config = dir.join("sshd_config");
    fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\n\
             UsePAM no\nStrictModes no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nAllowUsers {user}\nLogLevel VERBOSE\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let check = Command::new(sshd).arg("-t").arg("-f").arg(&config).output();
    match check {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Err(format!(
                "sshd -t rejected the test config: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Err(e) => return Err(format!("cannot run sshd: {e}")),
    }
    let log = fs::File::create(dir.join("sshd.log")).unwrap();
    let child = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start sshd: {e}"))?;
    let mut sshd = Sshd {
        child,
        port,
        user,
        key: dir.join("user_key"),
        known_hosts: dir.join("known_hosts"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = Command::new("ssh")
            .args(sshd.ssh_opts().split(' '))
            .args([
                "-i",
                &sshd.key.display().to_string(),
                "-p",
                &port.to_string(),
            ])
            .arg(format!("{}@127.0.0.1", sshd.user))
            .args(["--", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return Ok(sshd);
        }
        if Instant::now() > deadline || sshd.child.try_wait().ok().flatten().is_some() {
            sshd.stop();
            let log = fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
            let tail: Vec<_> = log.lines().rev().take(5).collect();
            return Err(format!(
                "ssh to the test sshd on 127.0.0.1:{port} failed; sshd log: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ));
        }
        sleep(Duration::from_millis(200));
    }
}

impl Sshd {
    fn ssh_opts(&self) -> String {
        format!(
            "-o BatchMode=yes -o ConnectTimeout=10 -o StrictHostKeyChecking=no \
             -o UserKnownHostsFile={} -o IdentitiesOnly=yes -o LogLevel=ERROR",
            self.known_hosts.display()
        )
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops whatever the test left running, even when an assertion failed:
/// only the pids recorded under its own directory, checked against their
/// command line so a reused pid is never touched.
struct NodeGuard {
    tmp: PathBuf,
}

impl Drop for NodeGuard {
    fn drop(&mut self) {
        let needle = self.tmp.display().to_string();
        for (pid, _) in recorded_pids(&self.tmp) {
            if alive(pid) && cmdline(pid).contains(&needle) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// (pid, node id) from every node's run/node-N.pid.
fn recorded_pids(tmp: &Path) -> Vec<(u32, usize)> {
    (0..NODES)
        .filter_map(|i| {
            let path = tmp.join(format!("node-{i}/run/node-{i}.pid"));
            let pid = fs::read_to_string(path).ok()?.trim().parse().ok()?;
            Some((pid, i))
        })
        .collect()
}

/// The status_all.sh rows: (node, ssh, pid, alive, role).
fn status_rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<usize>().is_ok())
        })
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn every_script_has_help() {
    let tmp = tempfile::tempdir().unwrap();
    for name in SCRIPTS {
        let mut cmd = Command::new(script(name));
        cmd.arg("--help");
        let (status, out) = run(
            cmd,
            &format!("{name} --help"),
            Duration::from_secs(10),
            tmp.path(),
        );
        assert!(status.success(), "{name} --help failed");
        assert!(out.contains("Usage:"), "{name} --help prints no usage");
    }
}

#[test]
fn scripts_pass_shellcheck() {
    if Command::new("shellcheck")
        .arg("--version")
        .output()
        .is_err()
    {
        println!(
            "deploy_scripts: SKIPPED shellcheck: not installed (apt-get install -y shellcheck)"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("shellcheck");
    cmd.current_dir(ROOT);
    for name in SCRIPTS {
        cmd.arg(format!("scripts/{name}"));
    }
    cmd.args([
        "scripts/start_local.sh",
        "scripts/stop_local.sh",
        "scripts/collect_all.sh",
        "scripts/lib/cluster.sh",
    ]);
    let (status, out) = run(
        cmd,
        "shellcheck scripts",
        Duration::from_secs(60),
        tmp.path(),
    );
    assert!(status.success(), "shellcheck found problems:\n{out}");
}

#[test]
fn setup_ec2_dry_run_plans_a_release_build() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(script("setup_ec2.sh"));
    cmd.args(["--source", ROOT, "--install-dir"])
        .arg(tmp.path().join("inst"))
        .arg("--dry-run");
    let (status, out) = run(
        cmd,
        "setup_ec2.sh --dry-run",
        Duration::from_secs(20),
        tmp.path(),
    );
    assert!(status.success());
    assert!(
        out.contains("cargo build --release --locked --bin sraft"),
        "{out}"
    );
    assert!(
        !tmp.path().join("inst/bin/sraft").exists(),
        "--dry-run installed something"
    );
}

/// A source deploy ships `SRAFT_SOURCE_PATHS` (scripts/lib/cluster.sh) and
/// builds there: cargo must load the workspace from those paths alone. It
/// once shipped no `testkit/`, a workspace member, and every node's build
/// failed before compiling anything.
#[test]
fn a_source_deploy_ships_a_workspace_cargo_can_load() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("source");
    fs::create_dir(&tree).unwrap();
    // The same copy as deploy_all.sh's, of the same list.
    let mut copy = Command::new("bash");
    copy.arg("-c")
        .arg(
            "source scripts/lib/cluster.sh && printf '%s\\n' \"${SRAFT_SOURCE_PATHS[@]}\" && \
             tar -cf - \"${SRAFT_SOURCE_PATHS[@]}\" | (cd \"$1\" && tar -xf -)",
        )
        .arg("copy")
        .arg(&tree)
        .current_dir(ROOT);
    let (status, out) = run(
        copy,
        "copying SRAFT_SOURCE_PATHS",
        Duration::from_secs(30),
        tmp.path(),
    );
    assert!(status.success(), "{out}");
    assert!(out.lines().any(|path| path == "src"), "{out}");
    let mut metadata = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    metadata
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .current_dir(&tree);
    let (status, out) = run(
        metadata,
        "cargo metadata on the shipped tree",
        Duration::from_secs(60),
        tmp.path(),
    );
    assert!(
        status.success(),
        "cargo cannot load the shipped workspace:\n{out}"
    );
    for package in ["\"name\":\"sraft\"", "\"name\":\"sraft-testkit\""] {
        assert!(out.contains(package), "{package} missing from:\n{out}");
    }
}

#[test]
fn deploy_start_status_stop_five_nodes() {
    let tmp = tempfile::Builder::new()
        .prefix("sraft-deploy-")
        .tempdir()
        .unwrap();
    let tmp_path = tmp.path().to_path_buf();
    let needle = tmp_path.display().to_string();
    let scratch = tmp_path.join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    let base = free_base_port();

    // A stripped copy of the test binary ships faster than the debug build.
    let bin = tmp_path.join("sraft");
    fs::copy(env!("CARGO_BIN_EXE_sraft"), &bin).unwrap();
    let _ = Command::new("strip")
        .arg(&bin)
        .stderr(Stdio::null())
        .status();

    let force_local = std::env::var("SRAFT_TEST_RUNNER").is_ok_and(|v| v == "local");
    let sshd = if force_local {
        Err("SRAFT_TEST_RUNNER=local".to_owned())
    } else {
        start_sshd(&tmp_path.join("ssh"), base + 1)
    };
    let nodes: Vec<String> = (0..NODES).map(|i| format!("127.0.0.{}", 11 + i)).collect();
    // Security on (DESIGN.md 9): deploy_all.sh must ship both files with
    // mode 0600, and status_all.sh must find the password on the node.
    let secret = tmp_path.join("cluster.secret");
    let password = tmp_path.join("client.password");
    for (path, text) in [
        (&secret, "deploy-test-secret\n"),
        (&password, "deploy-test-pw\n"),
    ] {
        use std::os::unix::fs::PermissionsExt;
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
    }
    // TLS too, with certificates from scripts/make_certs.sh (openssl).
    let tls_dir = tmp_path.join("certs");
    let mut certs = Command::new(script("make_certs.sh"));
    // One more for the node that replaces node 4 below.
    certs
        .arg("--out")
        .arg(&tls_dir)
        .args(&nodes)
        .arg(format!("127.0.0.{}", 11 + NODES));
    let tls = match certs.output() {
        Ok(out) if out.status.success() => true,
        other => {
            println!("deploy_scripts: no TLS (make_certs.sh: {other:?}; is openssl installed?)");
            false
        }
    };
    let mut cluster = format!(
        "# written by tests/deploy_scripts.rs\n\
         SRAFT_NODES=\"{nodes}\"\nSRAFT_PEER_PORT={base}\nSRAFT_CLIENT_PORT_OFFSET=1000\n\
         SRAFT_CLUSTER_ID=from-file\nSRAFT_INSTALL_DIR=\"{tmp}/node-{{id}}\"\n\
         SRAFT_DEPLOY=binary\nSRAFT_BIN=\"{bin}\"\nSRAFT_GRACE_S=5\n\
         SRAFT_CLUSTER_SECRET_FILE=\"{secret}\"\nSRAFT_CLIENT_PASSWORD_FILE=\"{password}\"\n",
        nodes = nodes.join(" "),
        tmp = needle,
        bin = bin.display(),
        secret = secret.display(),
        password = password.display(),
    );
    if tls {
        cluster += &format!("SRAFT_TLS_DIR=\"{}\"\n", tls_dir.display());
    }
    match &sshd {
        Ok(s) => {
            println!(
                "deploy_scripts: running the scripts over REAL ssh: private sshd on 127.0.0.1:{}, user {}, throwaway key",
                s.port, s.user
            );
            cluster += &format!(
                "SRAFT_SSH=ssh\nSRAFT_SSH_HOSTS=\"{hosts}\"\nSRAFT_SSH_PORT={port}\n\
                 SRAFT_SSH_USER={user}\nSRAFT_SSH_KEY=\"{key}\"\nSRAFT_SSH_OPTS=\"{opts}\"\n",
                hosts = ["127.0.0.1"; NODES].join(" "),
                port = s.port,
                user = s.user,
                key = s.key.display(),
                opts = s.ssh_opts(),
            );
        }
        Err(why) => {
            println!(
                "deploy_scripts: no ssh ({why}); running the scripts with the local runner SRAFT_SSH=local instead"
            );
            cluster += "SRAFT_SSH=local\n";
        }
    }
    let cluster_file = tmp_path.join("cluster.env");
    fs::write(&cluster_file, cluster).unwrap();
    let _guard = NodeGuard {
        tmp: tmp_path.clone(),
    };

    let script_cmd = |name: &str, args: &[&str]| {
        let mut cmd = Command::new(script(name));
        for (k, _) in std::env::vars() {
            if k.starts_with("SRAFT_") || k.starts_with("RAFT_") || k == "ENABLE_SUBLEADER" {
                cmd.env_remove(k);
            }
        }
        cmd.arg("--cluster").arg(&cluster_file).args(args);
        // The environment overrides the cluster file.
        cmd.env("SRAFT_CLUSTER_ID", format!("e2e-{base}"));
        cmd
    };
    let secs = Duration::from_secs;

    // Deploy: scripts, generated config and binary in every install dir.
    let (status, out) = run(
        script_cmd("deploy_all.sh", &[]),
        "deploy_all.sh",
        secs(180),
        &scratch,
    );
    assert!(status.success(), "deploy_all.sh failed:\n{out}");
    for i in 0..NODES {
        let dir = tmp_path.join(format!("node-{i}"));
        assert!(dir.join("bin/sraft").is_file(), "node {i}: no bin/sraft");
        assert!(
            dir.join("scripts/start_node.sh").is_file(),
            "node {i}: no scripts"
        );
        let toml = fs::read_to_string(dir.join("conf/cluster.toml")).unwrap();
        assert!(
            toml.contains(&format!("\"127.0.0.15:{base}\"")),
            "node {i}: peers:\n{toml}"
        );
        assert!(
            toml.contains(&format!("cluster_id = \"e2e-{base}\"")),
            "env override lost:\n{toml}"
        );
        let peer_lines = toml
            .lines()
            .filter(|l| l.trim_start().starts_with("peers"))
            .count();
        assert_eq!(
            peer_lines, 1,
            "node {i}: the template's peer list must be replaced:\n{toml}"
        );
        for (file, key) in [
            ("cluster.secret", "cluster_secret_file"),
            ("client.password", "client_password_file"),
        ] {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join("conf").join(file))
                .unwrap_or_else(|e| panic!("node {i}: no conf/{file}: {e}"))
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "node {i}: conf/{file} mode {mode:o}");
            assert!(
                toml.contains(&format!("{key} = \"conf/{file}\"")),
                "node {i}: no {key}:\n{toml}"
            );
        }
        if tls {
            use std::os::unix::fs::PermissionsExt;
            let key = dir.join("conf/tls/node.key");
            let mode = fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o777,
                0o600,
                "node {i}: conf/tls/node.key mode {mode:o}"
            );
            let own = fs::read(dir.join("conf/tls/node.crt")).unwrap();
            assert_eq!(
                own,
                fs::read(tls_dir.join(format!("node-{i}.crt"))).unwrap()
            );
            assert!(
                toml.contains("tls_ca_cert_file = \"conf/tls/ca.crt\""),
                "{toml}"
            );
        }
    }
    // setup_ec2.sh is idempotent: the same binary again is a no-op.
    let mut again = Command::new(tmp_path.join("node-0/scripts/setup_ec2.sh"));
    again.arg("--binary").arg(&bin);
    let (status, out) = run(again, "setup_ec2.sh --binary (again)", secs(30), &scratch);
    assert!(
        status.success() && out.contains("already this binary"),
        "{out}"
    );

    // Start: five nodes, then one leader that every node knows.
    let (status, out) = run(
        script_cmd("start_all.sh", &["--wait", "40"]),
        "start_all.sh",
        secs(120),
        &scratch,
    );
    assert!(
        status.success(),
        "start_all.sh failed or found no single leader:\n{out}"
    );
    let pids = recorded_pids(&tmp_path);
    assert_eq!(pids.len(), NODES, "pid files: {pids:?}");
    for &(pid, i) in &pids {
        assert!(alive(pid), "node {i} pid {pid} is not running");
        assert!(
            cmdline(pid).contains(&format!("--node-id {i} ")),
            "pid {pid}: {}",
            cmdline(pid)
        );
    }

    let (status, out) = run(
        script_cmd("status_all.sh", &["--wait", "20"]),
        "status_all.sh",
        secs(60),
        &scratch,
    );
    assert!(status.success(), "status_all.sh: not healthy:\n{out}");
    let rows = status_rows(&out);
    assert_eq!(rows.len(), NODES, "{out}");
    for row in &rows {
        assert_eq!(row[2], "reachable", "{out}");
        assert_eq!(row[4], "yes", "{out}");
    }
    let leaders: Vec<_> = rows.iter().filter(|r| r[5] == "leader").collect();
    assert_eq!(leaders.len(), 1, "exactly one leader expected:\n{out}");
    assert!(
        out.contains(&format!("{NODES}/{NODES} node(s) up")),
        "{out}"
    );

    // Replace a node (DESIGN.md 8, docs/EC2.md): a sixth instance joins
    // the cluster file, is installed and added; node 4 is removed and stops.
    let grown = fs::read_to_string(&cluster_file).unwrap().replace(
        &nodes.join(" "),
        &format!("{} 127.0.0.{}", nodes.join(" "), 11 + NODES),
    );
    let grown = match &sshd {
        Ok(_) => grown.replace(
            &["127.0.0.1"; NODES].join(" "),
            &["127.0.0.1"; NODES + 1].join(" "),
        ),
        Err(_) => grown,
    };
    fs::write(&cluster_file, grown).unwrap();
    let (status, out) = run(
        script_cmd("deploy_all.sh", &["--nodes", "5"]),
        "deploy_all.sh --nodes 5",
        secs(120),
        &scratch,
    );
    assert!(status.success(), "deploy_all.sh --nodes 5 failed:\n{out}");
    let (status, out) = run(
        script_cmd("add_node.sh", &["5"]),
        "add_node.sh 5",
        secs(90),
        &scratch,
    );
    assert!(status.success(), "add_node.sh failed:\n{out}");
    assert!(out.contains("node 5 is a voter"), "{out}");
    assert!(tmp_path.join("node-5/run/node-5.join").is_file());
    let (status, out) = run(
        script_cmd("remove_node.sh", &["4"]),
        "remove_node.sh 4",
        secs(60),
        &scratch,
    );
    assert!(status.success(), "remove_node.sh failed:\n{out}");
    assert!(out.contains("node 4 removed"), "{out}");
    assert!(out.contains("add it to SRAFT_REMOVED"), "{out}");
    let node_4 = pids.iter().find(|&&(_, i)| i == 4).expect("node 4's pid").0;
    let stopped = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        !alive(node_4)
    });
    assert!(stopped, "removed node 4 (pid {node_4}) still runs");
    let members = Command::new(tmp_path.join("node-0/bin/sraft"))
        .current_dir(tmp_path.join("node-0"))
        .args(["member", "--config", "conf/cluster.toml", "list", "--json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&members.stdout);
    let ids: Vec<u64> = serde_json::from_str::<serde_json::Value>(&text)
        .unwrap_or_else(|e| panic!("member list --json: {e}: {text}"))
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![0, 1, 2, 3, 5], "{text}");
    // Node 4's entry stays in SRAFT_NODES (ids are positions); listed in
    // SRAFT_REMOVED, the scripts skip it, and the cluster of the other
    // five is healthy again.
    let mut file = fs::read_to_string(&cluster_file).unwrap();
    file.push_str("SRAFT_REMOVED=\"4\"\n");
    fs::write(&cluster_file, file).unwrap();
    let (status, out) = run(
        script_cmd("status_all.sh", &["--wait", "60"]),
        "status_all.sh (node 4 removed)",
        secs(90),
        &scratch,
    );
    assert!(status.success(), "without node 4, not healthy:\n{out}");
    let rows = status_rows(&out);
    assert!(rows.iter().all(|r| r[0] != "4"), "{out}");
    assert_eq!(rows.len(), NODES, "{out}");
    let node_5 = fs::read_to_string(tmp_path.join("node-5/run/node-5.pid"))
        .unwrap()
        .trim()
        .parse::<u32>()
        .unwrap();

    // Stop: SIGTERM by recorded pid; nothing of ours may be left running.
    let (status, out) = run(
        script_cmd("stop_all.sh", &[]),
        "stop_all.sh",
        secs(90),
        &scratch,
    );
    assert!(status.success(), "stop_all.sh failed:\n{out}");
    assert_eq!(out.matches("stopped (pid").count(), NODES, "{out}");
    assert!(!alive(node_5), "node 5 pid {node_5} survived stop_all.sh");
    for &(pid, i) in &pids {
        assert!(!alive(pid), "node {i} pid {pid} survived stop_all.sh");
        assert!(!tmp_path.join(format!("node-{i}/run/node-{i}.pid")).exists());
    }
    // Our own sshd (still needed below) is the one process allowed to stay.
    let sshd_pid = sshd.as_ref().ok().map(|s| s.child.id());
    let left: Vec<_> = processes_mentioning(&needle)
        .into_iter()
        .filter(|(pid, _)| Some(*pid) != sshd_pid)
        .collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");

    let (status, out) = run(
        script_cmd("status_all.sh", &[]),
        "status_all.sh (stopped)",
        secs(60),
        &scratch,
    );
    assert!(
        !status.success(),
        "a stopped cluster reported healthy:\n{out}"
    );
    assert!(status_rows(&out).iter().all(|r| r[4] == "no"), "{out}");
    // Every node wrote its log and its metrics where the scripts said.
    for i in 0..NODES {
        let log = fs::read_to_string(tmp_path.join(format!("node-{i}/logs/node-{i}.log"))).unwrap();
        assert!(log.contains("start_node.sh"), "node {i} log:\n{log}");
    }
    drop(sshd);
    let left = processes_mentioning(&needle);
    assert!(
        left.is_empty(),
        "processes left behind after the test: {left:?}"
    );
}
