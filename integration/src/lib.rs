//! Test harness: starts the real `coffer-server` binary on a free port with its own data
//! directory, and runs the real `coffer` CLI against it.
//!
//! The binaries are looked up next to the test executable's target directory; build them
//! first (`cargo build --bins`, which `scripts/test.sh` does).

pub mod cdh_emulator;
pub mod fake_tsm;
pub mod gpu_mint;
pub mod http_stub;
pub mod kms_emulator;
pub mod pccs_emulator;
pub mod tdx_mint;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `coffer` CLI's exit codes, by name (the same enum the CLI maps its errors with).
pub use coffer::exit::Exit;

/// What `Output::status.code()` is when the `coffer` CLI ends with `e`, for
/// `assert_eq!(out.status.code(), exit_code(Exit::Refused))`: the source names the code and
/// a mismatch shows the number the process returned.
pub fn exit_code(e: Exit) -> Option<i32> {
    Some(i32::from(e.code()))
}

/// Path of a workspace binary (`coffer-server`, `coffer`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // Test executables live in target/<profile>/deps, binaries in target/<profile>.
    let here = exe.parent().expect("target dir");
    let p = [here, here.parent().unwrap_or(here)]
        .iter()
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| here.join(name));
    assert!(
        p.exists(),
        "{} not built; run `cargo build --bins` (scripts/test.sh does)",
        p.display()
    );
    p
}

/// The build's target directory (parent of `target/<profile>`).
pub fn target_dir() -> PathBuf {
    let coffer = binary("coffer");
    let profile = coffer.parent().expect("profile dir");
    profile.parent().unwrap_or(profile).to_path_buf()
}

/// The Python interpreter of the virtual environment `scripts/install-deps.sh` creates
/// (`$COFFER_PY_VENV`, default `<target dir>/py-venv`) with the API and browser test tools.
pub fn python() -> PathBuf {
    let venv = std::env::var_os("COFFER_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("py-venv"));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} missing: run scripts/install-deps.sh (scripts/test.sh does)",
        py.display()
    );
    py
}

/// A directory for a test's artifacts that outlives the test (screenshots, reports):
/// `<target dir>/test-artifacts/<name>`, emptied first.
pub fn artifact_dir(name: &str) -> PathBuf {
    let d = target_dir().join("test-artifacts").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("artifact dir");
    d
}

/// A running coffer-server process, killed on drop.
pub struct Server {
    child: Option<Child>,
    /// Base URL, e.g. `http://127.0.0.1:PORT`.
    pub url: String,
    /// Data directory.
    pub data_dir: PathBuf,
    port: u16,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
    log_path: PathBuf,
}

impl Server {
    /// Starts a server with a data directory inside `root` and optional TOML config text.
    pub fn start(root: &Path, config: Option<&str>) -> Server {
        Self::start_with_env(root, config, &[])
    }

    /// As [`Server::start`], with extra environment variables for the server process.
    pub fn start_with_env(root: &Path, config: Option<&str>, env: &[(&str, &str)]) -> Server {
        Self::start_full(root, config, &[], env)
    }

    /// Like [`Server::start`], with extra command-line arguments for `coffer-server`.
    pub fn start_with_args(root: &Path, config: Option<&str>, args: &[&str]) -> Server {
        Self::start_full(root, config, args, &[])
    }

    fn start_full(
        root: &Path,
        config: Option<&str>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let data_dir = root.join("data");
        let mut extra_args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        if let Some(text) = config {
            let cfg = root.join("coffer-server.toml");
            std::fs::write(&cfg, text).expect("write config");
            extra_args.push("--config".to_string());
            extra_args.push(cfg.display().to_string());
        }
        // Port 0: the server binds a free port and logs it, so parallel tests never collide.
        let log_path = data_dir.with_extension("log");
        let mut s = Server {
            child: None,
            url: String::new(),
            data_dir,
            port: 0,
            extra_args,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log_path,
        };
        s.spawn();
        s
    }

    /// Starts one of several replicas: shared `data_dir` (for the keys) and database URL,
    /// its own log `<data_dir>.<name>.log`.
    pub fn start_replica(data_dir: &Path, database_url: &str, name: &str) -> Server {
        Self::start_replica_with(data_dir, database_url, name, None)
    }

    /// As [`Server::start_replica`], with a configuration file of `config`'s text
    /// (`<data_dir>.<name>.toml`).
    pub fn start_replica_with(
        data_dir: &Path,
        database_url: &str,
        name: &str,
        config: Option<&str>,
    ) -> Server {
        let mut extra_args = vec!["--database-url".to_string(), database_url.to_string()];
        if let Some(text) = config {
            let file = data_dir.with_extension(format!("{name}.toml"));
            std::fs::write(&file, text).expect("write config");
            extra_args.extend(["--config".to_string(), file.display().to_string()]);
        }
        let log_path = data_dir.with_extension(format!("{name}.log"));
        let mut s = Server {
            child: None,
            url: String::new(),
            data_dir: data_dir.to_path_buf(),
            port: 0,
            extra_args,
            env: Vec::new(),
            log_path,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log_path).expect("log file");
        let child = Command::new(binary("coffer-server"))
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn coffer-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains("coffer-server ready")) {
                let addr = line
                    .split("listen=")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .expect("listen= in ready line");
                self.port = addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("port");
                self.url = format!("http://{addr}");
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("coffer-server exited early with {status}: {log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("coffer-server did not start: {}", self.log());
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A fresh, empty PostgreSQL database on the machine's server (`COFFER_TEST_PG_URL`
    /// overrides `postgres://root@127.0.0.1:5432/test`); returns its URL.
    pub fn fresh_postgres() -> String {
        let admin = std::env::var("COFFER_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let psql = |sql: &str| {
            Command::new("psql")
                .arg(&admin)
                .arg("-qAtc")
                .arg(sql)
                .output()
                .expect("psql")
        };
        // Drop databases of earlier runs (older than 10 minutes; names carry the time).
        let old = psql("SELECT datname FROM pg_database WHERE datname LIKE 'coffer_e2e_%'");
        for db in String::from_utf8_lossy(&old.stdout).lines() {
            let born: u64 = db
                .split('_')
                .nth(2)
                .and_then(|t| t.parse().ok())
                .unwrap_or(now);
            if now.saturating_sub(born) > 600 {
                psql(&format!("DROP DATABASE IF EXISTS {db}"));
            }
        }
        let name = format!("coffer_e2e_{now}_{}_{}", std::process::id(), rand_suffix());
        let out = psql(&format!("CREATE DATABASE {name}"));
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!(
            "{}/{name}",
            admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin)
        )
    }

    /// Kills the process (SIGKILL) and starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Kills the process.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The generated admin private key.
    pub fn admin_key(&self) -> PathBuf {
        self.data_dir.join("admin.key")
    }

    /// Runs the `coffer` CLI against this server.
    pub fn coffer(&self, args: &[&str]) -> Output {
        Command::new(binary("coffer"))
            .arg("--url")
            .arg(&self.url)
            .args(args)
            .output()
            .expect("run coffer")
    }

    /// Runs `coffer admin --key <generated key> ...` and asserts success.
    pub fn admin(&self, args: &[&str]) -> Output {
        let key = self.admin_key();
        let mut full = vec!["admin", "--key", key.to_str().expect("utf-8 path")];
        full.extend_from_slice(args);
        let out = self.coffer(&full);
        assert!(
            out.status.success(),
            "coffer {full:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Stores `value` as the resource at `path` (`coffer admin set-resource`), asserting
    /// success.
    pub fn set_resource(&self, path: &str, value: impl AsRef<[u8]>) -> Output {
        let file = tempfile::NamedTempFile::new().expect("temporary file");
        std::fs::write(file.path(), value).expect("write the resource value");
        let file = file.path().to_str().expect("utf-8 path");
        self.admin(&["set-resource", path, "--file", file])
    }

    /// A fresh admin bearer token.
    pub fn admin_token(&self) -> String {
        String::from_utf8(self.admin(&["token"]).stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64 % 1000)
        .unwrap_or(0)
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
