#!/usr/bin/env python3
"""Engine overhead: wall time of `coverlay run` against plain `cargo test` on the same crates, both
with their builds already done, measured in one run on this machine. Prints a markdown table.

    python3 bench/overhead.py                 # fixtures + semver, smallvec, regex-syntax
    python3 bench/overhead.py --runs 5 semver  # one crate, more repetitions

Registry crates are fetched with cargo into bench/work/ (gitignored). Doctests are left out of the
baseline because coverlay does not run them.

When `cargo tarpaulin` is installed, four more columns time `cargo tarpaulin --engine ptrace
--skip-clean` (first hit) and the same with `--count`, warm and by the same median-of-runs method,
with the invocation that agreement.py uses (tarpaulin_cmd there: test code included like coverlay's
default, no doctests, its own target dir). Without tarpaulin (or with --no-tarpaulin) they are left
out and the table is the one above.
"""
import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "bench", "work")
COVERLAY = os.path.join(ROOT, "target", "release", "coverlay")
REGISTRY_CRATES = {"semver": "=1.0.26", "smallvec": "=1.15.1", "regex-syntax": "=0.8.5"}
FIXTURES = ["ledger", "twocrates"]


def sh(cmd, cwd=None, check=True):
    result = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and result.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{result.stdout}\n{result.stderr}")
    return result


def fetch(name, version):
    """Unpacks a crate's published source (with its tests) into bench/work/NAME."""
    dest = os.path.join(WORK, name)
    if os.path.exists(dest):
        return dest
    probe = os.path.join(WORK, f"fetch-{name}")
    os.makedirs(os.path.join(probe, "src"), exist_ok=True)
    with open(os.path.join(probe, "Cargo.toml"), "w") as f:
        f.write(f'[package]\nname = "probe"\nversion = "0.0.0"\nedition = "2021"\n[workspace]\n'
                f'[dependencies]\n{name} = "{version}"\n')
    open(os.path.join(probe, "src", "lib.rs"), "w").close()
    sh(["cargo", "fetch"], cwd=probe)
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    exact = version.lstrip("=")
    src = glob.glob(os.path.join(home, "registry", "src", "*", f"{name}-{exact}"))[0]
    shutil.copytree(src, dest)
    manifest = os.path.join(dest, "Cargo.toml")
    with open(manifest) as f:
        text = f.read()
    if "[workspace]" not in text:
        with open(manifest, "a") as f:
            f.write("\n[workspace]\n")
    shutil.rmtree(probe)
    return dest


def timed(cmd, cwd, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = sh(cmd, cwd=cwd, check=False)
        times.append(time.perf_counter() - start)
        if result.returncode not in (0, 101):
            sys.exit(f"failed: {' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return statistics.median(times)


def timed_tolerant(cmd, cwd, runs):
    """Like timed() for a tool that may fail on a crate (tarpaulin --count loses track of
    multi-threaded test processes now and then): (median of the good runs or None, failures)."""
    times, failures = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        result = sh(cmd, cwd=cwd, check=False)
        elapsed = time.perf_counter() - start
        if result.returncode in (0, 101) and "Test failed during run" not in result.stderr:
            times.append(elapsed)
        else:
            failures += 1
            print(f"  failed ({result.returncode}): {' '.join(cmd)}\n  "
                  + "\n  ".join(result.stderr.strip().splitlines()[-2:]), file=sys.stderr)
    return (statistics.median(times) if times else None), failures


def cell(timing, plain, runs):
    """`| seconds | ratio |` cells of a timed_tolerant() result."""
    median, failures = timing
    note = f" ({failures}/{runs} runs failed)" if failures else ""
    if median is None:
        return f" failed{note} | – |"
    return f" {median:.2f}{note} | {median / plain:.2f}× |"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-tarpaulin", action="store_true", help="leave tarpaulin out")
    parser.add_argument("crates", nargs="*")
    args = parser.parse_args()
    os.makedirs(WORK, exist_ok=True)
    tarpaulin = None
    if not args.no_tarpaulin:
        sys.dont_write_bytecode = True  # no __pycache__ in bench/
        from agreement import tarpaulin_cmd, tarpaulin_installed
        if tarpaulin_installed():
            tarpaulin = tarpaulin_cmd
        else:
            print("cargo tarpaulin is not installed: its columns are left out", file=sys.stderr)
    sh(["cargo", "build", "--release"], cwd=ROOT)

    crates = args.crates or FIXTURES + list(REGISTRY_CRATES)
    rows = []
    for name in crates:
        if name in REGISTRY_CRATES:
            path = fetch(name, REGISTRY_CRATES[name])
        else:
            path = os.path.join(ROOT, "tests", "fixtures", name)
        plain = ["cargo", "test", "--tests", "-q"]
        first_hit = [COVERLAY, "run", path, "--no-counts"]
        counting = [COVERLAY, "run", path]
        sh(plain, cwd=path, check=False)  # warm both builds
        sh(first_hit, cwd=path, check=False)
        t_plain = timed(plain, path, args.runs)
        t_first = timed(first_hit, path, args.runs)
        t_count = timed(counting, path, args.runs)
        extra = ()
        if tarpaulin:
            with tempfile.TemporaryDirectory() as tmp:
                tarp_first = tarpaulin(path, tmp)
                tarp_count = tarpaulin(path, tmp, ["--count"])
                sh(tarp_first, cwd=path, check=False)  # warm tarpaulin's own build
                extra = (timed_tolerant(tarp_first, path, args.runs),
                         timed_tolerant(tarp_count, path, args.runs))
        rows.append((name, t_plain, t_first, t_count) + extra)
        print(f"{name}: plain {t_plain:.2f}s, first-hit {t_first:.2f}s, counts {t_count:.2f}s"
              + "".join(f", {label} {t if t is None else round(t, 2)}s ({n} failed)"
                        for label, (t, n) in zip(("tarpaulin", "tarpaulin --count"), extra)),
              file=sys.stderr)

    head = "| crate | `cargo test` (s) | `coverlay run --no-counts` (s) | ratio | `coverlay run` (s) | ratio |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if tarpaulin:
        head += " `tarpaulin` (s) | ratio | `tarpaulin --count` (s) | ratio |"
        rule += "---:|---:|---:|---:|"
    print(head)
    print(rule)
    for name, plain, first, count, *extra in rows:
        line = f"| {name} | {plain:.2f} | {first:.2f} | {first / plain:.2f}× | {count:.2f} | {count / plain:.2f}× |"
        for timing in extra:
            line += cell(timing, plain, args.runs)
        print(line)


if __name__ == "__main__":
    main()
