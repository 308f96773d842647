//! A real PostgreSQL for tests: Debian's server (`apt-get install postgresql`), one cluster per test binary and
//! one database per test. The cluster is made on first use in a temporary directory and listens on a unix socket
//! only (no TCP port to collide with). It is stopped when the test binary exits, however it exits: a watchdog
//! shell waits on a pipe that only this process holds open.
//!
//! Also the lib's unit tests use this file (`#[path]`), so it depends on std and sqlx alone.

#![allow(dead_code, reason = "the lib's unit tests use a part of it")]

use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The test binary's cluster.
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    /// Run the server's programs as this user (`postgres` when the tests run as root: initdb refuses root).
    as_user: Option<&'static str>,
    databases: AtomicUsize,
    /// Held open for the life of the process; its end closing stops the cluster.
    _watchdog: ChildStdin,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
/// Clusters made so far in this process, for unique directory names.
static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

/// The cluster, started on first use.
///
/// # Panics
/// PostgreSQL is not installed, or the cluster cannot be made or started (the message says which).
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(Cluster::start)
}

impl Cluster {
    /// A cluster of the calling test's own, for tests that stop and start the server (the shared one serves
    /// the other tests meanwhile). Stopped when dropped, or when the process ends.
    pub fn private() -> Self {
        Self::start()
    }

    fn start() -> Self {
        let bin = server_binaries();
        let n = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("chatgowa-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let as_user = root.then_some("postgres");
        if root {
            check(Command::new("chown").arg("postgres").arg(&dir), "chown");
        }
        let cluster = Self {
            _watchdog: watchdog(&bin, &dir, as_user),
            dir,
            bin,
            as_user,
            databases: AtomicUsize::new(0),
        };
        check(
            cluster
                .program("initdb")
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "chatgowa",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "-D",
                ])
                .arg(cluster.data()),
            "initdb",
        );
        cluster.start_server();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn program(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        let mut command = match self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        command.stdin(Stdio::null()).stdout(Stdio::null());
        command
    }

    /// Starts the server (again, after [`Cluster::stop_immediately`]) and waits until it accepts connections.
    pub fn start_server(&self) {
        let options = format!(
            "-k {} -c listen_addresses= -c max_connections=400 -c fsync=off -c shared_buffers=32MB",
            self.dir.display()
        );
        check(
            self.program("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.join("log"))
                .args(["-w", "-o", &options, "start"]),
            "pg_ctl start",
        );
    }

    /// Stops the server the way a crash would (`pg_ctl stop -m immediate`): no checkpoint, connections cut.
    pub fn stop_immediately(&self) {
        check(
            self.program("pg_ctl").arg("-D").arg(self.data()).args([
                "-m",
                "immediate",
                "-w",
                "stop",
            ]),
            "pg_ctl stop",
        );
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://chatgowa@localhost/{name}?host={}",
            self.dir.display()
        )
    }

    /// A new empty database of its own, for one test; its URL.
    pub fn database(&self) -> String {
        let name = format!("test{}", self.databases.fetch_add(1, Ordering::Relaxed));
        let mut createdb = Command::new(self.bin.join("createdb"));
        createdb
            .arg("-h")
            .arg(&self.dir)
            .args(["-U", "chatgowa", &name]);
        check(&mut createdb, "createdb");
        self.url(&name)
    }

    /// The database of a test's directory (made on first use): a relay restarted on the same directory finds
    /// what it stored.
    pub fn database_of(&self, dir: &Path) -> String {
        static BY_DIR: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());
        let mut known = BY_DIR
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, url)) = known.iter().find(|(d, _)| d == dir) {
            return url.clone();
        }
        let url = self.database();
        known.push((dir.to_owned(), url.clone()));
        url
    }
}

/// The newest installed server's programs.
fn server_binaries() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| Some(e.ok()?.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|bin| bin.join("initdb").exists());
    found.sort_by_key(|bin| {
        bin.parent()
            .and_then(Path::file_name)
            .and_then(|v| v.to_str()?.parse::<u32>().ok())
    });
    found
        .pop()
        .expect("PostgreSQL is not installed: apt-get install postgresql (scripts/test does)")
}

/// A shell that stops the cluster and removes its directory once its standard input closes, which happens when
/// this process ends (normally, by a panic or by a signal).
fn watchdog(bin: &Path, dir: &Path, as_user: Option<&str>) -> ChildStdin {
    let run = as_user.map_or(String::new(), |u| format!("runuser -u {u} -- "));
    let script = format!(
        "cat >/dev/null; {run}{bin}/pg_ctl -D {dir}/data -m immediate -w stop >/dev/null 2>&1; rm -rf {dir}",
        bin = bin.display(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh")
        .stdin
        .take()
        .expect("the watchdog's input")
}

fn check(command: &mut Command, what: &str) {
    let status = command.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}
