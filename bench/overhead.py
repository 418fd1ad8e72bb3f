#!/usr/bin/env python3
"""Engine overhead: wall time of `coverlay run` against plain `cargo test --tests` on the same crates,
both with their builds already done, measured in one run on this machine, runs interleaved (plain,
coverlay warm, coverlay cold, first-hit, plain, ...), medians. Prints a markdown table.

    python3 bench/overhead.py                  # fixtures + semver, smallvec, regex-syntax, ryu
    python3 bench/overhead.py --runs 7 semver  # one crate, more repetitions

- warm: coverlay's line-table cache from an earlier run is there (what the language server and a
  second `coverlay run` see); cold: the cache is deleted first (a first run after a build).
- `--no-counts`: first-hit mode (one trap per line, no counts).
- traps and trampolines: from the warm run's JSON report, summed over test executables: traps
  taken, and the share of counted addresses served by counter trampolines instead of int3.

Registry crates are fetched with cargo into bench/work/ (gitignored). The main columns leave
doctests out on both sides (`cargo test --tests`, `coverlay run --no-doctests`). With `--doctests`,
two more columns compare whole suites, doctests included: `cargo test` (which compiles and runs
every doctest) against `coverlay run` (which compiles them and runs each traced). ryu is the
CPU-heavy suite: its tests spend their time in tight arithmetic loops, where every statement runs a
trampoline.
"""
import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "bench", "work")
COVERLAY = os.path.join(ROOT, "target", "release", "coverlay")
REGISTRY_CRATES = {"semver": "=1.0.28", "smallvec": "=1.15.1", "regex-syntax": "=0.8.12",
                   "ryu": "=1.0.20"}
FIXTURES = ["ledger", "twocrates"]


def source_text(path, name, number, cache={}):
    """Line `number` of file `name` (relative to `path` unless absolute), "?" when there is none."""
    full = name if os.path.isabs(name) else os.path.join(path, name)
    if full not in cache:
        try:
            with open(full, errors="replace") as f:
                cache[full] = f.read().splitlines()
        except OSError:
            cache[full] = []
    text = cache[full]
    return text[number - 1] if 0 < number <= len(text) else "?"


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


def once(cmd, cwd):
    start = time.perf_counter()
    result = sh(cmd, cwd=cwd, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode not in (0, 101):
        sys.exit(f"failed: {' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return elapsed


def counting_stats(report):
    """(traps, share of counted addresses served by trampolines) from a JSON report."""
    with open(report) as f:
        executables = json.load(f)["executables"]
    traps = sum(e["counting"]["traps"] for e in executables)
    tramp = sum(e["counting"]["trampolines"] for e in executables)
    int3 = sum(e["counting"]["int3"] for e in executables)
    return traps, tramp / max(1, tramp + int3)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--doctests", action="store_true",
                        help="also time whole suites with doctests: `cargo test` vs `coverlay run`")
    parser.add_argument("crates", nargs="*")
    args = parser.parse_args()
    os.makedirs(WORK, exist_ok=True)
    sh(["cargo", "build", "--release"], cwd=ROOT)

    crates = args.crates or FIXTURES + list(REGISTRY_CRATES)
    rows = []
    for name in crates:
        if name in REGISTRY_CRATES:
            path = fetch(name, REGISTRY_CRATES[name])
        else:
            path = os.path.join(ROOT, "tests", "fixtures", name)
        report = os.path.join(WORK, f"{name}.json")
        plain = ["cargo", "test", "--tests", "-q"]
        counting = [COVERLAY, "run", path, "--json", report, "--no-doctests"]
        first_hit = [COVERLAY, "run", path, "--no-counts", "--no-doctests"]
        plain_all = ["cargo", "test", "-q"]
        with_doctests = [COVERLAY, "run", path]
        cache = os.path.join(path, "target", "coverlay", "line-tables")
        sh(plain, cwd=path, check=False)  # warm both builds
        sh(counting, cwd=path, check=False)
        times = {"plain": [], "warm": [], "cold": [], "first": []}
        if args.doctests:
            sh(plain_all, cwd=path, check=False)
            sh(with_doctests, cwd=path, check=False)
            times.update({"plain_all": [], "with_doctests": []})
        for _ in range(args.runs):
            times["plain"].append(once(plain, path))
            times["warm"].append(once(counting, path))
            shutil.rmtree(cache, ignore_errors=True)
            times["cold"].append(once(counting, path))
            times["first"].append(once(first_hit, path))
            if args.doctests:
                times["plain_all"].append(once(plain_all, path))
                times["with_doctests"].append(once(with_doctests, path))
        med = {k: statistics.median(v) for k, v in times.items()}
        traps, share = counting_stats(report)
        rows.append((name, med, traps, share))
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}s" for k, v in med.items())
              + f", {traps} traps, {share:.1%} trampolines", file=sys.stderr)

    extra_head = " `cargo test` | `coverlay run` with doctests | ratio |" if args.doctests else ""
    print("| crate | `cargo test --tests` | `coverlay run` warm | ratio | cold | ratio "
          "| `--no-counts` | ratio | traps | trampolines |" + extra_head)
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
          + ("---:|---:|---:|" if args.doctests else ""))
    for name, med, traps, share in rows:
        p = med["plain"]
        extra = ""
        if args.doctests:
            a = med["plain_all"]
            extra = (f" {a:.2f} s | {med['with_doctests']:.2f} s "
                     f"| {med['with_doctests'] / a:.2f}× |")
        print(f"| {name} | {p:.2f} s | {med['warm']:.2f} s | {med['warm'] / p:.2f}× "
              f"| {med['cold']:.2f} s | {med['cold'] / p:.2f}× "
              f"| {med['first']:.2f} s | {med['first'] / p:.2f}× | {traps:,} | {share:.1%} |"
              + extra)


if __name__ == "__main__":
    main()
