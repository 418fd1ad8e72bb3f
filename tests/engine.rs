//! The ptrace engine on a real program: exact counts through counter trampolines, the int3 fallback
//! and its cap, first-hit mode, threads, forks, exec, signals, crashes, timeouts, and no process
//! left behind. Breakpoints sit on function symbols, so no DWARF is involved.
//! A traced process cannot trace others, so under `coverlay run` (which sets `cfg(coverlay)`) this
//! whole file is left out.
#![cfg(not(coverlay))]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use coverlay::engine::{self, Breakpoints, Exit, Mode, Options, Program, Site};
use object::{Object, ObjectSegment, ObjectSymbol};

const PROGRAM: &str = r#"
use std::io::Write;
extern "C" {
    fn signal(sig: i32, handler: usize) -> usize;
    fn raise(sig: i32) -> i32;
    fn fork() -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn _exit(code: i32) -> !;
}
static HANDLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
extern "C" fn on_usr1(_: i32) { HANDLED.store(true, std::sync::atomic::Ordering::SeqCst); }

#[no_mangle] #[inline(never)] pub extern "C" fn cov_hit(x: u64) -> u64 { std::hint::black_box(x) + 1 }
#[no_mangle] #[inline(never)] pub extern "C" fn cov_never(x: u64) -> u64 { std::hint::black_box(x) * 3 }

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    match mode.as_str() {
        "loop" => for i in 0..10 { cov_hit(i); },
        "hot" => for i in 0..200_000 { cov_hit(i); },
        "threads" => {
            let workers: Vec<_> = (0..8).map(|_| std::thread::spawn(|| for i in 0..200 { cov_hit(i); })).collect();
            for w in workers { w.join().unwrap(); }
        }
        "segv" => { cov_hit(1); unsafe { std::ptr::null_mut::<u8>().write_volatile(1) } }
        "hang" => { cov_hit(1); loop { std::hint::black_box(0); } }
        "exit3" => { cov_hit(1); std::process::exit(3) }
        "sigusr1" => unsafe {
            signal(10, on_usr1 as usize);
            raise(10);
            assert!(HANDLED.load(std::sync::atomic::Ordering::SeqCst));
            cov_hit(1);
        },
        "fork" => unsafe {
            let pid = fork();
            if pid == 0 { cov_hit(1); cov_hit(2); _exit(0); }
            let mut status = 0;
            waitpid(pid, &mut status, 0);
            assert_eq!(status, 0, "child died");
            cov_hit(3);
        },
        "exec" => {
            let status = std::process::Command::new("true").status().unwrap();
            assert!(status.success());
            cov_hit(1);
        }
        "orphan" => {
            let child = std::process::Command::new("sleep").arg("1000").spawn().unwrap();
            let detached = std::thread::spawn(|| loop { std::thread::sleep(std::time::Duration::from_secs(1)); });
            std::mem::forget(detached);
            println!("{}", child.id());
            std::io::stdout().flush().unwrap();
        }
        _ => panic!("unknown mode {mode}"),
    }
}
"#;

struct Built {
    exe: PathBuf,
    breakpoints: Breakpoints,
}

/// How the engine counts in a test.
#[derive(Clone, Copy, Debug)]
enum Counting {
    /// Counter trampolines wherever the code allows (the default).
    Trampolines,
    /// int3 at every address, each counted up to the cap.
    Traps(u32),
    FirstHit,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("coverlay-engine-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let source = dir.join("prog.rs");
        std::fs::write(&source, PROGRAM).unwrap();
        let exe = dir.join("prog");
        let status = std::process::Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
            .args(["-O", "-g", "-Clink-dead-code", "--edition", "2021", "-o"])
            .arg(&exe)
            .arg(&source)
            .status()
            .expect("rustc runs");
        assert!(status.success(), "test program compiles");
        let breakpoints = symbol_breakpoints(&exe, &["cov_hit", "cov_never"]);
        Built { exe, breakpoints }
    })
}

/// Breakpoints on the entries of the named functions, in the order given (must be increasing).
fn symbol_breakpoints(exe: &Path, names: &[&str]) -> Breakpoints {
    let data = std::fs::read(exe).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let mut addresses: Vec<(u64, usize)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let symbol = file.symbols().find(|s| s.name() == Ok(name)).expect(name);
            (symbol.address(), i)
        })
        .collect();
    addresses.sort();
    let load_base = file.segments().map(|s| s.address()).min().unwrap() & !0xfff;
    Breakpoints {
        addresses: addresses.into_iter().map(|(a, _)| a).collect(),
        load_base,
        position_independent: file.kind() == object::ObjectKind::Dynamic,
        test_entries: Vec::new(),
        rearm_per_test: Vec::new(),
        same_line: Vec::new(),
        sites: Vec::new(),
        built: Default::default(),
    }
}

/// Hits of (cov_hit, cov_never).
fn run(mode: &str, counting: Counting, timeout: Option<Duration>) -> (u64, u64, engine::Trace) {
    let built = built();
    let program = Program {
        exe: built.exe.clone(),
        args: vec![mode.into()],
        env: Vec::new(),
        cwd: std::env::temp_dir(),
    };
    let mut breakpoints = built.breakpoints.clone();
    let options = match counting {
        Counting::Trampolines => {
            let code = engine::ExeCode::read(&built.exe).unwrap();
            let traps = vec![false; breakpoints.addresses.len()];
            breakpoints.sites = engine::sites::classify(&code, &breakpoints.addresses, &traps);
            assert!(
                breakpoints
                    .sites
                    .iter()
                    .all(|s| matches!(s, Site::Jump { .. })),
                "both functions start with code a trampoline can move: {:?}",
                breakpoints.sites
            );
            Options {
                mode: Mode::Counts,
                count_cap: 10,
                timeout,
                ..Options::default()
            }
        }
        Counting::Traps(cap) => Options {
            mode: Mode::Counts,
            count_cap: cap,
            timeout,
            ..Options::default()
        },
        Counting::FirstHit => Options {
            mode: Mode::FirstHit,
            count_cap: 1,
            timeout,
            ..Options::default()
        },
    };
    let trace = engine::trace(&program, &breakpoints, &options).expect("trace runs");

    if matches!(counting, Counting::Trampolines) {
        assert_eq!(trace.stats.traps, 0, "trampolines count without traps");
    }
    let data = std::fs::read(&built.exe).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let address_of = |name: &str| {
        file.symbols()
            .find(|s| s.name() == Ok(name))
            .unwrap()
            .address()
    };
    let index = |name| {
        built
            .breakpoints
            .addresses
            .iter()
            .position(|&a| a == address_of(name))
            .unwrap()
    };
    (
        trace.hits[index("cov_hit")],
        trace.hits[index("cov_never")],
        trace,
    )
}

const EVERY_WAY: [Counting; 2] = [Counting::Trampolines, Counting::Traps(1000)];

#[test]
fn counts_every_call_exactly() {
    let (hit, never, trace) = run("loop", Counting::Trampolines, None);
    assert_eq!((hit, never), (10, 0));
    assert_eq!(trace.exit, Exit::Code(0));
    assert!(!trace.capped.iter().any(|&c| c));
    let (hit, _, trace) = run("hot", Counting::Trampolines, None);
    assert_eq!(hit, 200_000);
    assert!(!trace.capped.iter().any(|&c| c));
}

#[test]
fn the_int3_fallback_counts_up_to_its_cap() {
    let (hit, never, trace) = run("loop", Counting::Traps(1000), None);
    assert_eq!((hit, never), (10, 0));
    assert!(!trace.capped.iter().any(|&c| c), "below the cap: exact");
    let (hit, _, trace) = run("hot", Counting::Traps(100), None);
    assert_eq!(hit, 100, "stops counting at the cap");
    assert!(trace.capped.iter().any(|&c| c), "and says so");
    assert_eq!(trace.stats.traps, 100);
    let (hit, _, _) = run("loop", Counting::FirstHit, None);
    assert_eq!(hit, 1, "first-hit mode");
}

#[test]
fn threads_are_traced_in_first_hit_mode() {
    let (hit, never, trace) = run("threads", Counting::FirstHit, None);
    assert_eq!(trace.exit, Exit::Code(0), "{}", trace.stderr);
    assert_eq!((hit, never), (1, 0));
}

#[test]
fn many_threads_on_one_line_are_all_counted() {
    for counting in [Counting::Trampolines, Counting::Traps(100_000)] {
        let (hit, _, trace) = run("threads", counting, None);
        assert_eq!(trace.exit, Exit::Code(0), "{}", trace.stderr);
        assert_eq!(hit, 8 * 200, "{counting:?}");
    }
}

#[test]
fn a_crash_is_an_outcome_with_the_coverage_kept() {
    for counting in EVERY_WAY {
        let (hit, _, trace) = run("segv", counting, None);
        assert_eq!(trace.exit, Exit::Signal(libc::SIGSEGV));
        assert_eq!(hit, 1, "{counting:?}");
        let (hit, _, trace) = run("exit3", counting, None);
        assert_eq!(trace.exit, Exit::Code(3));
        assert_eq!(hit, 1, "{counting:?}");
    }
}

#[test]
fn a_hanging_program_is_killed_at_its_deadline() {
    for counting in EVERY_WAY {
        let (hit, _, trace) = run("hang", counting, Some(Duration::from_millis(500)));
        assert_eq!(trace.exit, Exit::TimedOut);
        assert_eq!(hit, 1, "{counting:?}");
        assert!(trace.duration < Duration::from_secs(10));
    }
}

#[test]
fn the_programs_own_signals_reach_it() {
    for counting in EVERY_WAY {
        let (hit, _, trace) = run("sigusr1", counting, None);
        assert_eq!(trace.exit, Exit::Code(0), "{}", trace.stderr);
        assert_eq!(hit, 1, "{counting:?}");
    }
}

#[test]
fn a_forked_child_is_traced_with_its_own_breakpoints() {
    for counting in EVERY_WAY {
        let (hit, _, trace) = run("fork", counting, None);
        assert_eq!(trace.exit, Exit::Code(0), "{}", trace.stderr);
        assert_eq!(
            hit, 3,
            "two calls in the child, one in the parent ({counting:?})"
        );
    }
}

#[test]
fn an_exec_child_runs_untraced() {
    for counting in EVERY_WAY {
        let (hit, _, trace) = run("exec", counting, None);
        assert_eq!(trace.exit, Exit::Code(0), "{}", trace.stderr);
        assert_eq!(hit, 1, "{counting:?}");
    }
}

#[test]
fn nothing_is_left_running_after_the_program_exits() {
    let (_, _, trace) = run("orphan", Counting::Trampolines, None);
    assert_eq!(trace.exit, Exit::Code(0), "{}", trace.stderr);
    let pid: u32 = trace.stdout.trim().parse().expect("child pid printed");
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
    };
    for _ in 0..50 {
        if !alive() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the orphaned `sleep 1000` (pid {pid}) is still running");
}
