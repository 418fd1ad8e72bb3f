#!/usr/bin/env python3
"""The live loop: save → overlay complete in `coverlay lsp`, against the same edit followed by
plain `cargo test --tests`, on published crates, measured in one run on this machine.

    python3 bench/liveloop.py                    # regex-syntax and semver, 3 rounds
    python3 bench/liveloop.py --rounds 5 semver
    python3 bench/liveloop.py --rounds 0 --first-runs 7   # only the first full runs

For each crate, a real `coverlay lsp` is started on it (as an editor would: initialize, open the
edited file) and its first full run is awaited. Then, `--rounds` times, a scripted trace of saves:
a body edit in one function, a comment added to it, and both undone (a body edit), for each
function of the crate's trace. The first row compares the server's first full run (from
`initialize` to its first `run N done` message, saved results and caches warm) with
`coverlay run`, in `--first-runs` interleaved pairs (a fresh server each). After each save the
script waits for the server's selection message and, when tests rerun, for its "run N done"
message (sent after the results are merged and published), then runs `cargo test --tests -q` on
the same sources (interleaved: both see the same series of edits, each builds incrementally in
its own target directory). The table shows medians per kind of save: tests selected / total,
save → overlay complete split into build, prepare, tests, report, merge and publish as the server
logs them, the same for `cargo test --tests`, and the ratio. The crate's files are restored at
the end. Crates are fetched into bench/work/ by bench/overhead.py's `fetch`. Doctests are left
out on both sides (the server's `doctests` setting off, `coverlay run --no-doctests`), as
`cargo test --tests` leaves them out.
"""
import argparse
import json
import os
import queue
import re
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overhead  # noqa: E402  (fetch, paths)

ROOT = overhead.ROOT
COVERLAY = overhead.COVERLAY

# crate → [(function, file, its first line, a statement added after it)]
TRACES = {
    "regex-syntax": [
        ("Seq::min_literal_len", "src/hir/literal.rs",
         "    pub fn min_literal_len(&self) -> Option<usize> {\n", "        let _probe = 1;\n"),
        # Run by the suite's three slowest tests (0.3-0.5 s each, natively).
        ("Utf8Sequences::new", "src/utf8.rs",
         "    pub fn new(start: char, end: char) -> Self {\n", "        let _probe = 1;\n"),
    ],
    "semver": [
        ("matches_tilde", "src/eval.rs",
         "fn matches_tilde(cmp: &Comparator, ver: &Version) -> bool {\n", "    let _probe = 1;\n"),
    ],
}


class Client:
    """A minimal LSP client over the server's stdio; answers the server's requests with null."""

    def __init__(self, cwd):
        self.process = subprocess.Popen([COVERLAY, "lsp"], cwd=cwd, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.messages = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        out = self.process.stdout
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    return
                line = line.strip()
                if not line:
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            message = json.loads(out.read(length))
            if "method" in message and "id" in message:
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": None})
            self.messages.put((time.perf_counter(), message))

    def send(self, message):
        body = json.dumps(message).encode()
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.process.stdin.flush()

    def notify(self, method, params):
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method, params):
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        return self.wait(lambda m: m.get("id") == self.next_id and "method" not in m)[1]

    def wait(self, matches, timeout=600):
        deadline = time.perf_counter() + timeout
        while True:
            at, message = self.messages.get(timeout=max(0.0, deadline - time.perf_counter()))
            if matches(message):
                return at, message

    def log_containing(self, text, timeout=600):
        return self.wait(lambda m: m.get("method") == "window/logMessage"
                         and text in m["params"]["message"], timeout)

    def stop(self):
        try:
            self.request("shutdown", None)
            self.notify("exit", None)
            self.process.wait(timeout=20)
        except Exception:
            self.process.kill()


def uri(path):
    return "file://" + path


PHASES = ["build", "prepare", "tests", "report", "merge", "publish"]


def parse_run(message):
    """Phase durations (seconds) from the server's "run N done: …" log line."""
    return {p: float(re.search(rf"{p} ([0-9.]+) s", message).group(1)) for p in PHASES}


def save(client, path, text, version):
    with open(path, "w") as f:
        f.write(text)
    client.notify("textDocument/didChange", {"textDocument": {"uri": uri(path), "version": version},
                                             "contentChanges": [{"text": text}]})
    start = time.perf_counter()
    client.notify("textDocument/didSave", {"textDocument": {"uri": uri(path)}})
    _, selected = client.log_containing("rerun")
    message = selected["params"]["message"]
    match = re.search(r"rerunning (\d+) of (\d+) tests", message)
    if match:
        done_at, done = client.log_containing("done:")
        return message, done_at - start, parse_run(done["params"]["message"])
    if "every test" in message:
        done_at, done = client.log_containing("done:")
        return message, done_at - start, parse_run(done["params"]["message"])
    return message, time.perf_counter() - start, None


def cargo_test(path):
    start = time.perf_counter()
    subprocess.run(["cargo", "test", "--tests", "-q"], cwd=path, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench(name, rounds, first_runs):
    path = overhead.fetch(name, overhead.REGISTRY_CRATES[name])
    subprocess.run(["cargo", "test", "--tests", "-q", "--no-run"], cwd=path,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # The server's first run against `coverlay run`, both on a warm build and warm caches, in
    # `first_runs` interleaved pairs; the last server stays for the saves.
    cli_run = [COVERLAY, "run", path, "--no-doctests"]
    subprocess.run(cli_run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = {}
    originals = {}
    for _, relative, _, _ in TRACES[name]:
        file = os.path.join(path, relative)
        with open(file) as f:
            originals[file] = f.read()
    version = 1
    pairs = []
    client = None
    try:
        for _ in range(first_runs):
            if client:
                client.stop()
            start = time.perf_counter()
            subprocess.run(cli_run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cli = time.perf_counter() - start
            client = Client(path)
            start = time.perf_counter()
            client.request("initialize", {"processId": os.getpid(), "rootUri": uri(path),
                                          "initializationOptions": {"doctests": False},
                                          "capabilities": {"window": {"workDoneProgress": True}}})
            client.notify("initialized", {})
            for file, text in originals.items():
                client.notify("textDocument/didOpen", {"textDocument": {
                    "uri": uri(file), "languageId": "rust", "version": version, "text": text}})
            first_at, first = client.log_containing("done:")
            message = first["params"]["message"]
            pairs.append((message, first_at - start, parse_run(message), cli))
        rows[("(first full run)", "server vs `coverlay run`")] = pairs
        for function, relative, anchor, added in TRACES[name]:
            file = os.path.join(path, relative)
            original = originals[file]
            assert anchor in original, f"{name}: the anchor is not in {relative}"
            edited = original.replace(anchor, anchor + added, 1)
            commented = edited.replace(anchor, anchor + "    // a comment\n", 1)
            for _ in range(rounds):
                # Each save starts from the text the previous one left.
                for kind, text in [("body edit", edited), ("comment", commented),
                                   ("body edit undone", original)]:
                    version += 1
                    message, overlay, phases = save(client, file, text, version)
                    plain = cargo_test(path)
                    rows.setdefault((function, kind), []).append((message, overlay, phases, plain))
                    print(f"{name} {function} {kind}: {overlay:.2f} s "
                          f"({message.split(': ', 1)[1]}); cargo test {plain:.2f} s",
                          file=sys.stderr)
    finally:
        if client:
            client.stop()
        for file, original in originals.items():
            with open(file, "w") as f:
                f.write(original)
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--first-runs", type=int, default=3,
                        help="pairs of the server's first full run and `coverlay run`")
    parser.add_argument("crates", nargs="*")
    args = parser.parse_args()
    os.makedirs(overhead.WORK, exist_ok=True)
    subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    print("| crate | function | save | tests rerun | save → overlay | build | prepare | tests | "
          "report | merge | publish | `cargo test --tests` | ratio |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.crates or list(TRACES):
        for (function, kind), samples in bench(name, args.rounds, args.first_runs).items():
            message = samples[-1][0]
            match = re.search(r"rerunning (\d+ of \d+) tests", message)
            rerun = match.group(1) if match else (
                "none" if "nothing to rerun" in message else "all")
            if function == "(first full run)":
                rerun = "all"
            overlay = statistics.median(s[1] for s in samples)
            plain = statistics.median(s[3] for s in samples)
            phases = [s[2] for s in samples if s[2]]
            cells = [f"{statistics.median(p[k] for p in phases):.2f} s" if phases else "–"
                     for k in PHASES]
            print(f"| {name} | `{function}` | {kind} | {rerun} | {overlay:.2f} s | "
                  + " | ".join(cells)
                  + f" | {plain:.2f} s | {overlay / plain:.2f}× |")


if __name__ == "__main__":
    main()
