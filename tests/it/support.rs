//! Test helpers: run the real `roster` binary, make sandbox state files in temp dirs, read the
//! sandbox state back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const EXAMPLE_CODE: &str = "sandboxcode0001";

/// A temp dir holding a copy of examples/sandbox.yaml (or a given state) and desired files.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn with_example_portal() -> Workspace {
        let ws = Workspace {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::copy(repo("examples/sandbox.yaml"), ws.path("portal.yaml")).unwrap();
        std::fs::copy(repo("examples/groups.yaml"), ws.path("groups.yaml")).unwrap();
        ws
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    /// `roster ARGS…` run in this workspace with no terminal on stdin.
    pub fn roster(&self, args: &[&str]) -> Run {
        self.roster_with_env(args, &[])
    }

    /// As `roster`, with extra environment variables.
    pub fn roster_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_roster"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("ROSTER_PORTAL")
            .env_remove("ROSTER_RATE_LIMIT")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Run::from(out)
    }

    /// A group's relations in the sandbox state file as `USER=ROLE`, in file order.
    pub fn portal_group(&self, state: &str, group: u64) -> Vec<String> {
        let v: serde_norway::Value = serde_norway::from_str(&self.read(state)).unwrap();
        let groups = v["groups"].as_sequence().unwrap();
        let g = groups
            .iter()
            .find(|g| g["id"].as_u64() == Some(group))
            .unwrap_or_else(|| panic!("group {group} not in state"));
        g["members"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{}={}",
                    m["user"].as_u64().unwrap(),
                    m["role"].as_str().unwrap()
                )
            })
            .collect()
    }
}

pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8(o.stdout).unwrap(),
            stderr: String::from_utf8(o.stderr).unwrap(),
        }
    }
}

impl Run {
    /// Exit code, stdout and stderr in one string, for snapshots.
    pub fn transcript(&self) -> String {
        format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A plain HTTP client for raw requests (rustls needs its crypto provider chosen first).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A `roster sandbox serve` process on a free loopback port, killed when dropped.
pub struct Served {
    pub child: std::process::Child,
    /// The admin webhook URL it printed, ending in `/`.
    pub url: String,
    /// Every later line it prints on stdout, as it prints them.
    pub output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Stop it as Ctrl-C does and wait for it to exit; then `output` is complete.
    pub fn interrupt(&mut self) -> std::process::ExitStatus {
        interrupt(&self.child);
        let status = self.child.wait().unwrap();
        // The reader thread sees end-of-file once the process is gone.
        while std::sync::Arc::strong_count(&self.output) > 1 {
            std::thread::yield_now();
        }
        status
    }
}

/// Send SIGINT to a child process, as Ctrl-C would.
pub fn interrupt(child: &std::process::Child) {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

impl Workspace {
    /// Start `roster sandbox serve --state STATE` in this workspace and wait for its URL.
    pub fn serve(&self, state: &str) -> Served {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(env!("CARGO_BIN_EXE_roster"))
            .args([
                "sandbox",
                "serve",
                "--state",
                state,
                "--listen",
                "127.0.0.1:0",
            ])
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().expect("serve prints the webhook URL").unwrap();
            if let Some(url) = line.strip_prefix("webhook URL: ") {
                break url.to_owned();
            }
            // A DocSpace sandbox: `API base: http://…/api/2.0/  (Authorization: …)`.
            if let Some(rest) = line.strip_prefix("API base: ") {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
        };
        // Keep reading stdout so the server never blocks on a full pipe.
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = output.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Served { child, url, output }
    }

    /// `roster ARGS…` started in this workspace without waiting, stdout and stderr piped.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_roster"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("ROSTER_PORTAL")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `roster sandbox generate --out DIR ARGS…`, with the generated portal's cloud rate limit
    /// replaced by `portal` (YAML lines under `portal:`). Returns the state file's text.
    pub fn generate(&self, dir: &str, args: &[&str], portal: &str) -> String {
        let run = self.roster(&[&["sandbox", "generate", "--out", dir][..], args].concat());
        assert_eq!(run.code, 0, "{}", run.transcript());
        let file = format!("{dir}/portal.yaml");
        let state =
            self.read(&file)
                .replacen("rate_limit: { burst: 50, per_second: 2 }", portal, 1);
        self.write(&file, &state);
        state
    }
}

/// A loopback port whose listener accepts connections and never answers.
pub fn silent_listener() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    port
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Send `request` and decode its JSON answer, blocking.
fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    block_on(async { request.send().await.unwrap().json().await.unwrap() })
}

/// One blocking call of a REST method on a served sandbox with a JSON body.
pub fn call(url: &str, method: &str, body: serde_json::Value) -> serde_json::Value {
    json_of(http().post(format!("{url}{method}.json")).json(&body))
}

/// A served sandbox's counters (`GET /_sandbox/stats`), given its webhook URL.
pub fn sandbox_stats(url: &str) -> serde_json::Value {
    let base = &url[..url.find("/rest/").expect("a webhook URL")];
    json_of(http().get(format!("{base}/_sandbox/stats")))
}

/// Wait (polling, at most 30 s) until a served sandbox's counter `key` is above zero.
pub fn wait_for_counter(url: &str, key: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sandbox_stats(url)[key] == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sandbox's {key} stayed 0"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

impl Workspace {
    /// The example portal with every answer delayed by `ms` milliseconds; returns its text.
    pub fn slow_example_portal(&self, ms: u64) -> String {
        let state = self.read("portal.yaml").replacen(
            "rate_limit:",
            &format!("latency_ms: {ms}\n  rate_limit:"),
            1,
        );
        self.write("portal.yaml", &state);
        state
    }
}
