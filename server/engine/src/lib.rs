//! The ptrace coverage engine: runs one test executable traced, counts every given address (a jump
//! to a counter trampoline where the code allows, a count derived from another address's where
//! control allows, an int3 elsewhere; a conditional jump's taken edge in the trampoline that moves
//! the jump) and reports the counts per test.
//! It knows nothing of source lines; tests are only numbered entry addresses to it.

pub mod bounded;
pub mod branches;
mod breakpoints;
mod calls;
mod displaced;
mod entries;
mod lanes;
mod launch;
pub mod parallel;
pub mod sites;
mod tracer;
mod trampoline;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use sites::{ExeCode, Site, SiteCounts};

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
    /// First-hit mode only: breakpoints put back whenever a test starts, so that each test records
    /// its own hit there (function entries: which tests entered which functions).
    pub rearm_per_test: Vec<usize>,
    /// Per breakpoint, the next breakpoint that counts for the same source line (a cycle; itself
    /// when alone). In first-hit mode the first hit lifts the whole cycle: one trap per line.
    /// Empty: every breakpoint stands alone.
    pub same_line: Vec<u32>,
    /// How each address is counted when counting (from [`sites::classify`]); empty: all trap.
    pub sites: Vec<Site>,
    /// Trampolines built for one process, reused by the next ones of the same executable (with
    /// ASLR off they land at the same addresses).
    pub built: TrampolineCache,
}

/// Trampoline code shared by the processes (shards, restarts) of one executable, with the
/// (load bias, code address) it was built for.
#[derive(Clone, Debug, Default)]
pub struct TrampolineCache(Arc<Mutex<Option<BuiltFor>>>);

type BuiltFor = ((u64, u64), Arc<trampoline::Trampolines>);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Exact counts: trampolines where `Breakpoints::sites` allow, int3 up to `count_cap` per test
    /// and process elsewhere.
    #[default]
    Counts,
    /// Each address traps once and is lifted: 0 or 1 per process, the cheapest for hot code.
    FirstHit,
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub mode: Mode,
    /// Counts mode: executions counted by an int3 per address, test and process before it is
    /// lifted (a trap costs ≈ 20 µs; trampolines have no cap).
    pub count_cap: u32,
    /// The whole process tree is killed when this passes, counted from the start and again from
    /// the start of each test.
    pub timeout: Option<Duration>,
    /// Set to true from any thread to kill the run.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Incremented at each test's start, for progress shown while the run goes.
    pub tests_started: Option<Arc<std::sync::atomic::AtomicUsize>>,
    /// Programs that a traced process may `exec` and that are measured too (the workspace's
    /// binaries); any other program runs untraced.
    pub follow: Arc<Vec<Followed>>,
}

/// A program followed across `exec`, with its own breakpoints.
#[derive(Debug)]
pub struct Followed {
    pub exe: PathBuf,
    pub breakpoints: Breakpoints,
}

/// What a followed program executed (see [`Options::follow`]).
#[derive(Debug)]
pub struct FollowedTrace {
    /// Index into `Options::follow`.
    pub executable: usize,
    /// The test that was running when the program was started, if any.
    pub test: Option<u32>,
    pub trace: Trace,
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
    /// Executions per breakpoint, aligned with `Breakpoints::addresses`, summed over threads and
    /// processes.
    pub hits: Vec<u64>,
    /// Per breakpoint: counted by int3 and lifted at the cap (or first-hit mode), so a lower bound.
    pub capped: Vec<bool>,
    /// (test number, breakpoint index, executions while that test ran).
    pub test_hits: Vec<(u32, u32, u64)>,
    /// Tests in the order they started, with the time since launch.
    pub test_starts: Vec<(u32, Duration)>,
    /// The workspace binaries its processes `exec`ed, each measured on its own.
    pub followed: Vec<FollowedTrace>,
    pub exit: Exit,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
    pub stats: Stats,
}

/// What counting cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// int3 traps taken (test entries included).
    pub traps: u64,
    /// How the addresses of the first process were served.
    pub sites: SiteCounts,
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
