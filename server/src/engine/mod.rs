//! The ptrace coverage engine: runs one test executable traced, with an int3 at every given address,
//! and reports how often each address executed. It knows nothing of source lines or tests.

mod breakpoints;
mod displaced;
mod launch;
mod tracer;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// What to run: a test executable with its arguments, environment and working directory.
#[derive(Clone, Debug)]
pub struct Program {
    pub exe: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
}

/// Where breakpoints go, in the executable's own (link-time) addresses.
#[derive(Clone, Debug)]
pub struct Breakpoints {
    /// Strictly increasing.
    pub addresses: Vec<u64>,
    /// Lowest PT_LOAD address of the executable (see `dwarf::LineTable::load_base`).
    pub load_base: u64,
    pub position_independent: bool,
    /// Breakpoints that mark the start of a test: (breakpoint index, test number). From then on
    /// every hit belongs to that test (libtest runs one test at a time with `--test-threads=1`).
    pub test_entries: Vec<(usize, u32)>,
    /// Breakpoints put back whenever a test starts, so that each test records its own hit there
    /// (function entries: which tests entered which functions).
    pub rearm_per_test: Vec<usize>,
    /// Per breakpoint, the next breakpoint that counts for the same source line (a cycle; itself
    /// when alone). In first-hit mode the first hit lifts the whole cycle: one trap per line.
    /// Empty: every breakpoint stands alone.
    pub same_line: Vec<u32>,
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Executions counted per address before its breakpoint is removed; 1 is first-hit mode, the
    /// fastest. Every count costs a trap and a single step (≈ 20–40 µs).
    pub count_cap: u32,
    /// The whole process tree is killed when this passes, counted from the start and again from
    /// the start of each test.
    pub timeout: Option<Duration>,
    /// Set to true from any thread to kill the run.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// How the traced process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    TimedOut,
    Cancelled,
}

#[derive(Debug)]
pub struct Trace {
    /// Executions per breakpoint, aligned with `Breakpoints::addresses`, capped at `count_cap`.
    pub hits: Vec<u32>,
    /// (test number, breakpoint index): the breakpoint executed while that test ran, once per test.
    pub test_hits: Vec<(u32, u32)>,
    /// Tests in the order they started, with the time since launch.
    pub test_starts: Vec<(u32, Duration)>,
    pub exit: Exit,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot start {}: {source}", exe.display())]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("ptrace failed on pid {pid} ({op}): {errno}. If this is a container, allow ptrace (e.g. docker --cap-add=SYS_PTRACE) or set kernel.yama.ptrace_scope=0")]
    Ptrace {
        pid: i32,
        op: &'static str,
        errno: nix::errno::Errno,
    },
    #[error("cannot patch the memory of pid {pid} through /proc/{pid}/mem: {source}")]
    Memory { pid: i32, source: std::io::Error },
    #[error("cannot find where {} is loaded in pid {pid}", exe.display())]
    NoMapping { exe: PathBuf, pid: i32 },
    #[error("breakpoint addresses must be strictly increasing")]
    UnsortedAddresses,
}

/// Runs `program` to completion under the tracer and returns the hit counts.
///
/// Tracing happens on a thread of its own: ptrace requests are only valid from the thread that
/// attached, and waiting with `__WNOTHREAD` there never reaps children of other threads (cargo builds
/// started by the language server, other shards).
pub fn trace(
    program: &Program,
    breakpoints: &Breakpoints,
    options: &Options,
) -> Result<Trace, EngineError> {
    if breakpoints.addresses.windows(2).any(|w| w[0] >= w[1]) {
        return Err(EngineError::UnsortedAddresses);
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("coverlay-tracer".into())
            .spawn_scoped(scope, || tracer::run(program, breakpoints, options))
            .expect("spawning the tracer thread")
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
