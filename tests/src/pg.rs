//! A real PostgreSQL for tests: one server per test run, one database per
//! test.
//!
//! `scripts/test` starts a private cluster once (`scripts/test-pg start`)
//! and exports its URL as `INVIGIL_TEST_PG_URL`; every test binary then
//! uses it. Without the variable (a developer running `cargo test` by
//! hand) the first test of a binary starts a private cluster for that
//! binary: `initdb` in a fresh folder under the temp dir (as the `postgres`
//! user when run as root: initdb refuses root), `postgres` listening on
//! 127.0.0.1 on a free port with its socket in a private folder. The server
//! gets `PR_SET_PDEATHSIG`, from a thread that lives as long as the
//! process, so it dies with the test binary; folders left by earlier runs
//! are removed when a new cluster starts.
//!
//! [`database`] creates a database with a unique name and returns its URL,
//! so tests are isolated and may run in parallel.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The server's URL, without a database (`postgres://postgres@127.0.0.1:PORT`).
pub fn server_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("INVIGIL_TEST_PG_URL") {
        Ok(u) if !u.trim().is_empty() => u.trim().trim_end_matches('/').to_string(),
        _ => start_private(),
    })
    .clone()
}

/// A new, empty database for one test; its URL.
pub fn database(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let clean: String =
        prefix.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).take(30).collect();
    let name = format!("t_{clean}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let base = server_url();
    let mut c = postgres::Client::connect(&format!("{base}/postgres"), postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL at {base}: {e}"));
    // An identifier cannot be a parameter; `name` is [a-z0-9_] only.
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    format!("{base}/{name}")
}

/// A client on `url` (for assertions).
pub fn client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

/// The folder of PostgreSQL's programs: `$INVIGIL_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian), else `pg_config --bindir`.
pub fn bin_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("INVIGIL_PG_BIN") {
        return PathBuf::from(p);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p)| p.join("initdb").exists())
        .collect();
    versions.sort();
    if let Some((_, p)) = versions.pop() {
        return p;
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok().filter(|o| o.status.success());
    match out {
        Some(o) => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        None => {
            panic!("PostgreSQL is not installed: run scripts/setup (apt-get install postgresql), or set INVIGIL_PG_BIN")
        }
    }
}

/// (uid, gid) of the `postgres` user when running as root, else None (run
/// as ourselves).
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let o = Command::new("id").args([flag, "postgres"]).output().expect("running id");
        assert!(
            o.status.success(),
            "tests run as root need a `postgres` user for initdb (apt-get install postgresql makes it)"
        );
        String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
    };
    Some((id("-u"), id("-g")))
}

/// Removes clusters of earlier test processes that are gone.
fn sweep(tmp: &Path) {
    for e in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) =
            name.strip_prefix("invigil-test-pg-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks that the process exists.
        if unsafe { libc::kill(pid, 0) } != 0 {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn start_private() -> String {
    start_cluster(&[], |_| {}).0
}

/// A private cluster that also speaks TLS, with a certificate for
/// `localhost` and 127.0.0.1 signed by a CA of its own (made with
/// `openssl`): its URL (no database) and the CA's PEM file. Not shared:
/// a cluster of its own for the test that asks.
pub fn start_tls_cluster() -> (String, PathBuf) {
    let mut ca = PathBuf::new();
    let (url, _) = start_cluster(
        &["-c", "ssl=on", "-c", "ssl_cert_file=../server.crt", "-c", "ssl_key_file=../server.key"],
        |root| {
            // A CA, and a server certificate it signed (webpki refuses a
            // self-signed CA certificate as a server's).
            let openssl = |args: &[&str]| {
                let st = Command::new("openssl")
                    .args(args)
                    .current_dir(root)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .expect("running openssl (apt-get install openssl)");
                assert!(st.success(), "openssl {args:?}");
            };
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=invigil-test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ]);
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ]);
            std::fs::write(
            root.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
            openssl(&[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                "server.crt",
                "-extfile",
                "ext.cnf",
            ]);
            ca = root.join("ca.pem");
        },
    );
    (url, ca)
}

/// Starts a cluster with `extra` server options; `prepare` may add files
/// to its root folder (owned by the server's user afterwards). Its URL
/// (no database) and the root folder.
fn start_cluster(extra: &[&str], prepare: impl FnOnce(&Path)) -> (String, PathBuf) {
    let bin = bin_dir();
    let tmp = std::env::temp_dir();
    sweep(&tmp);
    let root = tmp.join(format!("invigil-test-pg-{}-{}", std::process::id(), fastrand::u32(..)));
    let (data, sock) = (root.join("data"), root.join("sock"));
    std::fs::create_dir_all(&sock).unwrap();
    prepare(&root);
    let key = root.join("server.key");
    if key.exists() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let owner = run_as();
    if let Some((uid, gid)) = owner {
        for p in [&root, &sock, &root.join("server.key"), &root.join("server.crt")] {
            if !p.exists() {
                continue;
            }
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: `c` is a valid NUL-terminated path of a file we just created.
            let r = unsafe { libc::chown(c.as_ptr(), uid, gid) };
            assert_eq!(r, 0, "chown {}", p.display());
        }
    }
    let mut initdb = Command::new(bin.join("initdb"));
    initdb.args(["-D"]).arg(&data).args(["--auth=trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--no-locale"]);
    initdb.stdout(Stdio::null()).stderr(Stdio::piped());
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = owner {
        initdb.uid(uid).gid(gid);
    }
    let out = initdb.output().unwrap_or_else(|e| panic!("running {}: {e}", bin.join("initdb").display()));
    assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    let (bin2, data2, sock2) = (bin.clone(), data.clone(), sock.clone());
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    // The server dies with the thread that started it (PDEATHSIG), so that
    // thread lives as long as the process.
    std::thread::spawn(move || {
        let mut cmd = Command::new(bin2.join("postgres"));
        cmd.arg("-D").arg(&data2).args(["-c", "listen_addresses=127.0.0.1", "-p", &port.to_string(), "-k"]).arg(&sock2);
        // Tests need no durability against power loss; they do need many
        // connections (hubs in parallel).
        cmd.args(["-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=300"]).args(&extra);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some((uid, gid)) = owner {
            cmd.uid(uid).gid(gid);
        }
        // SAFETY: prctl and getppid are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn();
        let ok = child.is_ok();
        tx.send(child.map(|_| ()).map_err(|e| e.to_string())).unwrap();
        if ok {
            loop {
                std::thread::park();
            }
        }
    });
    rx.recv().unwrap().unwrap_or_else(|e| panic!("starting postgres: {e}"));
    let url = format!("postgres://postgres@127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok()
            && postgres::Client::connect(&format!("{url}/postgres"), postgres::NoTls).is_ok()
        {
            return (url, root);
        }
        assert!(
            Instant::now() < deadline,
            "the private PostgreSQL did not start within 30 s (data in {})",
            data.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
