#!/usr/bin/env python3
"""Coverage agreement between coverlay and cargo-tarpaulin (ptrace engine) on the registry crates of
overhead.py. For the lines that both tools consider coverable, the fraction where the
covered/uncovered verdicts agree; lines that only one tool considers coverable are counted apart.
Prints a markdown table.

    python3 bench/agreement.py                    # semver, smallvec, regex-syntax
    python3 bench/agreement.py --details semver   # also list every disagreeing line, by file
    python3 bench/agreement.py --details --only   # with the lines only one tool counts, too
    python3 bench/agreement.py --save DIR         # keep the raw reports (DIR/<crate>/...)

In the details, "(no code)" marks a line that tarpaulin reports although it found no address for
it in the executables: tarpaulin's own source analysis counts the line, so it can never be hit.

Needs `cargo tarpaulin` (cargo install cargo-tarpaulin --locked) and a release build of coverlay
(built here). Both tools measure test code too (tarpaulin gets --include-tests, since coverlay
measures it by default) and neither runs doctests. tarpaulin builds into <crate>/target/tarpaulin,
coverlay into <crate>/target/coverlay, so neither invalidates the other.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from overhead import COVERLAY, REGISTRY_CRATES, ROOT, WORK, fetch, sh, source_text  # noqa: E402


def tarpaulin_installed():
    return subprocess.run(["cargo", "tarpaulin", "--version"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE).returncode == 0


def tarpaulin_target(path):
    """<crate>/target/tarpaulin for the fetched crates; bench/work/tarpaulin-target/NAME for the
    fixtures, so that nothing is written under tests/ beyond what `cargo test` writes there."""
    if os.path.realpath(path).startswith(os.path.realpath(WORK) + os.sep):
        return os.path.join(path, "target", "tarpaulin")
    return os.path.join(WORK, "tarpaulin-target", os.path.basename(os.path.normpath(path)))


def tarpaulin_cmd(path, outdir, extra=()):
    """The tarpaulin invocation of this benchmark: ptrace engine, the
    same test targets as `cargo test --tests` (lib/bin unit tests and tests/*.rs; tarpaulin runs
    doctests only when asked), test code included like coverlay's default (tarpaulin leaves it
    out by default), a generous timeout, and its own target dir so that its RUSTFLAGS never
    invalidate the other builds."""
    return ["cargo", "tarpaulin", "--engine", "ptrace", "--skip-clean", "--include-tests",
            "--no-fail-fast", "--timeout", "600", "--target-dir", tarpaulin_target(path),
            "--output-dir", outdir, *extra]


def rel(path, root):
    path = os.path.realpath(path)
    return os.path.relpath(path, root) if path.startswith(root + os.sep) else path


def run_coverlay(path, tmp):
    out = os.path.join(tmp, "coverlay.json")
    # tarpaulin runs no doctests: neither does coverlay here.
    result = sh([COVERLAY, "run", path, "--json", out, "--no-doctests"], check=False)
    if result.returncode not in (0, 101) or not os.path.exists(out):
        sys.exit(f"coverlay failed on {path}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    with open(out) as f:
        report = json.load(f)
    root = os.path.realpath(path)
    lines = {}
    for file in report["files"]:
        name = rel(file["path"], root)
        for line in file["lines"]:
            lines[(name, line["line"])] = line["hits"]
    return lines


def parse_tarpaulin_json(report, root):
    """Per line, tarpaulin's hits and whether it found machine code for the line (tarpaulin also
    reports lines that its source analysis counts but that have no address in the binary)."""
    lines, no_code = {}, set()
    for file in report["files"]:
        name = rel(os.path.join(*file["path"]), root)
        for trace in file["traces"]:
            key = (name, trace["line"])
            hits = sum(v for v in trace["stats"].values() if isinstance(v, int))
            lines[key] = lines.get(key, 0) + hits
            if not trace["address"]:
                no_code.add(key)
    return lines, no_code


def run_tarpaulin(path, tmp):
    result = sh(tarpaulin_cmd(path, tmp, ["--out", "Json", "--out", "Lcov"]), cwd=path,
                check=False)
    report = os.path.join(tmp, "tarpaulin-report.json")
    if result.returncode != 0:
        print(f"  warning: tarpaulin exited with {result.returncode} on {path}: "
              + " / ".join(result.stderr.strip().splitlines()[-2:]), file=sys.stderr)
    if not os.path.exists(report):
        sys.exit(f"tarpaulin failed on {path}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    with open(report) as f:
        return parse_tarpaulin_json(json.load(f), os.path.realpath(path))


def source_line(path, name, number):
    return source_text(path, name, number).strip()


def compare(cov, tar):
    common = sorted(set(cov) & set(tar))
    disagree = [k for k in common if (cov[k] > 0) != (tar[k] > 0)]
    return {
        "common": common,
        "disagree": disagree,
        "cov_only": sorted(set(cov) - set(tar)),
        "tar_only": sorted(set(tar) - set(cov)),
    }


def print_lines(title, keys, path, cov, tar, no_code):
    print(f"\n#### {title} ({len(keys)})\n")
    current = None
    for name, number in keys:
        if name != current:
            print(f"\n`{name}`\n")
            current = name
        c = cov.get((name, number), "-")
        t = tar.get((name, number), "-")
        if (name, number) in no_code:
            t = f"{t} (no code)"
        print(f"- {name}:{number} coverlay={c} tarpaulin={t} `{source_line(path, name, number)}`")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--details", action="store_true", help="list each disagreeing line")
    parser.add_argument("--only", action="store_true",
                        help="with --details, also list the lines only one tool counts")
    parser.add_argument("--save", metavar="DIR", help="keep both raw reports per crate in DIR")
    parser.add_argument("crates", nargs="*")
    args = parser.parse_args()
    if not tarpaulin_installed():
        sys.exit("cargo tarpaulin is not installed: cargo install cargo-tarpaulin --locked")
    os.makedirs(WORK, exist_ok=True)
    sh(["cargo", "build", "--release"], cwd=ROOT)

    rows, details = [], []
    for name in args.crates or list(REGISTRY_CRATES):
        path = fetch(name, REGISTRY_CRATES[name])
        with tempfile.TemporaryDirectory() as tmp:
            print(f"{name}: coverlay…", file=sys.stderr)
            cov = run_coverlay(path, tmp)
            print(f"{name}: tarpaulin…", file=sys.stderr)
            tar, no_code = run_tarpaulin(path, tmp)
            if args.save:
                dest = os.path.join(args.save, name)
                os.makedirs(dest, exist_ok=True)
                for f in ("coverlay.json", "lcov.info", "tarpaulin-report.json"):
                    sh(["cp", os.path.join(tmp, f), dest])
        result = compare(cov, tar)
        common = len(result["common"])
        agree = common - len(result["disagree"])
        pct = 100.0 * agree / common if common else 0.0
        cov_covered = sum(1 for k in result["disagree"] if cov[k] > 0)
        rows.append((name, common, pct, len(result["disagree"]), cov_covered,
                     len(result["cov_only"]), len(result["tar_only"]),
                     sum(1 for k in result["tar_only"] if k in no_code)))
        details.append((name, path, cov, tar, no_code, result))

    print("| crate | common lines | agreement | disagreements (coverlay hit / tarpaulin hit) "
          "| coverlay-only lines | tarpaulin-only lines (without machine code) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, common, pct, dis, cov_hit, cov_only, tar_only, tar_no_code in rows:
        print(f"| {name} | {common} | {pct:.2f} % | {dis} ({cov_hit} / {dis - cov_hit}) "
              f"| {cov_only} | {tar_only} ({tar_no_code}) |")

    if args.details:
        for name, path, cov, tar, no_code, result in details:
            print(f"\n### {name}")
            print_lines("disagreements", result["disagree"], path, cov, tar, no_code)
            if args.only:
                print_lines("coverlay-only lines", result["cov_only"], path, cov, tar, no_code)
                print_lines("tarpaulin-only lines", result["tar_only"], path, cov, tar, no_code)


if __name__ == "__main__":
    main()
