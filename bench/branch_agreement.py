#!/usr/bin/env python3
"""Branch coverage: coverlay's branch verdicts (stable rustc, from the machine code) against LLVM's
branch coverage (`-C instrument-coverage -Z coverage-options=branch`, the installed nightly), for
the conditions of `if` and `else if`, and what branch counting costs. Prints markdown tables.

    python3 bench/branch_agreement.py                    # semver, smallvec, regex-syntax
    python3 bench/branch_agreement.py --details semver   # + every disagreement, with source
    python3 bench/branch_agreement.py --reuse --details  # reuse the last run's reports
    python3 bench/branch_agreement.py --cost --runs 5    # + `coverlay run` with and without
                                                         #   branches, interleaved, medians

LLVM side: like llvm_agreement.py, with the nightly toolchain (`cargo +nightly`, whose LLVM is 22
too, so Debian's llvm-22 llvm-profdata/llvm-cov read its profiles) into
<crate>/target/llvm-branch-target. `llvm-cov export` lists per file `branches`:
`[line, col, end_line, end_col, true_count, false_count, file_id, expanded_file_id, kind]`, one per
condition (each operand of `&&`/`||` is one), at the condition's own line.

coverlay side: `coverlay run <crate> --json` (stable): `files[].branches[]`, one per conditional
jump of a branch construct, shown on its statement's line, `taken`/`not_taken` the true and false
sides when `oriented`; `match` entries (`arms`, counted from lines) are no `if` and are skipped.

Matching, for files under `src/`: an LLVM branch belongs to an `if` condition when its line, from
the region's column on, is inside an `if`/`else if` condition: the source text before the region on
its line ends in `if `, `&&`, `||`, `(` or `!` with an `if` before it on that line, or the region
is on a line that continues the condition of an `if` on an earlier line (the earlier lines up to
it do not end in `{` or `;`). Guards (`=>` on the line) and `if let` scrutinees are left out.
An LLVM branch on a line where coverlay has no branch is looked for on the lines above it that
belong to the same condition (coverlay shows an operand on a later line on the statement's line).
Per line, the LLVM branches (by column) and coverlay's (by index) are compared when both have the
same number: a verdict is the pair (true side ran, false side ran); for a branch coverlay could
not orient, the pair is compared without order. Lines where the numbers differ are listed apart.
"""
import argparse
import json
import os
import re
import resource
import statistics
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llvm_agreement  # noqa: E402
from llvm_agreement import ensure_llvm, rel, run_coverlay  # noqa: E402
from overhead import COVERLAY, REGISTRY_CRATES, ROOT, WORK, fetch, once, sh, source_text  # noqa: E402

CRATES = {name: REGISTRY_CRATES[name] for name in ("semver", "smallvec", "regex-syntax")}
REPORTS = os.path.join(WORK, "branch-agreement")
IF_BEFORE = re.compile(r"(^|\W)if\s")


def run_llvm(path, out, tools):
    """Builds and runs the tests with nightly's branch coverage; writes the llvm-cov JSON."""
    llvm_agreement.run_llvm(path, out, tools, target_name="llvm-branch-target",
                            rustflags="-C instrument-coverage -Z coverage-options=branch",
                            toolchain="nightly")


def in_if_condition(path, name, line, col):
    """Whether the branch region at (line, col) is an `if`/`else if` condition or an operand in one."""
    text = source_text(path, name, line)
    if "=>" in text or re.search(r"\bif\s+let\b|\bwhile\b", text):
        return False
    before = text[: col - 1]
    if IF_BEFORE.search(before):
        return True
    # A later line of a condition that started above.
    for above in range(line - 1, max(0, line - 6), -1):
        prev = source_text(path, name, above).rstrip()
        if prev.endswith("{") or prev.endswith(";") or prev.endswith("}"):
            return False
        if IF_BEFORE.search(prev) and "=>" not in prev:
            return True
    return False


def llvm_branches(report, root, path):
    """{(file, line): [(line, col, true, false)]} of the `if` condition branches of files under
    src/."""
    with open(report) as f:
        data = json.load(f)
    # Each test executable that links a function lists its branches: the same region once per
    # object, summed.
    regions = {}
    for export in data["data"]:
        for file in export["files"]:
            name = rel(file["filename"], root)
            if not name.startswith("src" + os.sep):
                continue
            for b in file.get("branches", []):
                line, col, true, false = b[0], b[1], b[4], b[5]
                if in_if_condition(path, name, line, col):
                    known = regions.get((name, line, col), (0, 0))
                    regions[(name, line, col)] = (known[0] + true, known[1] + false)
    out = {}
    for (name, line, col), (true, false) in sorted(regions.items()):
        out.setdefault((name, line), []).append((line, col, true, false))
    return out


def coverlay_branches(report, root):
    """{(file, line): [(oriented, true/taken, false/not taken, construct)]} by index; the
    construct says `(capped)` when int3 counted some of the branch's addresses."""
    with open(report) as f:
        data = json.load(f)
    out = {}
    for file in data["files"]:
        name = rel(file["path"], root)
        if not name.startswith("src" + os.sep):
            continue
        for b in file.get("branches", []):
            if "arms" in b:
                continue  # a `match`, counted from its arms' lines: no `if` condition
            construct = b["construct"] + (" (capped)" if b.get("capped") else "")
            out.setdefault((name, b["line"]), []).append(
                (b["oriented"], b["taken"], b["not_taken"], construct))
    return out


def statement_line(path, key, cov):
    """The line coverlay shows the LLVM branch at `key` on: its own, or an earlier line of the
    same condition that has coverlay branches."""
    name, line = key
    if key in cov:
        return key
    for above in range(line - 1, max(0, line - 6), -1):
        prev = source_text(path, name, above).rstrip()
        if prev.endswith("{") or prev.endswith(";") or prev.endswith("}"):
            return key
        if (name, above) in cov:
            return (name, above)
    return key


def verdict_agrees(llvm, cov):
    _, _, true, false = llvm
    oriented, taken, not_taken, _ = cov
    want = (true > 0, false > 0)
    got = (taken > 0, not_taken > 0)
    return want == got if oriented else sorted(want) == sorted(got)


def compare(path, llvm, cov):
    grouped = {}
    for key, branches in llvm.items():
        grouped.setdefault(statement_line(path, key, cov), []).extend(branches)
    result = {"lines": 0, "branches": 0, "agree": 0, "disagree": [], "count": [], "missing": []}
    for key in sorted(grouped):
        branches = sorted(grouped[key])
        mine = [b for b in cov.get(key, []) if b[3].split()[0] in ("if", "short_circuit")]
        if not mine:
            result["missing"].append((key, branches, mine))
            continue
        if len(mine) != len(branches):
            result["count"].append((key, branches, mine))
            continue
        result["lines"] += 1
        for l, c in zip(branches, mine):
            result["branches"] += 1
            if verdict_agrees(l, c):
                result["agree"] += 1
            else:
                result["disagree"].append((key, branches, mine))
                break
    return result


def show(title, items, path):
    print(f"\n#### {title} ({len(items)})\n")
    for (name, line), llvm, cov in items:
        l_text = ", ".join(f"{n}:{c}: true {t} false {f}" for n, c, t, f in llvm)
        c_text = ", ".join(f"{k}{'' if o else ' (not oriented)'}: {t}/{n}" for o, t, n, k in cov)
        print(f"- {name}:{line} `{source_text(path, name, line).strip()}` — LLVM [{l_text}] "
              f"— coverlay [{c_text or 'none'}]")


def cpu_once(cmd, cwd):
    """(wall, CPU) seconds of one command: CPU is user + system time of it and everything it
    waited for (the traced tests), steadier than wall time on a loaded machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = once(cmd, cwd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def cost(crates, runs, binary):
    """Median wall and CPU time of `coverlay run --no-doctests` with and without branches
    (interleaved, warm, both writing the JSON report)."""
    print("\n| crate | `coverlay run --no-branches` wall / CPU | `coverlay run` wall / CPU "
          "| branches cost, wall / CPU | branches |")
    print("|---|---:|---:|---:|---:|")
    for name in crates:
        path = fetch(name, CRATES[name]) if name in CRATES else os.path.join(
            ROOT, "tests", "fixtures", name)
        out = os.path.join(REPORTS, f"{name}-cost.json")
        # Doctests each run in a process of their own and are slow to build: left out on both
        # sides, as the time they add is the same with or without branches.
        base = [binary, "run", path, "-q", "--no-doctests"]
        once(base + ["--json", out], path)  # builds, fills the caches
        times = {"without": [], "with": []}
        for _ in range(runs):
            times["without"].append(
                cpu_once(base + ["--no-branches", "--json", out + ".lines"], path))
            times["with"].append(cpu_once(base + ["--json", out], path))
        (w0, c0), (w1, c1) = (
            tuple(statistics.median(t[k] for t in times[which]) for k in (0, 1))
            for which in ("without", "with"))
        with open(out) as f:
            found = sum(sum("arms" not in b for b in f_.get("branches", []))
                        for f_ in json.load(f)["files"])
        print(f"| {name} | {w0:.2f} s / {c0:.2f} s | {w1:.2f} s / {c1:.2f} s "
              f"| {100 * (w1 / w0 - 1):+.1f} % / {100 * (c1 / c0 - 1):+.1f} % | {found} |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--details", action="store_true")
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--cost", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--coverlay", default=COVERLAY, metavar="BIN")
    parser.add_argument("--llvm-bin", metavar="DIR",
                        help="llvm-profdata and llvm-cov from DIR (see llvm_agreement.py)")
    parser.add_argument("crates", nargs="*")
    args = parser.parse_args()
    crates = args.crates or list(CRATES)
    if not os.access(args.coverlay, os.X_OK):
        sys.exit(f"{args.coverlay} missing: build coverlay with `cargo build --release` first")
    os.makedirs(REPORTS, exist_ok=True)
    rows, details = [], []
    for name in crates:
        path = fetch(name, CRATES[name])
        root = os.path.realpath(path)
        out = os.path.join(REPORTS, name)
        os.makedirs(out, exist_ok=True)
        llvm_json, cov_json = os.path.join(out, "llvm.json"), os.path.join(out, "coverlay.json")
        if not args.reuse or not os.path.exists(llvm_json):
            start = time.perf_counter()
            run_llvm(path, llvm_json, ensure_llvm(args.llvm_bin))
            print(f"{name}: LLVM {time.perf_counter() - start:.0f} s", file=sys.stderr)
        if not args.reuse or not os.path.exists(cov_json):
            run_coverlay(path, cov_json, args.coverlay)
        llvm, cov = llvm_branches(llvm_json, root, path), coverlay_branches(cov_json, root)
        result = compare(path, llvm, cov)
        n_llvm = sum(len(v) for v in llvm.values())
        rows.append((name, n_llvm, result))
        details.append((name, path, result))

    print("| crate | LLVM `if` condition branches | compared (lines) | verdicts agree "
          "| disagree (lines) | other number of branches (lines) | none in coverlay (lines) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, n_llvm, r in rows:
        share = 100.0 * r["agree"] / r["branches"] if r["branches"] else 0.0
        print(f"| {name} | {n_llvm} | {r['branches']} ({r['lines']}) | {r['agree']} ({share:.1f} %) "
              f"| {len(r['disagree'])} | {len(r['count'])} | {len(r['missing'])} |")
    if args.details:
        for name, path, r in details:
            print(f"\n### {name}")
            show("verdicts that differ", r["disagree"], path)
            show("another number of branches", r["count"], path)
            show("no coverlay branch", r["missing"], path)
    if args.cost:
        cost(["ledger"] + crates, args.runs, args.coverlay)


if __name__ == "__main__":
    main()
