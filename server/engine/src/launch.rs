//! Starts a test executable as a traced child, stopped at its first instruction after exec,
//! and collects its output and enforces its deadline from helper threads.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::personality::{self, Persona};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::{EngineError, Program};

/// Spawns `program` so that it stops with `SIGTRAP` right after `execve`, in a process group of its own
/// (so that the whole tree it creates can be killed at once) and with ASLR off for reproducible addresses.
pub(super) fn spawn_traced(program: &Program) -> Result<Child, EngineError> {
    let mut command = Command::new(&program.exe);
    command
        .args(&program.args)
        .current_dir(&program.cwd)
        .envs(program.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs between fork and exec and only makes raw system calls
    // (setpgid, personality, prctl, ptrace), which are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            // A container may forbid personality changes; addresses are read from /proc either way.
            if let Ok(persona) = personality::get() {
                let _ = personality::set(persona | Persona::ADDR_NO_RANDOMIZE);
            }
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            nix::sys::ptrace::traceme()?;
            Ok(())
        });
    }
    command.spawn().map_err(|source| EngineError::Spawn {
        exe: program.exe.clone(),
        source,
    })
}

/// Reads a child's stdout and stderr to the end on threads of their own, so that a chatty test
/// can never block on a full pipe while the tracer waits for it.
pub(super) struct OutputReaders {
    stdout: mpsc::Receiver<Vec<u8>>,
    stderr: mpsc::Receiver<Vec<u8>>,
}

impl OutputReaders {
    pub(super) fn start(stdout: Option<ChildStdout>, stderr: Option<ChildStderr>) -> Self {
        Self {
            stdout: read_to_end(stdout),
            stderr: read_to_end(stderr),
        }
    }

    /// Output written so far. A grandchild outside the process group may keep a pipe open
    /// forever; the grace period keeps that from stalling the run.
    pub(super) fn finish(self, grace: Duration) -> (String, String) {
        let deadline = Instant::now() + grace;
        let take = |rx: mpsc::Receiver<Vec<u8>>| {
            let left = deadline.saturating_duration_since(Instant::now());
            String::from_utf8_lossy(&rx.recv_timeout(left).unwrap_or_default()).into_owned()
        };
        let out = take(self.stdout);
        let err = take(self.stderr);
        (out, err)
    }
}

fn read_to_end(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    match pipe {
        Some(mut pipe) => {
            thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                let _ = tx.send(buf);
            });
        }
        None => {
            let _ = tx.send(Vec::new());
        }
    }
    rx
}

/// Kills the traced process group when the deadline passes or the run is cancelled. Killing is
/// the only safe way to stop a tracee from another thread: ptrace calls belong to the tracer thread.
pub(super) struct Watchdog {
    stop: mpsc::Sender<()>,
    handle: thread::JoinHandle<bool>,
}

impl Watchdog {
    /// The deadline is `timeout` after the later of `started` and the latest mark (nanoseconds
    /// since `started`), which the tracer moves forward at each test start.
    pub(super) fn start(
        pgid: Pid,
        started: Instant,
        mark: Arc<AtomicU64>,
        timeout: Option<Duration>,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = thread::spawn(move || loop {
            let tick = Duration::from_millis(50);
            match stopped.recv_timeout(tick) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return false,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            let cancelled = cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed));
            let since_mark = started
                .elapsed()
                .saturating_sub(Duration::from_nanos(mark.load(Ordering::Relaxed)));
            let expired = timeout.is_some_and(|t| since_mark >= t);
            if cancelled || expired {
                let _ = killpg(pgid, Signal::SIGKILL);
                return expired && !cancelled;
            }
        });
        Self { stop, handle }
    }

    /// Stops the watchdog; true when it killed the process group because time ran out.
    pub(super) fn finish(self) -> bool {
        let _ = self.stop.send(());
        self.handle.join().unwrap_or(false)
    }
}
