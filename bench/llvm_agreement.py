#!/usr/bin/env python3
"""Line agreement between coverlay and LLVM source-based coverage (`-C instrument-coverage`) on
the registry crates of overhead.py plus unicode-width, heck, strsim, either and memchr (whose
`[profile.test]` has opt-level 3: the table marks it). LLVM's code lines are taken as the
reference set of coverable lines: how many of them coverlay reports at all, and, for the lines
both report, how often their covered/uncovered verdicts agree. Prints a markdown table.

    python3 bench/llvm_agreement.py                     # all crates, one after another
    python3 bench/llvm_agreement.py semver ryu          # some crates
    python3 bench/llvm_agreement.py --details semver    # + every disagreeing line and every line
                                                        #   only LLVM counts, by file, with source
    python3 bench/llvm_agreement.py --details --coverlay-only semver  # + lines only coverlay counts
    python3 bench/llvm_agreement.py --reuse --details semver  # reuse the last run's reports
    python3 bench/llvm_agreement.py --coverlay /other/coverlay  # another coverlay build

Needs llvm-profdata and llvm-cov of the LLVM version of rustc 1.95 (LLVM 22): Debian's `llvm-22`
package (installed here with apt-get when missing). Reports of the last run are kept in
bench/work/llvm-agreement/<crate>/ (coverlay.json, llvm.json); `--reuse` reads them instead of
running both tools again.

LLVM side. The tests are built and run with `RUSTFLAGS="-C instrument-coverage"` and
`LLVM_PROFILE_FILE=<crate>/target/llvm-cov-target/profraw/%p-%m.profraw` into
<crate>/target/llvm-cov-target (its own target dir, so the plain and coverlay builds stay
valid), `cargo test --tests` (no doctests: coverlay runs with `--no-doctests` here). The raw profiles are merged
with `llvm-profdata merge -sparse` and exported with `llvm-cov export -format=text` with every
test executable as an `-object` (from `cargo test --tests --no-run --message-format=json`:
artifacts with `profile.test` and an executable).

Lines, from the export's per-file segments `[line, col, count, has_count, is_region_entry,
is_gap_region]`, only for files under the crate's `src/`:
- an LLVM code line is a line on which a code region starts: a segment with is_region_entry and
  has_count that is not a gap region (llvm-cov's own `isStartOfRegion`). Lines that a region only
  passes through are not code lines;
- its count is llvm-cov's line count (`LineCoverageStats`): the count of the segment that covers
  the start of the line (the last segment before it), raised to the largest count of the regions
  that start on the line. A line is covered when that count is > 0;
- skip rule (lines that are never statements, decided on the source text): the stripped line is
  only closing punctuation (`}`, `};`, `})`, `}),`, `)`, `];` ... : only the characters `})];,`),
  starts with `where`, or holds a function signature without its body's `{`: it contains
  `fn NAME` (after optional `pub`, `pub(crate)`, `const`, `async`, `unsafe`, `extern "C"`) and
  no `{`. A one-line `fn f() {` is kept (coverlay counts a function's entry on it). Skipped
  lines are left out on both sides; the table gives how many LLVM code lines the rule skipped and
  how many of those coverlay reports.

coverlay side: `coverlay run <crate> --json <file> -q --no-doctests` (builds into <crate>/target/coverlay, test
code included by default): `files[].path`, `files[].lines[].line` and `.hits`.

Per crate: reported = the share of LLVM code lines (after the skip rule) that coverlay reports
as coverable; agreement = of the lines both report, the share where both say covered (count > 0)
or both say not covered; only LLVM / only coverlay = lines that one tool counts and the other does
not (coverlay-only lines include statement lines inside a region that LLVM does not start anew,
e.g. the second of two statements without a branch between them: LLVM's regions are basic
blocks of the source, not statements, so that column is informative only). Acceptance target per
crate: reported >= 95 % and agreement >= 99.5 %.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from overhead import COVERLAY, REGISTRY_CRATES, WORK, fetch, sh, source_text  # noqa: E402

CRATES = dict(REGISTRY_CRATES, **{"unicode-width": "=0.2.3", "heck": "=0.5.0",
                                   "strsim": "=0.11.1", "either": "=1.15.0",
                                   "memchr": "=2.8.0"})
LLVM_BIN = "/usr/lib/llvm-22/bin"
REPORTS = os.path.join(WORK, "llvm-agreement")
TARGET_REPORTED, TARGET_AGREEMENT = 95.0, 99.5


def llvm_tool(name, llvm_bin=None):
    candidates = [os.path.join(llvm_bin, name)] if llvm_bin else [
        os.path.join(LLVM_BIN, name), f"/usr/bin/{name}-22"]
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    return None


def ensure_llvm(llvm_bin=None):
    """(llvm-profdata, llvm-cov) of LLVM 22, installing Debian's llvm-22 when they are missing;
    or those in `llvm_bin` (another LLVM that reads rustc's profiles: Debian 12's llvm-19 does)."""
    if llvm_bin:
        tools = llvm_tool("llvm-profdata", llvm_bin), llvm_tool("llvm-cov", llvm_bin)
        if not all(tools):
            sys.exit(f"no llvm-profdata and llvm-cov in {llvm_bin}")
        return tools
    if not (llvm_tool("llvm-profdata") and llvm_tool("llvm-cov")):
        print("llvm-profdata-22/llvm-cov-22 missing: apt-get install -y llvm-22", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        result = subprocess.run(["apt-get", "install", "-y", "llvm-22"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0 or not (llvm_tool("llvm-profdata") and llvm_tool("llvm-cov")):
            sys.exit("cannot install Debian's llvm-22 package (llvm-profdata-22, llvm-cov-22), "
                     "which this benchmark needs: stopping.\n" + result.stdout[-2000:])
    return llvm_tool("llvm-profdata"), llvm_tool("llvm-cov")


def rel(path, root):
    path = os.path.realpath(path)
    return os.path.relpath(path, root) if path.startswith(root + os.sep) else path


# ---------------------------------------------------------------- LLVM


def test_executables(path, env, target):
    """The test executables of `cargo test --tests` (same RUSTFLAGS, so nothing is rebuilt)."""
    cmd = ["cargo", "test", "--tests", "--no-run", "--message-format=json", "--target-dir", target]
    result = subprocess.run(cmd, cwd=path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{result.stderr[-3000:]}")
    exes = []
    for line in result.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if (msg.get("reason") == "compiler-artifact" and msg.get("profile", {}).get("test")
                and msg.get("executable")):
            exes.append(msg["executable"])
    return sorted(set(exes))


def run_llvm(path, out, tools, target_name="llvm-cov-target", rustflags="-C instrument-coverage",
             toolchain=None):
    """Builds and runs the tests with `rustflags` (-C instrument-coverage, and more) into
    <path>/target/<target_name>, with rustup's `toolchain` if given; writes the llvm-cov JSON to out."""
    profdata, cov = tools
    target = os.path.join(path, "target", target_name)
    raw = os.path.join(target, "profraw")
    shutil.rmtree(raw, ignore_errors=True)
    os.makedirs(raw)
    env = dict(os.environ, RUSTFLAGS=rustflags,
               LLVM_PROFILE_FILE=os.path.join(raw, "%p-%m.profraw"))
    if toolchain:
        env["RUSTUP_TOOLCHAIN"] = toolchain
    env.pop("CARGO_ENCODED_RUSTFLAGS", None)
    cmd = ["cargo", "test", "--tests", "--no-fail-fast", "--target-dir", target]
    result = subprocess.run(cmd, cwd=path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if result.returncode not in (0, 101):
        sys.exit(f"failed: {' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    if result.returncode == 101:
        print(f"  warning: some tests failed under instrument-coverage in {path}", file=sys.stderr)
    exes = test_executables(path, env, target)
    merged = os.path.join(target, "merged.profdata")
    profiles = glob.glob(os.path.join(raw, "*.profraw"))
    if not profiles:
        sys.exit(f"no .profraw written for {path}")
    sh([profdata, "merge", "-sparse", *profiles, "-o", merged])
    objects = [a for exe in exes for a in ("-object", exe)]
    export = sh([cov, "export", "-format=text", "-instr-profile", merged, *objects])
    with open(out, "w") as f:
        f.write(export.stdout)


def llvm_lines(report, root):
    """({(file, line): count} of the LLVM code lines (region starts) of files under src/,
    {(file, line): count} of every line llvm-cov maps, region starts or not: its lcov lines)."""
    with open(report) as f:
        data = json.load(f)
    code, mapped = {}, {}
    for export in data["data"]:
        for file in export["files"]:
            name = rel(file["filename"], root)
            if not name.startswith("src" + os.sep) or not file["segments"]:
                continue
            segments = file["segments"]
            by_line = {}
            for seg in segments:
                by_line.setdefault(seg[0], []).append(seg)
            wrapped = None  # the last segment before the current line
            index = 0
            for line in range(segments[0][0], segments[-1][0] + 1):
                while index < len(segments) and segments[index][0] < line:
                    wrapped = segments[index]
                    index += 1
                on_line = by_line.get(line, [])
                starts = [s for s in on_line if s[4] and s[3] and not s[5]]
                if on_line and not on_line[0][3] and on_line[0][4]:
                    continue  # starts a skipped region (llvm-cov: not mapped)
                if not starts and not (wrapped and wrapped[3]):
                    continue
                count = wrapped[2] if wrapped and wrapped[3] else 0
                count = max([count] + [s[2] for s in starts])
                key = (name, line)
                mapped[key] = max(mapped.get(key, 0), count)
                if starts:
                    code[key] = mapped[key]
    return code, mapped


FN_SIG = re.compile(r'^(pub(\([^)]*\))?\s+)?((const|async|unsafe|default)\s+)*'
                    r'(extern\s+("[^"]*"\s+)?)?fn\s+\w')


def skipped(text):
    """The skip rule: closing punctuation only, a `where` clause, a signature without `{`."""
    s = text.strip()
    if s and all(c in "})];," for c in s):
        return True
    if s == "where" or s.startswith("where "):
        return True
    return bool(FN_SIG.match(s)) and "{" not in s


# ---------------------------------------------------------------- coverlay


def run_coverlay(path, out, binary):
    result = sh([binary, "run", path, "--json", out, "-q", "--no-doctests"], check=False)
    if result.returncode not in (0, 101) or not os.path.exists(out):
        sys.exit(f"coverlay failed on {path}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def coverlay_lines(report, root):
    with open(report) as f:
        data = json.load(f)
    lines = {}
    for file in data["files"]:
        name = rel(file["path"], root)
        if not name.startswith("src" + os.sep):
            continue
        for line in file["lines"]:
            lines[(name, line["line"])] = line["hits"]
    return lines


# ---------------------------------------------------------------- comparison


source = source_text


def compare(path, llvm_all, mapped, cov_all):
    """The skip rule takes lines out of the comparison on both sides."""
    llvm = {k: v for k, v in llvm_all.items() if not skipped(source(path, *k))}
    cov = {k: v for k, v in cov_all.items() if not skipped(source(path, *k))}
    both = sorted(set(llvm) & set(cov))
    return {
        "llvm": llvm,
        "skipped": len(llvm_all) - len(llvm),
        "skipped_cov": len((set(llvm_all) - set(llvm)) & set(cov_all)),
        "both": both,
        "disagree": [k for k in both if (llvm[k] > 0) != (cov[k] > 0)],
        "llvm_only": sorted(set(llvm) - set(cov)),
        "cov_only": sorted(set(cov) - set(llvm)),
        "cov_only_mapped": sorted(k for k in set(cov) - set(llvm) if k in mapped),
    }


def print_lines(title, keys, path, llvm, cov):
    print(f"\n#### {title} ({len(keys)})")
    current = None
    for name, number in keys:
        if name != current:
            print(f"\n`{name}`\n")
            current = name
        print(f"- {name}:{number} llvm={llvm.get((name, number), '-')} "
              f"coverlay={cov.get((name, number), '-')} `{source(path, name, number).strip()}`")


def test_opt_level(path):
    """The crate's `[profile.test] opt-level`, when it sets one (memchr: 3)."""
    with open(os.path.join(path, "Cargo.toml")) as f:
        text = f.read()
    match = re.search(r'^\[profile\.test\][^\[]*?^opt-level\s*=\s*"?(\w+)"?', text, re.M | re.S)
    return match.group(1) if match else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--details", action="store_true",
                        help="list every disagreeing line and every line only LLVM counts")
    parser.add_argument("--coverlay-only", action="store_true",
                        help="with --details, also list the lines only coverlay counts")
    parser.add_argument("--reuse", action="store_true",
                        help="use the reports of the last run in bench/work/llvm-agreement/")
    parser.add_argument("--coverlay", default=COVERLAY, metavar="BIN",
                        help="the coverlay binary (default: target/release/coverlay)")
    parser.add_argument("--llvm-bin", metavar="DIR",
                        help="take llvm-profdata and llvm-cov from DIR instead of LLVM 22's "
                             "(e.g. /usr/lib/llvm-19/bin where llvm-22 cannot be installed)")
    parser.add_argument("crates", nargs="*")
    args = parser.parse_args()
    for name in args.crates:
        if name not in CRATES:
            sys.exit(f"unknown crate {name}: one of {', '.join(CRATES)}")
    tools = None if args.reuse else ensure_llvm(args.llvm_bin)
    if not os.access(args.coverlay, os.X_OK):
        sys.exit(f"{args.coverlay} missing: build coverlay with `cargo build --release` first")
    os.makedirs(REPORTS, exist_ok=True)

    rows, details = [], []
    for name in args.crates or list(CRATES):
        path = fetch(name, CRATES[name])
        root = os.path.realpath(path)
        out = os.path.join(REPORTS, name)
        os.makedirs(out, exist_ok=True)
        llvm_json, cov_json = os.path.join(out, "llvm.json"), os.path.join(out, "coverlay.json")
        if not args.reuse or not os.path.exists(llvm_json):
            start = time.perf_counter()
            print(f"{name}: LLVM (instrument-coverage build and tests)…", file=sys.stderr)
            run_llvm(path, llvm_json, tools or ensure_llvm(args.llvm_bin))
            print(f"{name}: LLVM {time.perf_counter() - start:.0f} s", file=sys.stderr)
        if not args.reuse or not os.path.exists(cov_json):
            start = time.perf_counter()
            print(f"{name}: coverlay…", file=sys.stderr)
            run_coverlay(path, cov_json, args.coverlay)
            print(f"{name}: coverlay {time.perf_counter() - start:.0f} s", file=sys.stderr)
        (llvm, mapped), cov = llvm_lines(llvm_json, root), coverlay_lines(cov_json, root)
        result = compare(path, llvm, mapped, cov)
        inner = result["cov_only_mapped"]
        inner_agree = sum(1 for k in inner if (mapped[k] > 0) == (cov[k] > 0))
        n_llvm, n_both = len(result["llvm"]), len(result["both"])
        reported = 100.0 * n_both / n_llvm if n_llvm else 0.0
        agreement = 100.0 * (n_both - len(result["disagree"])) / n_both if n_both else 0.0
        cov_hit = sum(1 for k in result["disagree"] if cov[k] > 0)
        opt = test_opt_level(path)
        label = f"{name} (test profile opt-level {opt})" if opt else name
        rows.append((label, n_llvm, reported, n_both, agreement, len(result["disagree"]), cov_hit,
                     len(result["llvm_only"]), len(result["cov_only"]), result["skipped"],
                     result["skipped_cov"], len(inner), inner_agree))
        details.append((name, path, mapped, cov, result))

    print("| crate | LLVM code lines (skipped: LLVM / also coverlay) | coverlay reports | both "
          "| agreement "
          "| disagreements (coverlay hit / LLVM hit) | only LLVM "
          "| only coverlay (inside an LLVM region: lines, verdict agrees) | target |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for (name, n_llvm, reported, n_both, agreement, dis, cov_hit, llvm_only, cov_only,
         skip, skip_cov, inner, inner_agree) in rows:
        ok = reported >= TARGET_REPORTED and agreement >= TARGET_AGREEMENT
        verdict = "met" if ok else "missed (" + ", ".join(
            w for w, bad in (("reported", reported < TARGET_REPORTED),
                             ("agreement", agreement < TARGET_AGREEMENT)) if bad) + ")"
        print(f"| {name} | {n_llvm} ({skip} / {skip_cov}) | {reported:.2f} % | {n_both} "
              f"| {agreement:.2f} % "
              f"| {dis} ({cov_hit} / {dis - cov_hit}) | {llvm_only} "
              f"| {cov_only} ({inner}, {inner_agree}) | {verdict} |")
    print(f"\nAcceptance target per crate: coverlay reports >= {TARGET_REPORTED:g} % of LLVM's "
          f"code lines and agreement >= {TARGET_AGREEMENT:g} %.")
    met = [r[0] for r in rows if r[2] >= TARGET_REPORTED and r[4] >= TARGET_AGREEMENT]
    print(f"Met by {len(met)} of {len(rows)} crates" + (f" ({', '.join(met)})." if met else "."))

    if args.details:
        for name, path, llvm, cov, result in details:
            print(f"\n### {name}")
            print_lines("disagreements", result["disagree"], path, llvm, cov)
            print_lines("lines only LLVM counts", result["llvm_only"], path, llvm, cov)
            if args.coverlay_only:
                print_lines("lines only coverlay counts", result["cov_only"], path, llvm, cov)


if __name__ == "__main__":
    main()
