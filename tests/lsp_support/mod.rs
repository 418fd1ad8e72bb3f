//! A scripted LSP client for the protocol tests and the latency benchmark: runs the real
//! `coverlay lsp` binary, frames JSON-RPC over its stdio, answers the server's own requests
//! (`window/workDoneProgress/create`, `workspace/inlayHint/refresh`, ...) with `null`, and keeps
//! every message it received so that a test can wait for or inspect it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub struct Client {
    child: Child,
    stdin: Arc<Mutex<ChildStdin>>,
    incoming: Receiver<Value>,
    /// Received but not yet consumed by `request`/`wait_for`.
    pending: VecDeque<Value>,
    /// Every notification and request received from the server, in order.
    pub log: Vec<Value>,
    next_id: i64,
    pub stderr: PathBuf,
}

fn write_message(stdin: &Mutex<ChildStdin>, message: &Value) {
    let body = message.to_string();
    let mut stdin = stdin.lock().unwrap();
    let _ = write!(stdin, "Content-Length: {}\r\n\r\n{body}", body.len());
    let _ = stdin.flush();
}

fn read_message(reader: &mut impl BufRead) -> Option<Value> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("Content-Length:") {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut body = vec![0; length?];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

pub fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

impl Client {
    /// Starts `coverlay lsp` in `cwd` (stderr goes to a file beside it for failure reports).
    pub fn start(binary: &str, cwd: &Path) -> Self {
        let stderr = std::env::temp_dir().join(format!(
            "coverlay-lsp-{}-{}.stderr",
            std::process::id(),
            cwd.file_name().unwrap_or_default().to_string_lossy()
        ));
        let mut child = Command::new(binary)
            .arg("lsp")
            .current_dir(cwd)
            .env("COVERLAY_LOG", "coverlay=debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("coverlay lsp starts");
        let stdin = Arc::new(Mutex::new(child.stdin.take().unwrap()));
        let stdout = child.stdout.take().unwrap();
        let (sender, incoming) = std::sync::mpsc::channel();
        let replies = stdin.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            while let Some(message) = read_message(&mut reader) {
                if message.get("method").is_some() && message.get("id").is_some() {
                    let reply = json!({"jsonrpc": "2.0", "id": message["id"], "result": null});
                    write_message(&replies, &reply);
                }
                if sender.send(message).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            incoming,
            pending: VecDeque::new(),
            log: Vec::new(),
            next_id: 0,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn receive(&mut self, deadline: Instant) -> Option<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.incoming.recv_timeout(left) {
            Ok(message) => {
                // Responses are not kept: whole-file answers are big and a benchmark sends many.
                if message.get("method").is_some() {
                    self.log.push(message.clone());
                }
                Some(message)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(left.min(Duration::from_millis(50)));
                None
            }
        }
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        write_message(
            &self.stdin,
            &json!({"jsonrpc": "2.0", "method": method, "params": params}),
        );
    }

    /// Sends a raw message as it is (for malformed-input tests).
    pub fn send_raw(&mut self, message: Value) {
        write_message(&self.stdin, &message);
    }

    /// Sends a frame whose body is `body` as it is, JSON or not.
    pub fn send_body(&mut self, body: &str) {
        use std::io::Write;
        let mut stdin = self.stdin.lock().unwrap();
        write!(stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        stdin.flush().unwrap();
    }

    /// Sends a request and waits for its response: `Ok(result)` or `Err(error)`.
    pub fn request(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        write_message(
            &self.stdin,
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let Some(message) = self.receive(deadline) else {
                panic!("no response to {method} within 30 s\n{}", self.server_log());
            };
            if message.get("method").is_none() && message["id"] == json!(id) {
                return match message.get("error") {
                    Some(error) => Err(error.clone()),
                    None => Ok(message["result"].clone()),
                };
            }
            self.pending.push_back(message);
        }
    }

    /// Forgets the messages received so far and not consumed (to wait for fresh ones).
    pub fn drain(&mut self) {
        while let Ok(message) = self.incoming.try_recv() {
            if message.get("method").is_some() {
                self.log.push(message);
            }
        }
        self.pending.clear();
    }

    /// The first message (received before or within `timeout`) that `matches`; it is consumed.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(i) = self.pending.iter().position(&matches) {
            return self.pending.remove(i).unwrap();
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.receive(deadline) {
                Some(message) if matches(&message) => return message,
                Some(message) => self.pending.push_back(message),
                None => panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- server log\n{}",
                    self.server_log()
                ),
            }
        }
    }

    /// Waits for diagnostics of `uri` that satisfy `matches`; returns their list.
    pub fn wait_diagnostics(
        &mut self,
        uri: &str,
        timeout: Duration,
        matches: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let message = self.wait_for(&format!("diagnostics of {uri}"), timeout, |m| {
            m["method"] == "textDocument/publishDiagnostics"
                && m["params"]["uri"] == uri
                && matches(
                    m["params"]["diagnostics"]
                        .as_array()
                        .map_or(&[], Vec::as_slice),
                )
        });
        message["params"]["diagnostics"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn initialize(&mut self, root: &Path, options: Value, capabilities: Value) -> Value {
        let result = self
            .request(
                "initialize",
                json!({
                    "processId": std::process::id(),
                    "rootUri": uri(root),
                    "capabilities": capabilities,
                    "initializationOptions": options,
                }),
            )
            .expect("initialize succeeds");
        self.notify("initialized", json!({}));
        result
    }

    pub fn open(&mut self, path: &Path) {
        let text = std::fs::read_to_string(path).unwrap();
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri(path), "languageId": "rust", "version": 1, "text": text}}),
        );
    }

    /// Writes `text` to `path` as an editor does: the buffer changes, then it is saved.
    pub fn edit_and_save(&mut self, path: &Path, version: i64, text: &str) {
        std::fs::write(path, text).unwrap();
        self.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri(path), "version": version},
                   "contentChanges": [{"text": text}]}),
        );
        self.notify(
            "textDocument/didSave",
            json!({"textDocument": {"uri": uri(path)}}),
        );
    }

    /// `shutdown` then `exit`; returns how the server ended (within 20 s).
    pub fn shutdown(mut self) -> ExitStatus {
        let response = self.request("shutdown", Value::Null);
        assert!(response.is_ok(), "shutdown failed: {response:?}");
        self.notify("exit", Value::Null);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the server did not exit within 20 s of `exit`\n{}",
                    self.server_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A copy of fixture `name` in a fresh temporary directory (sources and manifests, no target/).
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name);
    let dir = tempfile::Builder::new()
        .prefix(&format!("coverlay-lsp-{name}-"))
        .tempdir()
        .unwrap();
    copy_tree(&from, dir.path());
    dir
}

/// Copies the tree at `from` to `to`, leaving out `target/` directories.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        let (source, dest) = (entry.path(), to.join(&name));
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&source, &dest);
        } else {
            std::fs::copy(&source, &dest).unwrap();
        }
    }
}

/// Processes whose executable, working directory or command line lies under `dir`.
pub fn processes_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let base = entry.path();
        let exe = std::fs::read_link(base.join("exe")).unwrap_or_default();
        let cwd = std::fs::read_link(base.join("cwd")).unwrap_or_default();
        let cmdline = std::fs::read(base.join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        if exe.to_string_lossy().contains(&dir)
            || cwd.to_string_lossy().contains(&dir)
            || cmdline.contains(&dir)
        {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// Waits up to 5 s for every process under `dir` to be gone; returns what is left.
pub fn leftover_processes(dir: &Path) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_under(dir);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Long enough for any build and run of the fixtures.
const LONG: Duration = Duration::from_secs(180);

/// Per line of each file: (hits, the ids of the tests that ran it, each with its count), and
/// every test's outcome; from the server's saved store (a `Coverage`) or a `--json` report.
pub type Overlay = (
    Vec<(String, u64, u64, Vec<(String, u64)>)>,
    Vec<(String, String)>,
);

/// The overlay of `files` and `tests` (a saved store's or a `--json` report's), where `id_of`
/// names the test of one of a line's per-test entries.
fn overlay(files: &Value, tests: &Value, id_of: impl Fn(&Value) -> String) -> Overlay {
    let mut lines = Vec::new();
    for file in files.as_array().unwrap() {
        for line in file["lines"].as_array().unwrap() {
            let mut by: Vec<(String, u64)> = line["tests"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| (id_of(t), t["hits"].as_u64().unwrap()))
                .collect();
            by.sort();
            lines.push((
                file["path"].as_str().unwrap().to_owned(),
                line["line"].as_u64().unwrap(),
                line["hits"].as_u64().unwrap(),
                by,
            ));
        }
    }
    let mut outcomes: Vec<(String, String)> = tests
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                t["outcome"].to_string(),
            )
        })
        .collect();
    outcomes.sort();
    (lines, outcomes)
}

/// A saved store (a `Coverage` under `coverage`: per-line entries name tests by index).
pub fn overlay_of_store(saved: &Value) -> Overlay {
    let coverage = &saved["coverage"];
    let tests = &coverage["tests"];
    overlay(&coverage["files"], tests, |t| {
        tests[t["test"].as_u64().unwrap() as usize]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    })
}

/// A `--json` report (per-line entries name tests by id).
pub fn overlay_of_report(report: &Value) -> Overlay {
    overlay(&report["files"], &report["tests"], |t| {
        t["id"].as_str().unwrap().to_owned()
    })
}

/// What the language server saved after its last run or merge in the workspace at `root`.
pub fn saved_overlay(root: &Path) -> Overlay {
    let saved = std::fs::read_to_string(root.join("target/coverlay/coverage.json")).unwrap();
    overlay_of_store(&serde_json::from_str(&saved).unwrap())
}

/// A from-scratch `coverlay run` (binary `bin`) of `root`: its exit code and overlay.
pub fn from_scratch(bin: &str, root: &Path) -> (Option<i32>, Overlay) {
    let report = root.join("target/full.json");
    let output = Command::new(bin)
        .args(["run", "--json"])
        .arg(&report)
        .arg(root)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&report)
        .unwrap_or_else(|_| panic!("no report:\n{}", String::from_utf8_lossy(&output.stderr)));
    (
        output.status.code(),
        overlay_of_report(&serde_json::from_str(&text).unwrap()),
    )
}

/// Waits for the log line that says what a save reruns, then for the end of that run.
pub fn selection_after_save(client: &mut Client) -> String {
    let logged = client.wait_for("the selection", LONG, |m| {
        m["method"] == "window/logMessage"
            && m["params"]["message"]
                .as_str()
                .is_some_and(|t| t.contains("rerun"))
    });
    logged["params"]["message"].as_str().unwrap().to_owned()
}

pub fn end_of_run(client: &mut Client) {
    client.wait_for("the end of the run", LONG, |m| {
        m["method"] == "$/progress" && m["params"]["value"]["kind"] == "end"
    });
}

/// Where an editor's setup script (tests/*/setup*.sh) puts it: `$var`, else `~/.cache/<name>`.
pub fn editor_cache(var: &str, name: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache")
            .join(name),
    }
}

/// For an editor test whose editor is not installed: fails in CI (`CI=true`), where `.ci/run`
/// must have set it up; elsewhere prints a note (the caller then skips).
pub fn editor_missing(what: &str, how: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is not installed: {how} (see .ci/run)");
    }
    eprintln!("note: {what} is not installed, skipping ({how})");
}
