#!/usr/bin/env python3
"""Drive a real Helix (Debian unstable's hx 25.07.1, run via its own glibc; tests/helix/setup.sh)
with coverlay as Rust language server on a copy of the `ledger` fixture, through tmux, and check
what the screen shows (run by tests/helix.rs):

 (a) the uncovered `close_account` shows a diagnostic (gutter marker + end-of-line text),
 (b) covered lines get a hit-count inlay hint `×N` (checked against the `//~ hit` / `//~ miss`
     markers of every line of src/lib.rs, paging through the file with C-d),
 (c) after typing a test that calls close_account and `:write`, coverlay reruns and the
     close_account diagnostic disappears (and its lines get `×1`).

Environment: COVERLAY_BIN (the server), COVERLAY_HELIX_WORK (a scratch directory), optionally
COVERLAY_HELIX_CACHE (where setup.sh put hx). Exit status 0 = all checks passed.
"""
import os, re, shutil, subprocess, sys, time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "ledger")
COVERLAY = os.environ["COVERLAY_BIN"]
CACHE = os.environ.get("COVERLAY_HELIX_CACHE", os.path.expanduser("~/.cache/coverlay-helix"))
HX = os.path.join(CACHE, "hx")                  # wrapper: extracted ld.so + --library-path
BASE = os.environ["COVERLAY_HELIX_WORK"]
WS = f"{BASE}/ws/ledger"
CFG = f"{BASE}/config"                          # XDG_CONFIG_HOME -> $CFG/helix/{config,languages}.toml
LOG = f"{BASE}/helix.log"
CAPS = f"{BASE}/captures"
SOCK = f"coverlay-helix-{os.getpid()}"          # a private tmux server
W, H = 200, 50
T0 = time.monotonic()
failures = []


def t():
    return f"{time.monotonic() - T0:6.1f}s"


def say(*a):
    print(t(), *a, flush=True)


def check(cond, what):
    say(("PASS " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)
    return cond


def tmux(*args, check=True):
    return subprocess.run(["tmux", "-L", SOCK, *args], check=check, capture_output=True, text=True).stdout


def keys(*k):
    tmux("send-keys", "-t", "hx", *k)
    if k[-1] == "Escape":
        # let hx leave insert mode / close a popup before the next keys (cheap insurance)
        time.sleep(0.3)


def text(s):
    tmux("send-keys", "-t", "hx", "-l", s)


def capture():
    return tmux("capture-pane", "-p", "-t", "hx")


def save(name, cap):
    with open(f"{CAPS}/{name}.txt", "w") as f:
        f.write(cap)


def wait_for(pred, timeout, step=0.2, what=""):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = pred()
        if r:
            return r
        time.sleep(step)
    return None


def rendered_lines(cap):
    """{line number: rendered text} from a capture. Gutter (default gutters) is
    diagnostic(1) spacer(1) line-number(>=3) spacer(1) diff(1), then the text."""
    out = {}
    for row in cap.splitlines():
        m = re.match(r"^(.) *(\d+) .(.*)$", row)
        if m and not row.startswith(" NOR") and "│" not in row:
            out[int(m.group(2))] = (m.group(1), m.group(3).rstrip())
    return out


def log_runs_done():
    """End messages of coverlay's runs ($/progress kind=end), from Helix's own log (-v)."""
    try:
        with open(LOG, errors="replace") as f:
            return re.findall(r'coverlay <- \{"jsonrpc":"2.0","method":"\$/progress","params":\{"token":"coverlay/run/\d+","value":\{"kind":"end","message":"((?:[^"\\]|\\.)*)"', f.read())
    except FileNotFoundError:
        return []


def setup():
    if os.path.exists(f"{BASE}/ws"):
        shutil.rmtree(f"{BASE}/ws")
    os.makedirs(f"{BASE}/ws")
    # copy the fixture without its target/
    shutil.copytree(FIXTURE, WS, ignore=lambda d, names: ["target"] if d == FIXTURE else [])
    os.makedirs(f"{CFG}/helix", exist_ok=True)
    with open(f"{CFG}/helix/config.toml", "w") as f:
        # auto-pairs off so that typed text lands verbatim (with it on, the typed test ended with an extra `}`)
        f.write('[editor]\nidle-timeout = 50\nauto-pairs = false\n\n[editor.lsp]\ndisplay-inlay-hints = true\n')
    with open(f"{CFG}/helix/languages.toml", "w") as f:
        f.write(
            "# rust-analyzer on this machine is only a rustup proxy without the component: coverlay alone.\n"
            "[language-server.coverlay]\n"
            f'command = "{COVERLAY}"\n'
            'args = ["lsp"]\n'
            'config = { severity = "hint" }\n\n'
            "[[language]]\n"
            'name = "rust"\n'
            'language-servers = ["coverlay"]\n'
        )
    os.makedirs(CAPS, exist_ok=True)
    if os.path.exists(LOG):
        os.remove(LOG)


def read_lib():
    """src/lib.rs of the workspace copy now ("" while Helix swaps it for the written one)."""
    try:
        with open(f"{WS}/src/lib.rs") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def descendants(pid):
    out = []
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for k in kids:
        out.append(int(k))
        out += descendants(int(k))
    return out


def main():
    setup()
    src = open(f"{WS}/src/lib.rs").read().splitlines()
    expect = {}  # line number (1-based) -> "hit"/"miss"
    for i, l in enumerate(src, 1):
        m = re.search(r"//~ (hit|miss)\s*$", l)
        if m:
            expect[i] = m.group(1)
    close_line = next(i for i, l in enumerate(src, 1) if "pub fn close_account" in l)

    tmux("kill-server", check=False)
    say("starting hx in tmux")
    tmux("new-session", "-d", "-x", str(W), "-y", str(H), "-s", "hx", "-c", WS,
         f"env XDG_CONFIG_HOME={CFG} {HX} --log {LOG} -v src/lib.rs")
    pane_pid = int(tmux("display-message", "-p", "-t", "hx", "#{pane_pid}").strip())
    try:
        # ---- (a) first run: diagnostic on close_account ---------------------------------------
        needle = "not covered by any test (fn close_account)"
        cap = wait_for(lambda: (lambda c: c if needle in c else None)(capture()), 240)
        check(cap is not None, f"(a) first run: diagnostic text '{needle}' on screen")
        say("coverlay log:", log_runs_done())
        if cap is None:
            save("a-timeout", capture())
            return
        save("1-first-run-no-hints", cap)
        r = rendered_lines(cap)
        g, line = r.get(close_line, ("?", ""))
        check(g == "●" and line.endswith(needle), f"(a) line {close_line} has gutter marker ● and the text: {g!r} {line[-60:]!r}")

        # ---- (b) hit-count inlay hints ---------------------------------------------------------
        # Helix asked for hints right after didOpen (empty: no run yet) and has no
        # workspace/inlayHint/refresh; a change of the visible range makes it ask again.
        seen = {}
        keys("g", "e")  # scroll away: new visible range -> new textDocument/inlayHint
        time.sleep(0.5)
        keys("g", "g")
        for n in range(2, 10):  # page through with C-d (half page) until the last line was on screen
            cap = wait_for(lambda: (lambda c: c if "×" in c else None)(capture()), 10) or capture()
            time.sleep(0.3)
            cap = capture()
            save(f"{n}-hints-page", cap)
            if n == 2:  # top of the file: hit-count hints and the close_account diagnostic together
                save("hints-and-diagnostics", cap)
            seen.update(rendered_lines(cap))
            if len(src) in seen:
                break
            keys("C-d")
            time.sleep(0.3)
        bad = []
        hits = {}
        for ln, kind in expect.items():
            if ln not in seen:
                bad.append(f"line {ln} never on screen")
                continue
            s = src[ln - 1].rstrip()
            rend = seen[ln][1]
            if not rend.startswith(s):
                bad.append(f"line {ln} rendered {rend!r}")
                continue
            extra = rend[len(s):]
            m = re.match(r"^ ×(\d+)", extra)
            if kind == "hit" and not m:
                bad.append(f"hit line {ln} without ×N: {extra!r}")
            if kind == "miss" and "×" in extra:
                bad.append(f"miss line {ln} with a hint: {extra!r}")
            if m:
                hits[ln] = int(m.group(1))
        check(not bad, f"(b) all {len(expect)} marked lines: ×N on every //~ hit line, none on //~ miss ({len(seen)} lines seen)")
        for b in bad:
            say("   ", b)
        say("   hit counts:", " ".join(f"{k}:×{v}" for k, v in sorted(hits.items())))
        keys("Space", "d")
        time.sleep(0.7)
        cap = capture()
        save("diagnostics-picker", cap)
        check("coverlay uncovered not covered by any test (fn close_account)" in cap, "(b') <space>d picker lists close_account")
        keys("Escape")

        # ---- (c) type a test calling close_account, :write, wait for the rerun ----------------
        runs_before = len(log_runs_done())
        test_line = "#[test] fn closing_returns_what_is_left() { let mut l = Ledger::new(); l.deposit(30); assert_eq!(l.close_account(), 30); }"
        keys("g", "e")      # last line: the `}` closing `mod tests`
        keys("O")           # open a line above it, insert mode
        text(test_line)     # one line, typed verbatim (auto-pairs off in config.toml)
        keys("Escape")
        keys("Escape")
        text(":write")
        keys("Enter")
        t_write = time.monotonic()
        ok = wait_for(lambda: test_line in read_lib().splitlines(), 10)
        check(bool(ok), "(c) the typed test is in src/lib.rs on disk, exactly as typed")
        if not ok:
            say("   file tail:", read_lib()[-300:])
        done = wait_for(lambda: len(log_runs_done()) > runs_before, 240)
        check(bool(done), "(c) coverlay reran after :write")
        say(f"   rerun took {time.monotonic() - t_write:.1f}s after :write:", log_runs_done()[-1] if done else None)
        time.sleep(0.3)
        keys("g", "g")
        time.sleep(0.5)
        keys("g", "e")
        time.sleep(0.5)
        keys("g", "g")
        cap = wait_for(lambda: (lambda c: c if close_line in rendered_lines(c) and "×" in c else None)(capture()), 10)
        cap = cap or capture()
        save("after-1-top", cap)
        r = rendered_lines(cap)
        g, line = r.get(close_line, ("?", ""))
        check(close_line in r and needle not in cap and g != "●", f"(c) close_account diagnostic gone: {g!r} {line!r}")
        check(re.search(r"//~ miss ×\d+$", line) is not None, f"(c) close_account line now has a hit hint: {line[-30:]!r}")
        keys("Space", "d")
        time.sleep(0.7)
        cap = capture()
        save("after-2-diagnostics-picker", cap)
        check("close_account" not in cap.split("severity source")[1][:2000] if "severity source" in cap else False,
              "(c) <space>d picker no longer lists close_account")
        keys("Escape")
        keys("g", "e")
        time.sleep(0.5)
        cap = capture()
        save("after-3-bottom", cap)
        new_ln = [ln for ln, (_, l) in rendered_lines(cap).items() if l.startswith(test_line)]
        say("   new test line rendered:", [rendered_lines(cap)[n][1][len(test_line):] for n in new_ln])
    finally:
        procs = descendants(pane_pid)
        say("processes under the pane:", subprocess.run(["ps", "-o", "pid,comm", "-p", ",".join(map(str, [pane_pid] + procs))],
                                                       capture_output=True, text=True).stdout.split("\n")[1:-1])
        # quit hx (sends shutdown/exit to coverlay), then kill the private tmux server
        keys("Escape")
        text(":quit!")
        keys("Enter")
        wait_for(lambda: subprocess.run(["tmux", "-L", SOCK, "has-session"], capture_output=True).returncode != 0, 5)
        tmux("kill-server", check=False)
        left = wait_for(lambda: not any(os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z"
                                        for p in [pane_pid] + procs), 10)
        survivors = [p for p in [pane_pid] + procs
                     if os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z"]
        for p in survivors:  # only our own processes, by pid
            try:
                os.kill(p, 9)
            except ProcessLookupError:
                pass
        check(bool(left), f"no hx/coverlay process left (survivors killed: {survivors})")
    say("DONE:", "ALL PASSED" if not failures else f"{len(failures)} FAILED")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
