//! The event loop of one traced session: a state machine over `waitpid` events of every thread and
//! child of the test process. It patches the code at the start, turns int3 traps and counter
//! readings into per-test counts, and passes every other signal on.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::ptrace::{self, Event};
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::breakpoints::{Space, Table};
use super::displaced::{self, Resume};
use super::lanes::{self, Lanes};
use super::launch::{spawn_traced, OutputReaders, Watchdog};
use super::sites::{self, Site, SiteCounts};
use super::trampoline::{self, Trampolines};
use super::{
    Breakpoints, EngineError, Exit, Followed, FollowedTrace, Mode, Options, Program, Stats, Trace,
};
use std::path::Path;

/// Byte offset of `rip` in `struct user` on x86_64, for PTRACE_PEEKUSER/POKEUSER: one register
/// read or write is all a breakpoint needs, cheaper than a whole GETREGS/SETREGS pair.
const RIP_OFFSET: usize = libc::RIP as usize * 8;
const RSP_OFFSET: usize = libc::RSP as usize * 8;

/// How long output pipes may stay open after the process tree is gone.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

struct Task {
    space: usize,
    /// Breakpoint this thread is single-stepping over (counting mode).
    stepping: Option<usize>,
    /// A new tracee starts with a SIGSTOP that belongs to the tracer, not to the program.
    awaiting_initial_stop: bool,
    /// Its lane of counters (`None` without trampolines).
    lane: Option<Lane>,
    /// Its exit event has come.
    exiting: bool,
}

/// Whose lane a thread counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    /// Its own, handed back when it ends.
    Own(u32),
    /// Another thread's that cannot run meanwhile (a vfork child's parent), or, with every lane
    /// taken, its creator's.
    Shared(u32),
}

impl Lane {
    fn number(self) -> u32 {
        match self {
            Lane::Own(k) | Lane::Shared(k) => k,
        }
    }
}

struct Session {
    table: Table,
    spaces: Vec<Option<Space>>,
    tasks: HashMap<Pid, Task>,
    /// New tracees whose initial stop arrived before their creator's clone/fork event.
    early: HashSet<Pid>,
    mode: Mode,
    cap: u32,
    /// How each breakpoint is counted in this session (all `Trap` without trampolines).
    sites: Vec<Site>,
    /// The counts of `sites` that follow from others'.
    derivations: sites::Derivations,
    /// Lowest scratch memory mapped so far below the executable (trampoline code).
    scratch_below: u64,
    /// More threads ran at once than there are lanes, sharing some: warned once.
    lanes_short: bool,
    /// Executions since the last test boundary, per breakpoint: counter increments read and traps.
    period: Vec<u64>,
    /// What one reading of the counters gained, per breakpoint (kept to spare an allocation).
    gained: Vec<u64>,
    totals: Vec<u64>,
    capped: Vec<bool>,
    /// Traps per breakpoint during the current test (the fallback's cap is per test).
    test_traps: Vec<u32>,
    traps: u64,
    root: Pid,
    root_exit: Option<Exit>,
    started: Instant,
    /// Test number per breakpoint index, for test entries; `NO_TEST` elsewhere.
    test_of: Vec<u32>,
    rearm_per_test: Vec<usize>,
    current_test: Option<u32>,
    test_hits: Vec<(u32, u32, u64)>,
    test_starts: Vec<(u32, Duration)>,
    /// When the current test started (nanoseconds since `started`), for the watchdog.
    mark: Arc<AtomicU64>,
    tests_started: Option<Arc<std::sync::atomic::AtomicUsize>>,
    /// How a counting breakpoint is passed, per breakpoint; empty when single-stepping.
    resume_plan: Vec<Resume>,
    same_line: Vec<u32>,
    site_counts: SiteCounts,
    options: Options,
    /// Sessions of the workspace binaries this session's processes `exec`ed: (index into
    /// `Options::follow`, the test running then, pid, the thread tracing it).
    followers: Vec<(usize, Option<u32>, Pid, JoinHandle)>,
}

type JoinHandle = std::thread::JoinHandle<Result<Trace, EngineError>>;

const NO_TEST: u32 = u32::MAX;

pub(super) fn run(
    program: &Program,
    breakpoints: &Breakpoints,
    options: &Options,
) -> Result<Trace, EngineError> {
    let started = Instant::now();
    let mut child = spawn_traced(program)?;
    let root = Pid::from_raw(child.id() as i32);
    let readers = OutputReaders::start(child.stdout.take(), child.stderr.take());
    let mark = Arc::new(AtomicU64::new(0));
    let watchdog = Watchdog::start(
        root,
        started,
        mark.clone(),
        options.timeout,
        options.cancel.clone(),
    );
    let mut session = Session::new(root, breakpoints, options, started, mark);
    let outcome = session
        .start(program, breakpoints)
        .and_then(|()| session.event_loop());
    session.wind_up(outcome.is_err());
    let timed_out = watchdog.finish();
    let (stdout, stderr) = readers.finish(OUTPUT_GRACE);
    let followed = session.join_followers();
    outcome?;

    let cancelled = options
        .cancel
        .as_ref()
        .is_some_and(|c| c.load(Ordering::Relaxed));
    let exit = match session.root_exit.take() {
        _ if cancelled => Exit::Cancelled,
        _ if timed_out => Exit::TimedOut,
        Some(exit) => exit,
        None => Exit::Signal(Signal::SIGKILL as i32),
    };
    Ok(Trace {
        hits: session.totals,
        capped: session.capped,
        test_hits: session.test_hits,
        test_starts: session.test_starts,
        followed,
        exit,
        stdout,
        stderr,
        duration: started.elapsed(),
        stats: Stats {
            traps: session.traps,
            sites: session.site_counts,
        },
    })
}

/// Traces `pid`, a process that has just `exec`ed `followed.exe` and was handed over stopped
/// (detached with SIGSTOP by the session that traced it), until it and its children end. Its
/// output went where its parent's goes; the session that handed it over kills it at its end.
fn follow(pid: Pid, followed: &Followed, options: &Options) -> Result<Trace, EngineError> {
    let started = Instant::now();
    let options = Options {
        follow: Arc::default(),
        tests_started: None,
        ..options.clone()
    };
    let breakpoints = &followed.breakpoints;
    let mut session = Session::new(pid, breakpoints, &options, started, Arc::default());
    let outcome = session
        .attach(&followed.exe, breakpoints)
        .and_then(|()| session.event_loop());
    session.wind_up(outcome.is_err());
    if outcome.is_err() {
        // Not taken over (or lost): it must not stay stopped, or its test would hang on it.
        let _ = kill(pid, Signal::SIGCONT);
    }
    outcome?;
    Ok(Trace {
        hits: session.totals,
        capped: session.capped,
        test_hits: session.test_hits,
        test_starts: Vec::new(),
        // Its options follow nothing: what it `exec`s runs untraced.
        followed: Vec::new(),
        exit: session
            .root_exit
            .take()
            .unwrap_or(Exit::Signal(Signal::SIGKILL as i32)),
        stdout: String::new(),
        stderr: String::new(),
        duration: started.elapsed(),
        stats: Stats {
            traps: session.traps,
            sites: session.site_counts,
        },
    })
}

impl Session {
    fn new(
        root: Pid,
        breakpoints: &Breakpoints,
        options: &Options,
        started: Instant,
        mark: Arc<AtomicU64>,
    ) -> Self {
        let n = breakpoints.addresses.len();
        let mut test_of = vec![NO_TEST; n];
        for &(index, test) in &breakpoints.test_entries {
            test_of[index] = test;
        }
        Session {
            table: Table::new(breakpoints.addresses.clone()),
            spaces: Vec::new(),
            tasks: HashMap::new(),
            early: HashSet::new(),
            mode: options.mode,
            cap: match options.mode {
                Mode::Counts => options.count_cap.max(1),
                Mode::FirstHit => 1,
            },
            sites: vec![Site::Trap; n],
            derivations: sites::Derivations::default(),
            scratch_below: u64::MAX,
            lanes_short: false,
            period: vec![0; n],
            gained: vec![0; n],
            totals: vec![0; n],
            capped: vec![false; n],
            test_traps: vec![0; n],
            traps: 0,
            root,
            root_exit: None,
            started,
            test_of,
            rearm_per_test: breakpoints.rearm_per_test.clone(),
            current_test: None,
            test_hits: Vec::new(),
            test_starts: Vec::new(),
            mark,
            tests_started: options.tests_started.clone(),
            resume_plan: Vec::new(),
            same_line: breakpoints.same_line.clone(),
            site_counts: SiteCounts::default(),
            options: options.clone(),
            followers: Vec::new(),
        }
    }

    /// Takes over a process another session detached with SIGSTOP right after its `exec`: its
    /// stop arrives as the SIGSTOP itself or as a group-stop, whichever came first.
    fn attach(&mut self, exe: &Path, breakpoints: &Breakpoints) -> Result<(), EngineError> {
        ptrace::seize(self.root, Self::trace_options())
            .map_err(|e| self.ptrace_error(self.root, "PTRACE_SEIZE", e))?;
        loop {
            match waitpid(self.root, Some(WaitPidFlag::__WALL)) {
                Ok(WaitStatus::Stopped(_, _) | WaitStatus::PtraceEvent(..)) => break,
                Ok(WaitStatus::Exited(_, code)) => {
                    self.root_exit = Some(Exit::Code(code));
                    return Ok(());
                }
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    self.root_exit = Some(Exit::Signal(signal as i32));
                    return Ok(());
                }
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(errno) => return Err(self.ptrace_error(self.root, "waitpid", errno)),
            }
        }
        self.arm(exe, breakpoints)
    }

    fn trace_options() -> ptrace::Options {
        ptrace::Options::PTRACE_O_EXITKILL
            | ptrace::Options::PTRACE_O_TRACECLONE
            | ptrace::Options::PTRACE_O_TRACEFORK
            | ptrace::Options::PTRACE_O_TRACEVFORK
            | ptrace::Options::PTRACE_O_TRACEEXEC
            | ptrace::Options::PTRACE_O_TRACEEXIT
    }

    /// After the event loop: the last counts in, and on failure nothing left running.
    fn wind_up(&mut self, failed: bool) {
        self.flush();
        if failed {
            self.kill_everything();
            self.reap_all();
        }
    }

    /// What the processes this session handed over measured, each with the test that was
    /// running when it `exec`ed.
    fn join_followers(&mut self) -> Vec<FollowedTrace> {
        self.followers
            .drain(..)
            .filter_map(|(executable, test, _, handle)| match handle.join() {
                Ok(Ok(trace)) => Some(FollowedTrace {
                    executable,
                    test,
                    trace,
                }),
                Ok(Err(error)) => {
                    tracing::warn!("a followed program could not be measured: {error}");
                    None
                }
                Err(_) => None,
            })
            .collect()
    }

    /// Waits for the post-exec stop, sets the trace options, finds the load bias and arms all.
    fn start(&mut self, program: &Program, breakpoints: &Breakpoints) -> Result<(), EngineError> {
        match waitpid(self.root, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Stopped(_, Signal::SIGTRAP)) => {}
            Ok(WaitStatus::Exited(_, code)) => {
                self.root_exit = Some(Exit::Code(code));
                return Ok(());
            }
            Ok(WaitStatus::Signaled(_, signal, _)) => {
                self.root_exit = Some(Exit::Signal(signal as i32));
                return Ok(());
            }
            Ok(_) => return Err(self.ptrace_error(self.root, "first stop", Errno::EPROTO)),
            Err(errno) => return Err(self.ptrace_error(self.root, "waitpid", errno)),
        }
        ptrace::setoptions(self.root, Self::trace_options())
            .map_err(|e| self.ptrace_error(self.root, "PTRACE_SETOPTIONS", e))?;
        self.arm(&program.exe, breakpoints)
    }

    /// Finds the load bias, patches the code and lets the root run.
    fn arm(&mut self, exe: &Path, breakpoints: &Breakpoints) -> Result<(), EngineError> {
        let exe_start = load_address(self.root, exe)?;
        let bias = if breakpoints.position_independent {
            exe_start.wrapping_sub(breakpoints.load_base)
        } else {
            0
        };
        let mut space = Space::open(self.root, bias, vec![false; self.table.len()])?;
        space.read_windows(&mut self.table)?;
        let mut patches = Vec::new();
        let mut root_lane = None;
        if breakpoints.sites.len() == self.table.len() {
            // Without trampolines everything traps but taken edges, which lie inside
            // instructions.
            self.sites = breakpoints
                .sites
                .iter()
                .map(|site| match site.is_edge() {
                    true => Site::Lost,
                    false => Site::Trap,
                })
                .collect();
        }
        if self.mode == Mode::Counts && breakpoints.sites.len() == self.table.len() {
            if let Some((built, lanes)) = self.prepare_trampolines(&space, exe_start, breakpoints) {
                self.sites = built.sites.clone();
                patches = built.patches.clone();
                root_lane = Some(0);
                space.lanes = Some(lanes);
            }
        }
        self.site_counts = SiteCounts::of(&self.sites);
        self.derivations = sites::Derivations::of(&self.sites);
        for (capped, site) in self.capped.iter_mut().zip(&self.sites) {
            *capped |= *site == Site::Lost;
        }
        if self.cap > 1 && self.sites.contains(&Site::Trap) {
            self.prepare_displaced(&space, exe_start);
        }
        space.patch_all(&self.table, &self.sites, &patches)?;
        tracing::debug!(
            "{}: armed after {:?}",
            exe.display(),
            self.started.elapsed()
        );
        self.spaces.push(Some(space));
        self.tasks.insert(
            self.root,
            Task {
                space: 0,
                stepping: None,
                awaiting_initial_stop: false,
                lane: root_lane.map(Lane::Own),
                exiting: false,
            },
        );
        self.resume(self.root, None);
        Ok(())
    }

    /// Maps the trampoline code below the executable (within ±2 GiB of it, for rip-relative
    /// operands) and the counter lanes anywhere, writes the code and gives the root thread its
    /// lane. The code is built once per executable and address layout. `None` (counting falls
    /// back to traps) when no memory could be mapped or the lane not given.
    fn prepare_trampolines(
        &mut self,
        space: &Space,
        exe_start: u64,
        breakpoints: &Breakpoints,
    ) -> Option<(Arc<Trampolines>, Lanes)> {
        let jumps = breakpoints
            .sites
            .iter()
            .filter(|s| matches!(s, Site::Jump { .. } | Site::Edge { .. }))
            .count() as u64;
        if jumps == 0 {
            return None;
        }
        let code_len = (jumps * trampoline::SLOT).next_multiple_of(4096);
        let stride = (self.table.len() as u64 * 8).next_multiple_of(4096);
        let code_hint = exe_start.saturating_sub(code_len + (1 << 20)) & !4095;
        let prot = libc::PROT_READ | libc::PROT_EXEC;
        let code_base = displaced::map_scratch(self.root, Some(code_hint), code_len, prot, space)
            .inspect_err(|errno| {
                tracing::warn!("no scratch memory at {code_hint:#x}: {errno}; counting with int3")
            })
            .ok()?;
        let (lanes_base, lanes_count) = [lanes::LANES, lanes::FEWER_LANES]
            .into_iter()
            .find_map(|count| {
                let len = stride * u64::from(count);
                let prot = libc::PROT_READ | libc::PROT_WRITE;
                displaced::map_scratch(self.root, None, len, prot, space)
                    .ok()
                    .map(|base| (base, count))
            })
            .or_else(|| {
                tracing::warn!("no memory for the counters; counting with int3");
                None
            })?;
        let key = (space.bias, code_base);
        let mut cache = breakpoints
            .built
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let built = match cache.as_ref() {
            Some((k, built)) if *k == key => built.clone(),
            _ => {
                let runtime: Vec<u64> = (0..self.table.len())
                    .map(|i| self.table.address(i) + space.bias)
                    .collect();
                let built = Arc::new(trampoline::build(
                    &breakpoints.sites,
                    &runtime,
                    self.table.windows(),
                    code_base,
                ));
                *cache = Some((key, built.clone()));
                built
            }
        };
        drop(cache);
        if built.code.len() as u64 > code_len {
            return None;
        }
        let mut lanes = Lanes::new(lanes_base, stride, lanes_count);
        let root_lane = lanes.take()?;
        if let Err(errno) = lanes::assign(self.root, lanes.address(root_lane)) {
            tracing::warn!("cannot give the test its counters: {errno}; counting with int3");
            return None;
        }
        if let Err(error) = space.replace(code_base, &built.code) {
            tracing::warn!("cannot write trampolines: {error}; counting with int3");
            return None;
        }
        self.scratch_below = code_base;
        Some((built, lanes))
    }

    /// Builds the out-of-line copies of the instructions under counting int3s in scratch memory
    /// just below the executable (rip-relative operands must stay within ±2 GiB). Without scratch
    /// memory, counting falls back to single steps.
    fn prepare_displaced(&mut self, space: &Space, exe_start: u64) {
        let len = (self.table.len() as u64 * displaced::SLOT).next_multiple_of(4096);
        let below = self.scratch_below.min(exe_start);
        let hint = below.saturating_sub(len + (1 << 20)) & !4095;
        let prot = libc::PROT_READ | libc::PROT_EXEC;
        match displaced::map_scratch(self.root, Some(hint), len, prot, space) {
            Ok(scratch) => {
                let runtime: Vec<u64> = (0..self.table.len())
                    .map(|i| self.table.address(i) + space.bias)
                    .collect();
                let sites = &self.sites;
                let traps = |i: usize| sites[i] == Site::Trap;
                let (resume, code) =
                    displaced::plan(&runtime, self.table.windows(), &traps, scratch);
                match space.replace(scratch, &code) {
                    Ok(_) => self.resume_plan = resume,
                    Err(error) => tracing::debug!("cannot write scratch code: {error}"),
                }
            }
            Err(errno) => tracing::debug!("no scratch memory at {hint:#x}: {errno}"),
        }
    }

    fn event_loop(&mut self) -> Result<(), EngineError> {
        let flags = WaitPidFlag::__WALL | WaitPidFlag::__WNOTHREAD;
        loop {
            match waitpid(None, Some(flags)) {
                Ok(status) => self.handle(status)?,
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => return Ok(()),
                Err(errno) => return Err(self.ptrace_error(self.root, "waitpid", errno)),
            }
        }
    }

    fn handle(&mut self, status: WaitStatus) -> Result<(), EngineError> {
        match status {
            WaitStatus::Exited(pid, code) => self.gone(pid, Exit::Code(code)),
            WaitStatus::Signaled(pid, signal, _) => self.gone(pid, Exit::Signal(signal as i32)),
            WaitStatus::Stopped(pid, signal) => self.stopped(pid, signal)?,
            WaitStatus::PtraceEvent(pid, _, event) => self.event(pid, event)?,
            WaitStatus::PtraceSyscall(pid) => self.resume(pid, None),
            WaitStatus::Continued(_) | WaitStatus::StillAlive => {}
        }
        Ok(())
    }

    fn gone(&mut self, pid: Pid, exit: Exit) {
        // A thread killed outright has no exit event: its lane comes back here.
        self.hand_back_lane(pid);
        self.tasks.remove(&pid);
        self.early.remove(&pid);
        if pid == self.root {
            self.root_exit = Some(exit);
            // Whatever the test left running (forked children, detached daemons) dies with it.
            self.kill_everything();
        }
    }

    fn stopped(&mut self, pid: Pid, signal: Signal) -> Result<(), EngineError> {
        let Some(task) = self.tasks.get_mut(&pid) else {
            self.early.insert(pid);
            return Ok(());
        };
        if task.awaiting_initial_stop && signal == Signal::SIGSTOP {
            task.awaiting_initial_stop = false;
            self.enter_lane(pid);
            self.resume(pid, None);
            return Ok(());
        }
        if signal == Signal::SIGTRAP {
            return self.trap(pid);
        }
        if task.stepping.is_some() {
            // Deliver the signal and keep stepping: the handler runs, then the step completes.
            let _ = ptrace::step(pid, signal);
            return Ok(());
        }
        if is_stop_signal(signal) && ptrace::getsiginfo(pid) == Err(Errno::EINVAL) {
            // A group-stop, not a signal: resuming it keeps the test running.
            self.resume(pid, None);
        } else {
            self.resume(pid, Some(signal));
        }
        Ok(())
    }

    fn trap(&mut self, pid: Pid) -> Result<(), EngineError> {
        let code = match ptrace::getsiginfo(pid) {
            Ok(info) => info.si_code,
            Err(_) => return Ok(()),
        };
        let task = &self.tasks[&pid];
        if code == libc::SI_KERNEL {
            let rip = match ptrace::read_user(pid, RIP_OFFSET as ptrace::AddressType) {
                Ok(rip) => rip as u64,
                Err(_) => return Ok(()),
            };
            let space = self.spaces[task.space].as_ref();
            let found = space.and_then(|s| {
                let index = self.table.lookup(rip.wrapping_sub(1 + s.bias))?;
                Some((index, s.armed[index]))
            });
            match found {
                Some((index, true)) => return self.breakpoint(pid, index, rip - 1),
                // Another thread hit the int3 before it was lifted or stepped over: rewind it to
                // the original instruction, which counts only if its breakpoint is armed again.
                Some((_, false)) => {
                    let _ =
                        ptrace::write_user(pid, RIP_OFFSET as ptrace::AddressType, (rip - 1) as _);
                    self.resume(pid, None);
                    return Ok(());
                }
                None => {}
            }
        } else if let Some(index) = task.stepping {
            if code == libc::TRAP_TRACE || code == libc::TRAP_BRKPT {
                return self.stepped(pid, index);
            }
        }
        // The program's own SIGTRAP (raise, its own int3): not ours to swallow.
        self.resume(pid, Some(Signal::SIGTRAP));
        Ok(())
    }

    fn breakpoint(&mut self, pid: Pid, index: usize, address: u64) -> Result<(), EngineError> {
        let entry = self.test_of[index] != NO_TEST;
        if entry {
            self.start_test(self.test_of[index])?;
        }
        self.traps += 1;
        self.period[index] += 1;
        self.test_traps[index] = self.test_traps[index].saturating_add(1);
        // A test entry stays armed in counts mode: the tracer must see every test start.
        let counting = self.keeps_counting(index);
        let space_id = self.tasks[&pid].space;
        let Some(space) = self.spaces[space_id].as_mut() else {
            return Ok(());
        };
        if counting {
            match self.resume_plan.get(index) {
                Some(&Resume::Slot(slot)) => {
                    let _ = ptrace::write_user(pid, RIP_OFFSET as ptrace::AddressType, slot as _);
                    self.resume(pid, None);
                    return Ok(());
                }
                Some(&Resume::Call { target, return_to }) => {
                    let Ok(rsp) = ptrace::read_user(pid, RSP_OFFSET as ptrace::AddressType) else {
                        return Ok(());
                    };
                    let rsp = rsp as u64 - 8;
                    space.replace(rsp, &return_to.to_le_bytes())?;
                    let _ = ptrace::write_user(pid, RSP_OFFSET as ptrace::AddressType, rsp as _);
                    let _ = ptrace::write_user(pid, RIP_OFFSET as ptrace::AddressType, target as _);
                    self.resume(pid, None);
                    return Ok(());
                }
                Some(Resume::Step) | None => {}
            }
        } else {
            self.capped[index] = true;
            space.lifted.push(index);
        }
        space.disarm(&self.table, index)?;
        if self.mode == Mode::FirstHit && !self.same_line.is_empty() {
            let mut sibling = self.same_line[index] as usize;
            while sibling != index {
                space.disarm(&self.table, sibling)?;
                sibling = self.same_line[sibling] as usize;
            }
        }
        if ptrace::write_user(pid, RIP_OFFSET as ptrace::AddressType, address as _).is_err() {
            return Ok(());
        }
        if counting {
            match space.steppers.iter_mut().find(|(i, _)| *i == index) {
                Some((_, n)) => *n += 1,
                None => space.steppers.push((index, 1)),
            }
            self.tasks.get_mut(&pid).expect("known task").stepping = Some(index);
            let _ = ptrace::step(pid, None);
        } else {
            self.resume(pid, None);
        }
        Ok(())
    }

    /// Whether breakpoint `index` stays armed after its latest trap.
    fn keeps_counting(&self, index: usize) -> bool {
        match self.mode {
            Mode::Counts => self.test_of[index] != NO_TEST || self.test_traps[index] < self.cap,
            Mode::FirstHit => false,
        }
    }

    /// A new test begins: what ran until now belongs to the previous test, and the breakpoints
    /// lifted during it are put back (except those a thread is stepping over: re-arming them would
    /// count that step twice). First-hit mode puts back the function entries instead.
    fn start_test(&mut self, test: u32) -> Result<(), EngineError> {
        for id in 0..self.spaces.len() {
            self.read_counters(id);
        }
        self.flush();
        self.test_traps.fill(0);
        self.current_test = Some(test);
        let elapsed = self.started.elapsed();
        self.test_starts.push((test, elapsed));
        if let Some(started) = &self.tests_started {
            started.fetch_add(1, Ordering::Relaxed);
        }
        self.mark
            .store(elapsed.as_nanos() as u64, Ordering::Relaxed);
        for space in self.spaces.iter_mut().flatten() {
            let rearm = match self.mode {
                Mode::Counts => std::mem::take(&mut space.lifted),
                Mode::FirstHit => self.rearm_per_test.clone(),
            };
            for index in rearm {
                if !space.steppers.iter().any(|&(i, _)| i == index) {
                    space.arm(&self.table, index)?;
                }
            }
        }
        Ok(())
    }

    /// Adds what the counters of space `id` gained since their last reading to the current period.
    fn read_counters(&mut self, id: usize) {
        let Some(Some(space)) = self.spaces.get_mut(id) else {
            return;
        };
        self.gained.fill(0);
        // A process that is already gone has nothing more to tell.
        let Some(Ok(())) = space.read_counters(&mut self.gained) else {
            return;
        };
        // Derived counts are sums of counted ones: derived from what was gained, they are what
        // the derived counts gained.
        self.derivations.apply(&mut self.gained);
        for (period, gained) in self.period.iter_mut().zip(&self.gained) {
            *period = period.wrapping_add(*gained);
        }
    }

    /// Credits the current period to the running test (to no test before the first one).
    fn flush(&mut self) {
        for (index, count) in self.period.iter_mut().enumerate() {
            if *count == 0 {
                continue;
            }
            self.totals[index] += *count;
            if let Some(test) = self.current_test {
                self.test_hits.push((test, index as u32, *count));
            }
            *count = 0;
        }
    }

    /// The thread has executed the original instruction: put the breakpoint back, unless another
    /// thread is still stepping over it (it would trap a second time and be counted twice).
    fn stepped(&mut self, pid: Pid, index: usize) -> Result<(), EngineError> {
        let task = self.tasks.get_mut(&pid).expect("known task");
        task.stepping = None;
        let space_id = task.space;
        let counting = self.keeps_counting(index);
        if let Some(space) = self.spaces[space_id].as_mut() {
            let mut last = false;
            if let Some(pos) = space.steppers.iter().position(|(i, _)| *i == index) {
                space.steppers[pos].1 -= 1;
                if space.steppers[pos].1 == 0 {
                    space.steppers.swap_remove(pos);
                    last = true;
                }
            }
            if last && counting {
                space.arm(&self.table, index)?;
            }
        }
        self.resume(pid, None);
        Ok(())
    }

    fn event(&mut self, pid: Pid, event: i32) -> Result<(), EngineError> {
        const CLONE: i32 = Event::PTRACE_EVENT_CLONE as i32;
        const FORK: i32 = Event::PTRACE_EVENT_FORK as i32;
        const VFORK: i32 = Event::PTRACE_EVENT_VFORK as i32;
        const EXEC: i32 = Event::PTRACE_EVENT_EXEC as i32;
        const EXIT: i32 = Event::PTRACE_EVENT_EXIT as i32;
        match event {
            EXIT => {
                // The last thread of a process to end is the last moment its counters can be
                // read (the lanes of the others stay in its memory until then). The leader's end
                // is read too: threads killed by a group exit need not stop to say so.
                if let Some(task) = self.tasks.get_mut(&pid) {
                    task.exiting = true;
                    let space = task.space;
                    let leader = self.spaces[space].as_ref().is_some_and(|s| s.pid == pid);
                    if leader || !self.tasks.values().any(|t| t.space == space && !t.exiting) {
                        self.read_counters(space);
                    }
                }
                self.hand_back_lane(pid);
            }
            CLONE | FORK | VFORK => {
                let child = match ptrace::getevent(pid) {
                    Ok(child) => Pid::from_raw(child as i32),
                    Err(_) => return Ok(()),
                };
                let Some((parent_space, parent_lane)) =
                    self.tasks.get(&pid).map(|t| (t.space, t.lane))
                else {
                    return Ok(());
                };
                // A forked child keeps its parent thread's lane in its own copy of memory, a
                // vfork child borrows it (its parent waits), a new thread needs a lane of its own.
                let mut lane = parent_lane.map(|l| match event {
                    FORK => Lane::Own(l.number()),
                    _ => Lane::Shared(l.number()),
                });
                let space = if event == FORK {
                    let running = lane.map(Lane::number);
                    match self.spaces[parent_space]
                        .as_ref()
                        .map(|s| s.fork(child, running))
                    {
                        Some(Ok(mut space)) => {
                            // The child's counters start as a copy of the parent's at the fork:
                            // only what it adds after is its own.
                            let _ = space.read_counters(&mut vec![0; self.table.len()]);
                            self.spaces.push(Some(space));
                            self.spaces.len() - 1
                        }
                        // The child died before we could open its memory; its events still come.
                        _ => parent_space,
                    }
                } else {
                    parent_space
                };
                if event == CLONE && lane.is_some() {
                    let taken = self.spaces[space]
                        .as_mut()
                        .and_then(|s| s.lanes.as_mut())
                        .and_then(Lanes::take);
                    match taken {
                        Some(own) => lane = Some(Lane::Own(own)),
                        None if !self.lanes_short => {
                            self.lanes_short = true;
                            tracing::warn!(
                                "more threads at once than counter lanes ({}): some share \
                                 their creator's, whose counts may come out low",
                                self.spaces[space]
                                    .as_ref()
                                    .and_then(|s| s.lanes.as_ref())
                                    .map_or(0, Lanes::count)
                            );
                        }
                        None => {}
                    }
                }
                let seen = self.early.remove(&child);
                self.tasks.insert(
                    child,
                    Task {
                        space,
                        stepping: None,
                        awaiting_initial_stop: !seen,
                        lane,
                        exiting: false,
                    },
                );
                if seen {
                    self.enter_lane(child);
                    self.resume(child, None);
                }
            }
            EXEC => {
                // A new program image has none of our breakpoints: a workspace binary is handed
                // to a session of its own with its breakpoints; anything else runs untraced, so
                // that it can even trace processes of its own. Either stays in the process group
                // we kill at the end.
                if let Some(task) = self.tasks.remove(&pid) {
                    // A vfork child shares its parent's space; only the process that owns the
                    // space loses it to the new image (its other threads are gone by now).
                    let owned = self.spaces[task.space]
                        .as_ref()
                        .is_some_and(|s| s.pid == pid);
                    if owned {
                        self.spaces[task.space] = None;
                        self.tasks.retain(|_, t| t.space != task.space);
                    }
                }
                match self.followed(pid) {
                    Some(index) => self.hand_over(pid, index),
                    None => {
                        let _ = ptrace::detach(pid, None);
                    }
                }
                return Ok(());
            }
            _ => {}
        }
        self.resume(pid, None);
        Ok(())
    }

    /// Points a new thread, stopped before its first instruction, at its own lane (threads start
    /// with their creator's `gs`).
    fn enter_lane(&self, pid: Pid) {
        let Some(task) = self.tasks.get(&pid) else {
            return;
        };
        let (Some(Lane::Own(lane)), Some(Some(space))) = (task.lane, self.spaces.get(task.space))
        else {
            return;
        };
        if let Some(lanes) = &space.lanes {
            // ESRCH: killed meanwhile, its exit event is still to come.
            let _ = lanes::assign(pid, lanes.address(lane));
        }
    }

    /// Takes back the lane of a thread that ends.
    fn hand_back_lane(&mut self, pid: Pid) {
        let Some(task) = self.tasks.get_mut(&pid) else {
            return;
        };
        if let Some(Lane::Own(lane)) = task.lane.take() {
            if let Some(Some(space)) = self.spaces.get_mut(task.space) {
                if let Some(lanes) = space.lanes.as_mut() {
                    lanes.give_back(lane);
                }
            }
        }
    }

    /// Which of the binaries to follow `pid` now runs, by file identity.
    fn followed(&self, pid: Pid) -> Option<usize> {
        if self.options.follow.is_empty() {
            return None;
        }
        let running = std::fs::metadata(format!("/proc/{pid}/exe")).ok()?;
        self.options.follow.iter().position(|f| {
            std::fs::metadata(&f.exe)
                .is_ok_and(|m| m.dev() == running.dev() && m.ino() == running.ino())
        })
    }

    /// Detaches `pid` with a SIGSTOP pending, so that it stops before running a single
    /// instruction of its new image, and starts a session for it on a thread of its own. (A
    /// signal given to PTRACE_DETACH itself is ignored in an exec event stop.)
    fn hand_over(&mut self, pid: Pid, index: usize) {
        if kill(pid, Signal::SIGSTOP).is_err() || ptrace::detach(pid, None).is_err() {
            let _ = ptrace::detach(pid, None);
            return;
        }
        let programs = self.options.follow.clone();
        let options = self.options.clone();
        let handle = std::thread::Builder::new()
            .name("coverlay-follower".into())
            .spawn(move || follow(pid, &programs[index], &options));
        match handle {
            Ok(handle) => self.followers.push((index, self.current_test, pid, handle)),
            Err(_) => {
                let _ = kill(pid, Signal::SIGCONT);
            }
        }
    }

    fn resume(&self, pid: Pid, signal: Option<Signal>) {
        // ESRCH means the thread was killed meanwhile; its exit event is still to come.
        let _ = ptrace::cont(pid, signal);
    }

    fn kill_everything(&self) {
        let _ = killpg(self.root, Signal::SIGKILL);
        for (_, _, pid, _) in &self.followers {
            let _ = kill(*pid, Signal::SIGKILL);
        }
        for space in self.spaces.iter().flatten() {
            let _ = kill(space.pid, Signal::SIGKILL);
        }
    }

    fn reap_all(&mut self) {
        let flags = WaitPidFlag::__WALL | WaitPidFlag::__WNOTHREAD;
        while !matches!(waitpid(None, Some(flags)), Err(Errno::ECHILD)) {}
    }

    fn ptrace_error(&self, pid: Pid, op: &'static str, errno: Errno) -> EngineError {
        EngineError::Ptrace {
            pid: pid.as_raw(),
            op,
            errno,
        }
    }
}

fn is_stop_signal(signal: Signal) -> bool {
    matches!(
        signal,
        Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU
    )
}

/// Start address of the executable's first mapping (file offset 0), found by inode so that
/// symlinks and deleted-then-rebuilt paths cannot confuse it.
fn load_address(pid: Pid, exe: &std::path::Path) -> Result<u64, EngineError> {
    let no_mapping = || EngineError::NoMapping {
        exe: exe.to_path_buf(),
        pid: pid.as_raw(),
    };
    let inode = std::fs::metadata(exe).map_err(|_| no_mapping())?.ino();
    let maps = procfs::process::Process::new(pid.as_raw())
        .and_then(|p| p.maps())
        .map_err(|_| no_mapping())?;
    maps.iter()
        .find(|m| m.inode == inode && m.offset == 0)
        .map(|m| m.address.0)
        .ok_or_else(no_mapping)
}
