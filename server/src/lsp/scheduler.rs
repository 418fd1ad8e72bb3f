//! Turns "something changed" into coverage runs: one run at a time on a thread of its own, a new
//! request cancels the run in progress (its result still counts if it finishes first), pending
//! requests coalesce, and every run carries a generation number so that the store never takes an
//! older result over a newer one. Knows nothing about LSP: it reports through `Event`s.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cargo::Workspace;
use crate::run::{self, Progress, RunError, RunOptions, RunReport};
use crate::selection::TestFilter;

/// Which tests a run covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Tests(TestFilter),
}

impl Scope {
    fn absorb(&mut self, other: Scope) {
        match (&mut *self, other) {
            (Scope::All, _) => {}
            (_, Scope::All) => *self = Scope::All,
            (Scope::Tests(mine), Scope::Tests(theirs)) => mine.absorb(theirs),
        }
    }
}

pub enum Event {
    Started {
        generation: u64,
        scope: Scope,
    },
    Progress {
        generation: u64,
        progress: Progress,
    },
    Finished {
        generation: u64,
        scope: Scope,
        result: Box<Result<RunReport, RunError>>,
    },
}

pub type Sink = Box<dyn Fn(Event) + Send + Sync>;

/// What a run is: `run::run` on the workspace, or a stand-in in the scheduler's own tests.
pub type Runner =
    Box<dyn Fn(&RunOptions, &(dyn Fn(Progress) + Sync)) -> Result<RunReport, RunError> + Send>;

/// Nice value of runs (`COVERLAY_RUN_NICE` overrides it; 0 runs them at normal priority).
const RUN_NICE: i32 = 10;

struct Queue {
    pending: Option<Scope>,
    options: RunOptions,
    stopped: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Cancel flag of the run in progress.
    current: Mutex<Option<Arc<AtomicBool>>>,
    generation: AtomicU64,
    running: AtomicBool,
}

pub struct Scheduler {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Scheduler {
    /// Starts the worker thread for `workspace`. `first_generation` must be larger than the
    /// generation of anything already in the store.
    pub fn start(
        workspace: Workspace,
        options: RunOptions,
        first_generation: u64,
        sink: Sink,
    ) -> Self {
        let root = workspace.root.clone();
        Self::starting_with(root, Some(workspace), options, first_generation, sink)
    }

    /// [`Scheduler::start`] without a workspace read: every run reads it (`run::run`, which
    /// starts the build with the workspace the last run read and checks it beside the build).
    pub fn start_at(root: PathBuf, options: RunOptions, first_generation: u64, sink: Sink) -> Self {
        Self::starting_with(root, None, options, first_generation, sink)
    }

    fn starting_with(
        root: PathBuf,
        workspace: Option<Workspace>,
        options: RunOptions,
        first_generation: u64,
        sink: Sink,
    ) -> Self {
        // The workspace the server has just read serves the first run; later runs read it again,
        // as a manifest may have changed since.
        let first = Mutex::new(workspace);
        let runner: Runner = Box::new(move |options, progress| {
            let read = first.lock().unwrap_or_else(|e| e.into_inner()).take();
            match read {
                Some(workspace) => run::run_in(workspace, Instant::now(), options, progress),
                None => run::run(&root, options, progress),
            }
        });
        Self::with_runner(runner, options, first_generation, sink)
    }

    /// [`Scheduler::start`] with another way to run.
    pub fn with_runner(
        runner: Runner,
        options: RunOptions,
        first_generation: u64,
        sink: Sink,
    ) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                pending: None,
                options,
                stopped: false,
            }),
            wake: Condvar::new(),
            current: Mutex::new(None),
            generation: AtomicU64::new(first_generation),
            running: AtomicBool::new(false),
        });
        let worker = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("coverlay-runs".into())
                .spawn(move || work(&shared, &runner, &sink))
                .expect("spawn the run thread")
        };
        Self {
            shared,
            worker: Mutex::new(Some(worker)),
        }
    }

    /// Asks for a run. A run in progress is cancelled: its sources are older than this request.
    pub fn request(&self, scope: Scope) {
        let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.stopped {
            return;
        }
        match &mut queue.pending {
            Some(pending) => pending.absorb(scope),
            None => queue.pending = Some(scope),
        }
        self.cancel_current();
        self.shared.wake.notify_all();
    }

    /// Options for the next runs (settings changed).
    pub fn set_options(&self, options: RunOptions) {
        let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.options = options;
    }

    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::Acquire)
    }

    /// A generation number newer than every run so far (for store changes made outside runs).
    pub fn next_generation(&self) -> u64 {
        self.shared.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn cancel_current(&self) {
        if let Some(cancel) = &*self
            .shared
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            cancel.store(true, Ordering::Release);
        }
    }

    /// Stops for good: no new runs, the current one is cancelled (its tracees are killed), the
    /// processes it started (cargo, rustc) are killed, and the worker is waited for up to `wait`.
    pub fn stop(&self, wait: Duration) {
        {
            let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.stopped = true;
            queue.pending = None;
            self.cancel_current();
            self.shared.wake.notify_all();
        }
        kill_descendants();
        let worker = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(worker) = worker {
            let deadline = std::time::Instant::now() + wait;
            while !worker.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
                kill_descendants();
            }
            if worker.is_finished() {
                let _ = worker.join();
            }
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

fn work(shared: &Shared, runner: &Runner, sink: &Sink) {
    // Runs are background work: this thread, the tracer threads it starts and the cargo/rustc
    // processes it spawns (all inherit a thread's nice value) yield the CPU to the server's
    // request handling, so that the editor gets its answers while a build saturates the cores.
    // SAFETY: plain syscalls on the calling thread.
    let nice = std::env::var("COVERLAY_RUN_NICE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RUN_NICE);
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice);
    }
    loop {
        let (scope, mut options) = {
            let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if queue.stopped {
                    return;
                }
                if let Some(scope) = queue.pending.take() {
                    break (scope, queue.options.clone());
                }
                queue = shared.wake.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
        };
        let cancel = Arc::new(AtomicBool::new(false));
        *shared.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(cancel.clone());
        options.cancel = Some(cancel);
        options.only_tests = match &scope {
            Scope::All => None,
            Scope::Tests(filter) => Some(filter.clone()),
        };
        let generation = shared.generation.fetch_add(1, Ordering::AcqRel) + 1;
        shared.running.store(true, Ordering::Release);
        sink(Event::Started {
            generation,
            scope: scope.clone(),
        });
        let result = runner(&options, &|progress| {
            sink(Event::Progress {
                generation,
                progress,
            })
        });
        *shared.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        shared.running.store(false, Ordering::Release);
        if matches!(result, Err(RunError::Cancelled)) {
            // What a cancelled run was to cover still has to run: it joins the next run.
            let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            if !queue.stopped {
                let mut again = scope.clone();
                if let Some(pending) = queue.pending.take() {
                    again.absorb(pending);
                }
                queue.pending = Some(again);
            }
        }
        sink(Event::Finished {
            generation,
            scope,
            result: Box::new(result),
        });
    }
}

/// Kills every process this process started, and theirs (a cargo build and its rustc jobs): by
/// pid, found through /proc parent links. Tracees die with their tracer (`PTRACE_O_EXITKILL`).
pub fn kill_descendants() {
    let me = std::process::id() as i32;
    let mut parents: Vec<(i32, i32)> = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            parents.push((pid, ppid));
        }
    }
    let mut family = vec![me];
    let mut i = 0;
    while i < family.len() {
        let parent = family[i];
        family.extend(
            parents
                .iter()
                .filter(|&&(_, ppid)| ppid == parent)
                .map(|&(pid, _)| pid),
        );
        i += 1;
    }
    for &pid in &family[1..] {
        // Our own threads are not listed in /proc (only in /proc/self/task), so every pid here is
        // a child process.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A runner that reports each run's scope and waits for `release` before finishing; a
    /// cancelled run ends as `Cancelled` at once.
    fn scheduler() -> (Scheduler, mpsc::Receiver<Event>, mpsc::Sender<()>) {
        let (events, received) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let released = Mutex::new(released);
        let runner: Runner = Box::new(move |options, _| {
            let cancel = options.cancel.clone().expect("a cancel flag");
            loop {
                if cancel.load(Ordering::Acquire) {
                    return Err(RunError::Cancelled);
                }
                let released = released.lock().unwrap();
                if released.recv_timeout(Duration::from_millis(5)).is_ok() {
                    // Finished: any result but `Cancelled` will do.
                    return Err(RunError::Cargo(crate::cargo::CargoError::BuildFailed {
                        rendered: String::new(),
                    }));
                }
            }
        });
        let events = Mutex::new(events);
        let sink: Sink = Box::new(move |event| {
            let _ = events.lock().unwrap().send(event);
        });
        let s = Scheduler::with_runner(runner, RunOptions::default(), 10, sink);
        (s, received, release)
    }

    fn started(events: &mpsc::Receiver<Event>) -> (u64, Scope) {
        loop {
            match events
                .recv_timeout(Duration::from_secs(10))
                .expect("an event")
            {
                Event::Started { generation, scope } => return (generation, scope),
                _ => continue,
            }
        }
    }

    fn finished(events: &mpsc::Receiver<Event>) -> (u64, Scope, bool) {
        loop {
            match events
                .recv_timeout(Duration::from_secs(10))
                .expect("an event")
            {
                Event::Finished {
                    generation,
                    scope,
                    result,
                } => {
                    let cancelled = matches!(*result, Err(RunError::Cancelled));
                    return (generation, scope, cancelled);
                }
                _ => continue,
            }
        }
    }

    fn tests(ids: &[&str]) -> Scope {
        let mut ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        ids.sort();
        Scope::Tests(TestFilter::ids(ids))
    }

    #[test]
    fn a_cancelled_run_joins_the_next_one() {
        let (s, events, release) = scheduler();
        s.request(Scope::All);
        assert_eq!(started(&events), (11, Scope::All));
        // A rerun of one test during the full run: the full run is cancelled, not dropped.
        s.request(tests(&["a"]));
        assert_eq!(finished(&events), (11, Scope::All, true));
        assert_eq!(started(&events), (12, Scope::All));
        release.send(()).unwrap();
        assert_eq!(finished(&events), (12, Scope::All, false));
        s.stop(Duration::from_secs(5));
    }

    #[test]
    fn requests_coalesce_and_generations_grow() {
        let (s, events, release) = scheduler();
        s.request(tests(&["a"]));
        assert_eq!(started(&events), (11, tests(&["a"])));
        s.request(tests(&["b"]));
        s.request(tests(&["c", "a"]));
        assert!(finished(&events).2, "cancelled by the newer request");
        assert_eq!(started(&events), (12, tests(&["a", "b", "c"])));
        release.send(()).unwrap();
        let (generation, _, cancelled) = finished(&events);
        assert_eq!((generation, cancelled), (12, false));
        assert!(s.next_generation() > 12, "later changes outrank every run");
        s.stop(Duration::from_secs(5));
    }
}
