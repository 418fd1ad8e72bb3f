//! `coverlay run` end to end on the fixture crates: the real binary builds each fixture with cargo,
//! traces its tests, and every line of every fixture source is checked against its `//~` marker.
//!
//! Markers: `//~ hit` (coverable, executed), `//~ miss` (coverable, never executed); a line
//! without a marker must not be reported at all. After `hit`, an optional exact count (`hit 10`)
//! and the exact set of covering tests (`tests=a::b,c::d`), each optionally with its own count
//! (`tests=a::b:3`); a `+` in a test id stands for a space (doctest ids: `k::doc::f+(doctest)`).
//! `branches T/N`: T of the N sides (two per branch, one per `match` arm) of the line's branches
//! ran; in a fixture that has such markers, a line without one must have no branch. `sides=3:1,0:2`:
//! each branch's true and false counts, in order, all oriented (which side is true is known); a
//! `match` as its arms' counts (`1|0|2`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

mod lsp_support;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
        .canonicalize()
        .expect("fixture exists")
}

struct Run {
    output: Output,
    json: Option<Value>,
    lcov: Option<PathBuf>,
    /// The HTML report's directory.
    html: PathBuf,
}

/// Runs `coverlay run` on a fixture with JSON, lcov and HTML output in a fresh directory.
fn coverlay_run(name: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let out = std::env::temp_dir().join(format!(
        "coverlay-e2e-{}-{name}-{}",
        std::process::id(),
        extra.join("_").replace(['-', '/'], "")
    ));
    std::fs::create_dir_all(&out).unwrap();
    let (json, lcov, html) = (
        out.join("coverage.json"),
        out.join("coverage.lcov"),
        out.join("html"),
    );
    let output = Command::new(env!("CARGO_BIN_EXE_coverlay"))
        .arg("run")
        .arg(fixture(name))
        .arg("--json")
        .arg(&json)
        .arg("--lcov")
        .arg(&lcov)
        .arg("--html")
        .arg(&html)
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .expect("coverlay runs");
    let json = std::fs::read_to_string(&json)
        .ok()
        .map(|text| serde_json::from_str(&text).expect("valid JSON report"));
    Run {
        output,
        json,
        lcov: lcov.exists().then_some(lcov),
        html,
    }
}

fn cached(name: &'static str) -> &'static Run {
    static RUNS: OnceLock<std::sync::Mutex<BTreeMap<&'static str, &'static Run>>> = OnceLock::new();
    let runs = RUNS.get_or_init(Default::default);
    // Holding the lock while running keeps one build per fixture per test binary.
    let mut runs = runs.lock().unwrap_or_else(|e| e.into_inner());
    runs.entry(name)
        .or_insert_with(|| Box::leak(Box::new(coverlay_run(name, &[], &[]))))
}

fn text(output: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Line → (covering test id, that test's count) for every reported file.
fn reported_tests(json: &Value) -> BTreeMap<(PathBuf, u32), Vec<(String, u64)>> {
    let mut out = BTreeMap::new();
    for f in json["files"].as_array().expect("files") {
        for l in f["lines"].as_array().unwrap() {
            let mut tests: Vec<(String, u64)> = l["tests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["id"].as_str().unwrap().to_string(),
                        t["hits"].as_u64().unwrap(),
                    )
                })
                .collect();
            tests.sort();
            let key = (
                PathBuf::from(f["path"].as_str().unwrap()),
                l["line"].as_u64().unwrap() as u32,
            );
            out.insert(key, tests);
        }
    }
    out
}

/// Line → hits for every reported file.
fn reported(json: &Value) -> BTreeMap<PathBuf, BTreeMap<u32, u64>> {
    json["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            let lines = f["lines"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    (
                        l["line"].as_u64().unwrap() as u32,
                        l["hits"].as_u64().unwrap(),
                    )
                })
                .collect();
            (PathBuf::from(f["path"].as_str().unwrap()), lines)
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() && path.file_name() != Some("target".as_ref()) {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A line's branches: (sides run, sides) and each branch's `taken:not_taken` (`?` before it when
/// not oriented), a `match` as its arms' counts (`2|0|1`).
type LineBranches = ((u64, u64), Vec<String>);

/// Line → its branches, for every reported file.
fn reported_branches(json: &Value) -> BTreeMap<(PathBuf, u32), LineBranches> {
    let mut out = BTreeMap::new();
    for f in json["files"].as_array().expect("files") {
        for b in f["branches"].as_array().into_iter().flatten() {
            let key = (
                PathBuf::from(f["path"].as_str().unwrap()),
                b["line"].as_u64().unwrap() as u32,
            );
            let ((run, all), each): &mut LineBranches = out.entry(key).or_default();
            if let Some(arms) = b["arms"].as_array() {
                let hits: Vec<u64> = arms.iter().map(|a| a["hits"].as_u64().unwrap()).collect();
                *run += hits.iter().filter(|&&h| h > 0).count() as u64;
                *all += hits.len() as u64;
                let hits: Vec<String> = hits.iter().map(u64::to_string).collect();
                each.push(hits.join("|"));
                continue;
            }
            let (taken, not_taken) = (
                b["taken"].as_u64().unwrap(),
                b["not_taken"].as_u64().unwrap(),
            );
            *run += u64::from(taken > 0) + u64::from(not_taken > 0);
            *all += 2;
            let unknown = if b["oriented"] == Value::Bool(true) {
                ""
            } else {
                "?"
            };
            each.push(format!("{unknown}{taken}:{not_taken}"));
        }
    }
    out
}

/// Compares every line of every source file of the fixture with its marker; lists all mismatches.
fn assert_markers(name: &str, json: &Value) {
    let reported_hits = reported(json);
    let reported_tests = reported_tests(json);
    let reported_branches = reported_branches(json);
    let mut files = Vec::new();
    rust_files(&fixture(name), &mut files);
    files.sort();
    let strict_branches = files.iter().any(|f| {
        std::fs::read_to_string(f)
            .unwrap()
            .lines()
            .any(|l| l.contains("//~ ") && l.contains(" branches "))
    });
    let mut mismatches = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap();
        let lines = reported_hits.get(file);
        for (i, text) in source.lines().enumerate() {
            let line = i as u32 + 1;
            let marker = text
                .split_once("//~ ")
                .map(|(_, m)| m.split_whitespace().collect::<Vec<_>>());
            let hits = lines.and_then(|l| l.get(&line)).copied();
            let actual = match hits {
                None => "not coverable",
                Some(0) => "miss",
                Some(_) => "hit",
            };
            let expected = match marker.as_deref() {
                Some(["hit", ..]) => "hit",
                Some(["miss", ..]) => "miss",
                _ => "not coverable",
            };
            let short = file
                .strip_prefix(fixture(name))
                .unwrap_or(file)
                .display()
                .to_string();
            let mut mismatch =
                |what: String| mismatches.push(format!("{short}:{line}: {what}: {}", text.trim()));
            if expected != actual {
                mismatch(format!("expected {expected}, got {actual}"));
                continue;
            }
            let branches = reported_branches.get(&(file.clone(), line));
            let mut words = marker.iter().flatten().skip(1);
            let mut branches_marked = false;
            while let Some(word) = words.next() {
                if *word == "branches" {
                    branches_marked = true;
                    let want = words.next().expect("branches T/N");
                    let got = branches.map(|((run, all), _)| format!("{run}/{all}"));
                    if got.as_deref() != Some(*want) {
                        mismatch(format!("expected branches {want}, got {got:?}"));
                    }
                } else if let Some(want) = word.strip_prefix("sides=") {
                    let got = branches.map(|(_, each)| each.join(","));
                    if got.as_deref() != Some(want) {
                        mismatch(format!("expected sides {want}, got {got:?}"));
                    }
                } else if let Some(list) = word.strip_prefix("tests=") {
                    let got = reported_tests
                        .get(&(file.clone(), line))
                        .cloned()
                        .unwrap_or_default();
                    let list = list.replace('+', " ");
                    let mut want: Vec<(&str, Option<u64>)> = list
                        .split(',')
                        .map(|t| match t.rsplit_once(':') {
                            Some((id, n)) if n.parse::<u64>().is_ok() => (id, n.parse().ok()),
                            _ => (t, None),
                        })
                        .collect();
                    want.sort();
                    let matches = got.len() == want.len()
                        && got
                            .iter()
                            .zip(&want)
                            .all(|((id, hits), (want_id, want_hits))| {
                                id == want_id && want_hits.is_none_or(|w| w == *hits)
                            });
                    if !matches {
                        mismatch(format!("expected tests {want:?}, got {got:?}"));
                    }
                } else {
                    let want: u64 = word.parse().expect("count");
                    if hits != Some(want) {
                        mismatch(format!("expected {want} hits, got {hits:?}"));
                    }
                }
            }
            if strict_branches && !branches_marked {
                if let Some(((run, all), _)) = branches {
                    mismatch(format!("expected no branches, got {run}/{all}"));
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} line(s) of {name} differ from their markers:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn ledger_lines_match_their_markers() {
    let run = cached("ledger");
    assert!(run.output.status.success(), "{}", text(&run.output));
    assert_markers("ledger", run.json.as_ref().unwrap());
}

#[test]
fn twocrates_lines_match_their_markers() {
    let run = cached("twocrates");
    assert!(run.output.status.success(), "{}", text(&run.output));
    assert_markers("twocrates", run.json.as_ref().unwrap());
}

/// Lines whose machine code the compiler places elsewhere: a constant hoisted above a match
/// guard is not the arm's, and libtest's `main` on the crate root's line 1 is not that line's.
#[test]
fn verdicts_lines_match_their_markers() {
    let run = cached("verdicts");
    assert!(run.output.status.success(), "{}", text(&run.output));
    assert_markers("verdicts", run.json.as_ref().unwrap());
}

/// A binary an integration test runs (`CARGO_BIN_EXE_tool`) is measured, its lines credited to
/// that test; so is the library code it calls.
#[test]
fn a_workspace_binary_run_by_a_test_is_measured_for_that_test() {
    let run = cached("cargoenv");
    assert!(run.output.status.success(), "{}", text(&run.output));
    assert_markers("cargoenv", run.json.as_ref().unwrap());
    // The same under the int3 fallback and in first-hit mode.
    for mode in [&["--traps-only"][..], &["--no-counts"][..]] {
        let other = coverlay_run("cargoenv", mode, &[]);
        let lines = reported(other.json.as_ref().unwrap());
        let tool = &lines[&fixture("cargoenv").join("src/bin/tool.rs")];
        assert!(tool.values().all(|&hits| hits > 0), "{mode:?}: {tool:?}");
    }
}

/// The int3 fallback, forced for every address: the same verdicts and covering tests as the
/// trampolines, exact counts below the cap, and `capped` lower bounds above it. It counts no
/// branches, so a bare jump whose count is a branch's side is not a line there.
#[test]
fn the_int3_fallback_agrees_with_the_trampolines() {
    let exact = cached("counts");
    let traps = coverlay_run("counts", &["--traps-only", "--count-cap", "10"], &[]);
    assert!(traps.output.status.success(), "{}", text(&traps.output));
    let (exact, traps) = (exact.json.as_ref().unwrap(), traps.json.as_ref().unwrap());
    let lines = |json: &Value| -> BTreeMap<(String, u64), Value> {
        json["files"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|f| {
                f["lines"].as_array().unwrap().iter().map(move |l| {
                    let key = (
                        f["path"].as_str().unwrap().to_string(),
                        l["line"].as_u64().unwrap(),
                    );
                    (key, l.clone())
                })
            })
            .collect()
    };
    let (exact, traps) = (lines(exact), lines(traps));
    let source_line = |(path, line): &(String, u64)| {
        let source = std::fs::read_to_string(path).unwrap();
        source.lines().nth(*line as usize - 1).unwrap().to_owned()
    };
    let only_exact: Vec<String> = exact
        .keys()
        .filter(|key| !traps.contains_key(*key))
        .map(source_line)
        .collect();
    assert_eq!(
        only_exact,
        ["            break; //~ hit 1"],
        "the same coverable lines but a jump counted by its branch"
    );
    assert!(
        traps.keys().all(|key| exact.contains_key(key)),
        "no line of the int3 fallback's own"
    );
    let ids = |line: &Value| -> Vec<String> {
        line["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    let mut capped = 0;
    for (key, line) in &traps {
        let want = &exact[key];
        assert_eq!(ids(line), ids(want), "{key:?}: covering tests");
        let (hits, exact_hits) = (
            line["hits"].as_u64().unwrap(),
            want["hits"].as_u64().unwrap(),
        );
        if line["capped"] == Value::Bool(true) {
            capped += 1;
            assert!(
                (1..=exact_hits).contains(&hits),
                "{key:?}: {hits} ≤ {exact_hits}"
            );
        } else {
            assert_eq!(line, want, "{key:?}: below the cap, exact");
        }
        assert!(
            want.get("capped").is_none(),
            "{key:?}: trampolines never cap here"
        );
    }
    assert!(capped >= 3, "the hot loops reach the cap");
}

/// Branch coverage on every construct, with each side run and not: real conditional jumps of a
/// real build, counted by the engine.
#[test]
fn branches_match_their_markers() {
    let run = cached("branches");
    assert!(run.output.status.success(), "{}", text(&run.output));
    let json = run.json.as_ref().unwrap();
    assert_markers("branches", json);
    // Per test, like lines: every execution happens inside some test, so the tests' own counts
    // add up to each side's total; `sign`'s `if` ran in `signs` only, once each way.
    let file = &json["files"][0];
    for branch in file["branches"].as_array().unwrap() {
        if let Some(arms) = branch["arms"].as_array() {
            for arm in arms {
                let by_tests: u64 = arm["tests"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["hits"].as_u64().unwrap())
                    .sum();
                assert_eq!(by_tests, arm["hits"].as_u64().unwrap(), "{branch}");
            }
            continue;
        }
        for side in ["taken", "not_taken"] {
            let by_tests: u64 = branch["tests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t[side].as_u64().unwrap())
                .sum();
            assert_eq!(by_tests, branch[side].as_u64().unwrap(), "{branch}");
        }
    }
    let source = std::fs::read_to_string(fixture("branches").join("src/lib.rs")).unwrap();
    let line_of = |needle: &str| 1 + source.lines().position(|l| l.contains(needle)).unwrap();
    let branch_at = |line: usize| {
        file["branches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["line"] == line)
    };
    let line = line_of("if x > 0 {");
    let sign = branch_at(line).expect("a branch on `sign`'s `if`");
    assert_eq!(
        sign["tests"],
        serde_json::json!([{"id": "branches::tests::signs", "taken": 1, "not_taken": 1}])
    );
    // lcov: one BRDA per side, and the file's totals.
    let lcov = std::fs::read_to_string(run.lcov.as_ref().unwrap()).unwrap();
    assert!(
        lcov.contains(&format!("BRDA:{line},0,0,1\nBRDA:{line},0,1,1\n")),
        "{lcov}"
    );
    // A `match` is one block, a branch per arm; `area`'s arms ran in `matches` only.
    let area = line_of("match s {");
    let entry = branch_at(area).expect("`area`'s match");
    assert_eq!(entry["construct"], "match", "{entry}");
    assert_eq!(
        entry["arms"][1]["tests"],
        serde_json::json!([{"id": "branches::tests::matches", "hits": 2}])
    );
    assert!(
        lcov.contains(&format!(
            "BRDA:{area},0,0,1\nBRDA:{area},0,1,2\nBRDA:{area},0,2,0\n"
        )),
        "{lcov}"
    );
    // After the line's two-way branches: `parsed_kind`'s match is its line's third block.
    let parsed = line_of("Ok(match s.parse::<u32>()? {");
    assert!(
        lcov.contains(&format!("BRDA:{parsed},2,0,1\nBRDA:{parsed},2,1,0\n")),
        "{lcov}"
    );
    let (hit, found) = (
        file["branches_hit"].as_u64(),
        file["branches_found"].as_u64(),
    );
    assert!(
        lcov.contains(&format!("BRF:{}\nBRH:{}\n", found.unwrap(), hit.unwrap())),
        "{lcov}"
    );
}

/// With first hits only, a branch side with an address of its own is known to have run or not,
/// and so is a `match` arm from its line: the same verdicts as with counts, for fewer branches
/// (a side that is a difference of counts needs counts; the run says so once).
#[test]
fn no_counts_reports_the_branches_first_hits_can_tell() {
    let counted = cached("branches").json.as_ref().unwrap();
    let run = coverlay_run("branches", &["--no-counts"], &[]);
    assert!(run.output.status.success(), "{}", text(&run.output));
    let stderr = String::from_utf8_lossy(&run.output.stderr);
    let note = "note: with --no-counts, branch sides are reported only where they have an address";
    assert_eq!(stderr.matches(note).count(), 1, "{stderr}");
    // (line, index) → each side or arm (its line) run or not.
    let verdicts = |json: &Value| -> BTreeMap<(u64, u64), Vec<(u64, bool)>> {
        let branches = json["files"][0]["branches"].as_array().unwrap();
        branches
            .iter()
            .map(|b| {
                let key = (b["line"].as_u64().unwrap(), b["index"].as_u64().unwrap());
                let ran = |v: &Value| v.as_u64().unwrap() > 0;
                let ways = match b["arms"].as_array() {
                    Some(arms) => arms
                        .iter()
                        .map(|a| (a["line"].as_u64().unwrap(), ran(&a["hits"])))
                        .collect(),
                    None => vec![(0, ran(&b["taken"])), (1, ran(&b["not_taken"]))],
                };
                (key, ways)
            })
            .collect()
    };
    let (first_hits, with_counts) = (verdicts(run.json.as_ref().unwrap()), verdicts(counted));
    for (key, ways) in &first_hits {
        assert_eq!(
            Some(ways),
            with_counts.get(key),
            "line {} index {}",
            key.0,
            key.1
        );
    }
    let matches = first_hits.values().filter(|w| w[0].0 > 1).count();
    let conditions = first_hits.len() - matches;
    assert!(matches >= 5 && conditions >= 10, "{first_hits:?}");
    assert!(
        first_hits.len() < with_counts.len(),
        "`||` operands need counts"
    );
    let quiet = coverlay_run("branches", &["--no-counts", "--no-branches"], &[]);
    assert!(!String::from_utf8_lossy(&quiet.output.stderr).contains(note));
    assert_eq!(quiet.json.as_ref().unwrap()["branches_found"], 0);
}

#[test]
fn counts_and_covering_tests_match_their_markers() {
    let run = cached("counts");
    assert!(run.output.status.success(), "{}", text(&run.output));
    assert_markers("counts", run.json.as_ref().unwrap());
}

#[test]
fn doctests_are_measured_one_executable_per_doctest() {
    let run = cached("doctests");
    assert_eq!(run.output.status.code(), Some(101), "{}", text(&run.output));
    let json = run.json.as_ref().unwrap();
    assert_markers("doctests", json);
    let outcomes = outcomes_of(json);
    let lib = fixture("doctests").join("src/lib.rs");
    let expected = [
        ("doctests::doc::src/lib.rs (doctest)", "passed", 3),
        ("doctests::doc::area (doctest)", "passed", 11),
        ("doctests::doc::checked_side (doctest)", "passed", 23),
        ("doctests::doc::never_run (doctest)", "passed", 35),
        ("doctests::doc::never_run (doctest 2)", "ignored", 39),
        ("doctests::doc::never_run (doctest 3)", "passed", 43),
        ("doctests::doc::half (doctest)", "failed", 52),
        ("doctests::doc::unreached (doctest)", "failed", 61),
    ];
    for (id, outcome, line) in expected {
        assert_eq!(
            outcomes.get(id),
            Some(&(outcome.to_owned(), Some((lib.clone(), line)))),
            "{id} in {outcomes:#?}"
        );
    }
    for id in [
        "doctests::doc::square::Square::new (doctest)",
        "doctests::doc::square::describe (doctest)",
        "doctests::doc::square::outline (doctest)",
        "doctests::tests::unit",
    ] {
        assert_eq!(outcomes[id].0, "passed", "{id}");
    }
    assert_eq!(outcomes.len(), 12, "{outcomes:#?}");
    // A failing doctest's panic and a doctest that does not compile, as `cargo test` shows them.
    let stdout = String::from_utf8_lossy(&run.output.stdout);
    assert!(stdout.contains("half of three"), "{stdout}");
    assert!(
        stdout.contains("cannot find function `no_such_function`"),
        "{stdout}"
    );
    // Before edition 2024: one executable per doctest that runs.
    assert_eq!(doctest_executables(json), 7, "{}", json["executables"]);

    let without = coverlay_run("doctests", &["--no-doctests"], &[]);
    assert!(without.output.status.success(), "{}", text(&without.output));
    let json = without.json.as_ref().unwrap();
    assert_eq!(
        outcomes_of(json).keys().collect::<Vec<_>>(),
        ["doctests::tests::unit"]
    );
    let square = fixture("doctests").join("src/square.rs");
    assert_eq!(
        reported(json)
            .get(&square)
            .map(|lines| lines.values().sum::<u64>()),
        Some(0),
        "without doctests nothing runs square.rs"
    );
}

#[test]
fn merged_doctests_run_one_by_one_each_with_its_own_counts() {
    let run = cached("doctests2024");
    assert!(run.output.status.success(), "{}", text(&run.output));
    let json = run.json.as_ref().unwrap();
    assert_markers("doctests2024", json);
    let outcomes = outcomes_of(json);
    for name in ["zed (doctest)", "abc (doctest)", "m::aaa (doctest)"] {
        let id = format!("doctests2024::doc::{name}");
        assert_eq!(outcomes[&id].0, "passed", "{id}");
    }
    assert_eq!(outcomes.len(), 3, "{outcomes:#?}");
    assert_eq!(
        doctest_executables(json),
        1,
        "edition 2024 merges them: {}",
        json["executables"]
    );
}

/// The doctest executables a JSON report lists (each its own entry).
fn doctest_executables(json: &Value) -> usize {
    json["executables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "doctest" && e["path"].as_str().unwrap().contains("/bin/"))
        .count()
}

type Outcomes = BTreeMap<String, (String, Option<(PathBuf, u32)>)>;

/// Test id → (outcome, location) of a JSON report.
fn outcomes_of(json: &Value) -> Outcomes {
    json["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let location = t["location"].as_array().map(|l| {
                (
                    PathBuf::from(l[0].as_str().unwrap()),
                    l[1].as_u64().unwrap() as u32,
                )
            });
            (
                t["id"].as_str().unwrap().to_owned(),
                (t["outcome"].as_str().unwrap().to_owned(), location),
            )
        })
        .collect()
}

#[test]
fn every_test_is_reported_with_its_outcome_duration_and_location() {
    let json = cached("ledger").json.as_ref().unwrap();
    let tests = json["tests"].as_array().unwrap();
    let ids: Vec<&str> = tests.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert!(
        ids.contains(&"ledger::tests::overdrawing_panics"),
        "{ids:?}"
    );
    assert!(
        ids.contains(&"script::summary_reports_balance_and_withdrawals"),
        "{ids:?}"
    );
    for test in tests {
        assert_eq!(test["outcome"], "passed", "{test}");
        let location = test["location"].as_array().expect("location");
        let file = location[0].as_str().unwrap();
        let line = location[1].as_u64().unwrap() as usize;
        let source = std::fs::read_to_string(file).unwrap();
        let name = test["id"].as_str().unwrap().rsplit("::").next().unwrap();
        assert!(
            source
                .lines()
                .nth(line - 1)
                .unwrap()
                .contains(&format!("fn {name}(")),
            "{test}"
        );
    }
}

#[test]
fn the_table_lists_each_file_relative_to_the_workspace_and_a_total() {
    let run = cached("ledger");
    let stdout = String::from_utf8_lossy(&run.output.stdout);
    let json = run.json.as_ref().unwrap();
    for file in json["files"].as_array().unwrap() {
        let path = Path::new(file["path"].as_str().unwrap());
        let relative = path.strip_prefix(fixture("ledger")).unwrap();
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{} ", relative.display())))
            .unwrap_or_else(|| panic!("no row for {}:\n{stdout}", relative.display()));
        let numbers: Vec<&str> = row.split_whitespace().skip(1).collect();
        assert_eq!(numbers[0], file["covered"].to_string(), "{row}");
        assert_eq!(numbers[1], file["coverable"].to_string(), "{row}");
        assert_eq!(numbers[3], branch_cell(file), "{row}");
    }
    let total = stdout
        .lines()
        .find(|l| l.starts_with("Total "))
        .expect("total row");
    let numbers: Vec<&str> = total.split_whitespace().skip(1).collect();
    assert_eq!(numbers[0], json["covered"].to_string(), "{total}");
    assert_eq!(numbers[1], json["coverable"].to_string(), "{total}");
    assert_eq!(numbers[3], branch_cell(json), "{total}");
    assert!(
        json["branches_found"].as_u64().unwrap() > 0,
        "ledger has branches"
    );
}

/// A file's or the run's branch sides as the table and the HTML index show them.
fn branch_cell(counts: &Value) -> String {
    match (
        counts["branches_hit"].as_u64(),
        counts["branches_found"].as_u64(),
    ) {
        (_, Some(0) | None) => "-".into(),
        (Some(hit), Some(found)) => format!("{hit}/{found}"),
        (None, Some(found)) => panic!("{found} branch sides found but no count of those hit"),
    }
}

#[test]
fn the_missing_column_names_exactly_the_miss_lines() {
    let run = cached("ledger");
    let stdout = String::from_utf8_lossy(&run.output.stdout);
    assert!(stdout
        .lines()
        .any(|l| l.starts_with("File ") && l.ends_with("Missing")));
    let row = stdout
        .lines()
        .find(|l| l.starts_with("src/lib.rs "))
        .expect("a row for src/lib.rs");
    // After the percent: the branch sides, then the missing lines.
    let (_, cell) = row
        .split('%')
        .nth(1)
        .unwrap()
        .trim()
        .split_once(' ')
        .unwrap();
    let cell = cell.trim();
    let mut named = Vec::new();
    for range in cell.split(", ") {
        match range.split_once('-') {
            Some((a, b)) => named.extend(a.parse::<u32>().unwrap()..=b.parse().unwrap()),
            None => named.push(range.parse::<u32>().unwrap()),
        }
    }
    let text = std::fs::read_to_string(fixture("ledger").join("src/lib.rs")).unwrap();
    let misses: Vec<u32> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_end().ends_with("//~ miss"))
        .map(|(i, _)| i as u32 + 1)
        .collect();
    assert_eq!(named, misses, "{row}");
}

#[test]
fn cobertura_validates_against_its_dtd_and_its_rates_match_the_table() {
    let out = std::env::temp_dir().join(format!("coverlay-cobertura-{}.xml", std::process::id()));
    let run = coverlay_run("twocrates", &["--cobertura", out.to_str().unwrap()], &[]);
    assert_eq!(run.output.status.code(), Some(0), "{}", text(&run.output));
    let dtd = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cobertura/coverage-04.dtd");
    let valid = Command::new("xmllint")
        .args(["--noout", "--nonet", "--dtdvalid"])
        .arg(&dtd)
        .arg(&out)
        .output()
        .expect("xmllint (Debian's libxml2-utils; .ci/run installs it)");
    assert!(
        valid.status.success(),
        "{}",
        String::from_utf8_lossy(&valid.stderr)
    );
    let xml = std::fs::read_to_string(&out).unwrap();
    let json = run.json.as_ref().unwrap();
    // One class per file, its line-rate the table's percentage; one package per crate.
    for file in json["files"].as_array().unwrap() {
        let path = Path::new(file["path"].as_str().unwrap());
        let relative = path
            .strip_prefix(fixture("twocrates"))
            .unwrap()
            .display()
            .to_string();
        let class = xml
            .lines()
            .find(|l| l.contains("<class ") && l.contains(&format!(r#"filename="{relative}""#)))
            .unwrap_or_else(|| panic!("no class for {relative}:\n{xml}"));
        let rate: f64 = class
            .split(r#"line-rate=""#)
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let table = file["covered"].as_f64().unwrap() / file["coverable"].as_f64().unwrap();
        assert!((rate - table).abs() < 1e-4, "{class} vs {table}");
    }
    for package in ["mathx", "app"] {
        assert!(
            xml.contains(&format!(r#"<package name="{package}" "#)),
            "{xml}"
        );
    }
    assert!(xml.contains(&format!(r#"lines-valid="{}""#, json["coverable"])));
}

/// The DOM of a page after its scripts ran, from Debian's headless Chromium; `None` when Chromium
/// is not installed outside CI.
fn chromium_dom(url: &str) -> Option<String> {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output();
    match output {
        Ok(output) => {
            assert!(output.status.success(), "chromium {url}: {}", text(&output));
            Some(String::from_utf8(output.stdout).expect("UTF-8 DOM"))
        }
        Err(error) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("chromium must be installed in CI (tests/vscode/setup.sh): {error}")
        }
        Err(error) => {
            eprintln!("note: chromium is not installed ({error}), skipping the HTML report check");
            None
        }
    }
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in the start tag that `tag` begins with.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let tag = format!(" {}", &tag[..tag.find('>').unwrap_or(tag.len())]);
    let value = tag.split(&format!(" {name}=\"")).nth(1)?;
    Some(unescape(value.split('"').next().unwrap()))
}

/// Every `<tr …>…</tr>` of a DOM, each from its start tag on.
fn table_rows(dom: &str) -> Vec<&str> {
    dom.split("<tr")
        .skip(1)
        .filter(|r| r.starts_with([' ', '>']))
        .map(|r| &r[..r.find("</tr>").unwrap_or(r.len())])
        .collect()
}

/// Fails on any `src`, `href` or CSS `url(` that leaves the report's directory for the network.
fn assert_offline(page: &str, content: &str) {
    for attr in ["src", "href"] {
        for value in content.split(&format!(" {attr}=\"")).skip(1) {
            let value = value.split('"').next().unwrap();
            assert!(
                !value.contains("//") && !value.starts_with("data:"),
                "{page}: {attr}=\"{value}\""
            );
        }
    }
    assert!(!content.contains("url("), "{page}: a CSS url()");
    assert!(!content.contains("@import"), "{page}: a CSS @import");
}

/// The HTML report as a browser shows it: the index lists every file with the JSON's counts and
/// sorts by a column, and each file's page colours exactly the `hit`/`miss` lines and names the
/// tests that ran each covered line.
#[test]
fn the_html_report_in_chromium_matches_the_markers_and_the_json() {
    let run = cached("ledger");
    assert!(run.output.status.success(), "{}", text(&run.output));
    let stderr = String::from_utf8_lossy(&run.output.stderr);
    let index = run.html.join("index.html");
    assert!(
        stderr.contains(&format!("wrote HTML report to {}", index.display())),
        "{stderr}"
    );
    let css = std::fs::read_to_string(run.html.join("style.css")).unwrap();
    assert_offline("style.css", &css);
    let Some(dom) = chromium_dom(&format!("file://{}#sort=-percent", index.display())) else {
        return;
    };
    assert_offline("index.html", &dom);
    let json = run.json.as_ref().unwrap();
    let root = fixture("ledger");

    // path → (page, covered, coverable), in the order the script sorted them.
    let listed: Vec<(String, String, String, String)> = table_rows(&dom)
        .into_iter()
        .filter_map(|row| {
            let path = attribute(row, "data-path")?;
            let link = row.split("<a ").nth(1).expect("a link to the page");
            Some((
                path,
                attribute(link, "href").unwrap(),
                attribute(row, "data-covered").unwrap(),
                attribute(row, "data-coverable").unwrap(),
            ))
        })
        .collect();
    let files = json["files"].as_array().unwrap();
    assert_eq!(listed.len(), files.len(), "{listed:?}");
    let page_of: BTreeMap<PathBuf, String> = listed
        .iter()
        .map(|(path, page, _, _)| (root.join(path), page.clone()))
        .collect();
    for file in files {
        let path = Path::new(file["path"].as_str().unwrap());
        let relative = path.strip_prefix(&root).unwrap().display().to_string();
        let row = listed
            .iter()
            .find(|r| r.0 == relative)
            .unwrap_or_else(|| panic!("{relative} not in the index: {listed:?}"));
        assert_eq!(row.2, file["covered"].to_string(), "{relative}");
        assert_eq!(row.3, file["coverable"].to_string(), "{relative}");
        // The branch column: the JSON's branch sides, per file and in total.
        let tag = table_rows(&dom)
            .into_iter()
            .find(|r| attribute(r, "data-path").as_deref() == Some(relative.as_str()))
            .unwrap();
        assert_eq!(
            attribute(tag, "data-branches-hit").zip(attribute(tag, "data-branches-found")),
            Some((
                file["branches_hit"].to_string(),
                file["branches_found"].to_string()
            )),
            "{relative}"
        );
        assert!(
            tag.ends_with(&format!(">{}</td>", branch_cell(file))),
            "{tag}"
        );
    }
    let total = table_rows(&dom)
        .into_iter()
        .find(|r| r.contains(r#"class="total""#))
        .expect("a total row");
    assert!(
        total.ends_with(&format!(">{}</td>", branch_cell(json))),
        "{total}"
    );
    let ratio = |r: &(String, String, String, String)| {
        r.2.parse::<f64>().unwrap() / r.3.parse::<f64>().unwrap()
    };
    assert!(
        listed.windows(2).all(|w| ratio(&w[0]) >= ratio(&w[1])),
        "#sort=-percent orders by percent, highest first: {listed:?}"
    );
    assert!(dom.contains(r#"aria-sort="descending""#));

    let tests = reported_tests(json);
    let branches = reported_branches(json);
    let mut sources = Vec::new();
    rust_files(&root, &mut sources);
    // Examples are not built, so not measured (see `examples_are_not_built`).
    sources.retain(|path| !path.starts_with(root.join("examples")));
    let mut mismatches = Vec::new();
    for source_path in &sources {
        let relative = source_path
            .strip_prefix(&root)
            .unwrap()
            .display()
            .to_string();
        let page = page_of
            .get(source_path)
            .unwrap_or_else(|| panic!("no page for {relative}"));
        let dom = chromium_dom(&format!("file://{}", run.html.join(page).display())).unwrap();
        assert_offline(page, &dom);
        assert!(
            dom.contains(r#"<a href="index.html">"#),
            "{page}: a link back"
        );
        let rows: BTreeMap<u32, &str> = table_rows(&dom)
            .into_iter()
            .filter_map(|row| Some((attribute(row, "data-line")?.parse().unwrap(), row)))
            .collect();
        let source = std::fs::read_to_string(source_path).unwrap();
        assert_eq!(rows.len(), source.lines().count(), "{page}: a row per line");
        for (i, line_text) in source.lines().enumerate() {
            let line = i as u32 + 1;
            let row = rows[&line];
            // A covered line where some branch side never ran is partial too.
            let partial = branches
                .get(&(source_path.clone(), line))
                .is_some_and(|((run, all), _)| run < all);
            let expected = match line_text
                .split_once("//~ ")
                .map(|(_, m)| m.split_whitespace().next())
            {
                Some(Some("hit")) if partial => Some("hit partial"),
                Some(Some("hit")) => Some("hit"),
                Some(Some("miss")) => Some("miss"),
                _ => None,
            };
            let class = attribute(row, "class");
            if class.as_deref() != expected {
                mismatches.push(format!(
                    "{relative}:{line}: expected {expected:?}, got {class:?}: {}",
                    line_text.trim()
                ));
            }
            let mut shown: Vec<(String, u64)> = row
                .split("<li ")
                .skip(1)
                .map(|li| {
                    (
                        attribute(li, "data-test").unwrap(),
                        attribute(li, "data-hits").unwrap().parse().unwrap(),
                    )
                })
                .collect();
            shown.sort();
            let want = tests
                .get(&(source_path.clone(), line))
                .cloned()
                .unwrap_or_default();
            if shown != want {
                mismatches.push(format!(
                    "{relative}:{line}: tests {shown:?}, the JSON has {want:?}"
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn fail_under_gates_on_the_total_both_ways() {
    let total = cached("ledger").json.as_ref().unwrap();
    let percent = total["covered"].as_f64().unwrap() * 100.0 / total["coverable"].as_f64().unwrap();
    let below = coverlay_run(
        "ledger",
        &["--fail-under", &format!("{}", percent.ceil() + 1.0)],
        &[],
    );
    assert_eq!(
        below.output.status.code(),
        Some(3),
        "{}",
        text(&below.output)
    );
    assert!(String::from_utf8_lossy(&below.output.stderr).contains("is below --fail-under"));
    assert!(
        below.json.is_some() && below.lcov.is_some(),
        "the reports are written first"
    );
    let above = coverlay_run(
        "ledger",
        &["--fail-under", &format!("{}", percent.floor()), "--quiet"],
        &[],
    );
    assert_eq!(
        above.output.status.code(),
        Some(0),
        "{}",
        text(&above.output)
    );
    let stderr = String::from_utf8_lossy(&above.output.stderr);
    assert!(
        !stderr.contains("building tests"),
        "--quiet: no progress\n{stderr}"
    );
    let progress = String::from_utf8_lossy(&below.output.stderr);
    assert!(progress.contains("building tests"), "{progress}");
    let tests = total["tests"].as_array().unwrap().len();
    assert!(
        progress.contains(&format!("running tests under coverage: {tests}/{tests}\n")),
        "plain progress lines end with every test done\n{progress}"
    );
}

/// What a merged report must equal: per line its hits and each test's own count, per test its
/// outcome, and the order of the tests.
#[allow(clippy::type_complexity)]
fn essence(
    json: &Value,
) -> (
    BTreeMap<(PathBuf, u32), (u64, Vec<(String, u64)>)>,
    Vec<(String, Value)>,
) {
    let mut lines = BTreeMap::new();
    for f in json["files"].as_array().expect("files") {
        for l in f["lines"].as_array().expect("lines") {
            let tests = l["tests"]
                .as_array()
                .expect("tests")
                .iter()
                .map(|t| {
                    (
                        t["id"].as_str().unwrap().to_owned(),
                        t["hits"].as_u64().unwrap(),
                    )
                })
                .collect();
            let key = (
                PathBuf::from(f["path"].as_str().unwrap()),
                l["line"].as_u64().unwrap() as u32,
            );
            lines.insert(key, (l["hits"].as_u64().unwrap(), tests));
        }
    }
    let tests = json["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_owned(), t["outcome"].clone()))
        .collect();
    (lines, tests)
}

fn test_ids(json: &Value) -> Vec<String> {
    json["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

fn coverlay_merge(reports: &[PathBuf], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coverlay"))
        .arg("merge")
        .args(reports)
        .arg("--json")
        .arg(out.join("merged.json"))
        .arg("--lcov")
        .arg(out.join("merged.lcov"))
        .arg("--html")
        .arg(out.join("html"))
        .output()
        .expect("coverlay runs")
}

#[test]
fn partitions_are_disjoint_cover_every_test_and_merge_into_the_full_run() {
    let full = cached("ledger");
    let full_json = full.json.as_ref().unwrap();
    let full_ids = test_ids(full_json);
    assert!(full_ids.len() >= 6, "{full_ids:?}");
    let full_lcov = std::fs::read_to_string(full.lcov.as_ref().unwrap()).unwrap();
    for (kind, n) in [("count", 3), ("hash", 2), ("slice", 4)] {
        let mut reports = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for k in 1..=n {
            let partition = format!("{kind}:{k}/{n}");
            let run = coverlay_run("ledger", &["--partition", &partition, "-q"], &[]);
            assert_eq!(run.output.status.code(), Some(0), "{}", text(&run.output));
            let ids = test_ids(run.json.as_ref().unwrap());
            assert!(
                ids.iter().all(|id| !seen.contains(id)),
                "{partition} repeats a test of an earlier slice: {ids:?} / {seen:?}"
            );
            seen.extend(ids);
            let dir = run.lcov.as_ref().unwrap().parent().unwrap();
            reports.push(dir.join("coverage.json"));
        }
        seen.sort();
        let mut all = full_ids.clone();
        all.sort();
        assert_eq!(seen, all, "{kind}: the slices together run every test once");

        let out = reports[0].parent().unwrap().join(format!("merged-{kind}"));
        std::fs::create_dir_all(&out).unwrap();
        let merged = coverlay_merge(&reports, &out);
        assert_eq!(merged.status.code(), Some(0), "{}", text(&merged));
        let merged_json: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("merged.json")).unwrap())
                .unwrap();
        let (lines, tests) = essence(&merged_json);
        let (full_lines, full_tests) = essence(full_json);
        assert_eq!(tests, full_tests, "{kind}: tests, their order and outcomes");
        for (key, expected) in &full_lines {
            assert_eq!(lines.get(key), Some(expected), "{kind}: {key:?}");
        }
        assert_eq!(lines.len(), full_lines.len(), "{kind}: the same lines");
        assert_eq!(
            (&merged_json["covered"], &merged_json["coverable"]),
            (&full_json["covered"], &full_json["coverable"])
        );
        assert_eq!(
            std::fs::read_to_string(out.join("merged.lcov")).unwrap(),
            full_lcov,
            "{kind}: the same lcov"
        );
        // The table a merge prints is the full run's.
        let table = |output: &Output| {
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            stdout[stdout.find("File").expect("a table")..].to_owned()
        };
        assert_eq!(table(&merged), table(&full.output));
        let index = std::fs::read_to_string(out.join("html/index.html")).unwrap();
        for f in full_json["files"].as_array().unwrap() {
            let path = Path::new(f["path"].as_str().unwrap());
            let relative = path
                .strip_prefix(fixture("ledger"))
                .unwrap()
                .display()
                .to_string();
            assert!(
                index.contains(&relative),
                "{kind}: {relative} in the merged HTML index"
            );
        }
    }
}

#[test]
fn merge_explains_what_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.json");
    std::fs::write(&old, r#"{"version": 1, "files": []}"#).unwrap();
    let output = coverlay_merge(std::slice::from_ref(&old), dir.path());
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("old.json") && stderr.contains("report version 1"),
        "{stderr}"
    );
    let missing = coverlay_merge(&[dir.path().join("nothing.json")], dir.path());
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nothing.json"));
    let bad = Command::new(env!("CARGO_BIN_EXE_coverlay"))
        .args(["run", ".", "--partition", "count:3/2"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("need 1 ≤ K ≤ N"),
        "{}",
        text(&bad)
    );
}

#[test]
fn tests_see_the_environment_and_directory_cargo_gives_them() {
    let dir = tempfile::tempdir().unwrap();
    let (under_cargo, under_coverlay) = (dir.path().join("cargo"), dir.path().join("coverlay"));
    let cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["test", "--quiet"])
        .current_dir(fixture("cargoenv"))
        .env("CARGOENV_DUMP", &under_cargo)
        .output()
        .unwrap();
    assert!(cargo.status.success(), "{}", text(&cargo));
    let run = coverlay_run(
        "cargoenv",
        &[],
        &[("CARGOENV_DUMP", under_coverlay.to_str().unwrap())],
    );
    // CARGO_BIN_EXE_tool is there: the test that runs the binary passes.
    assert_eq!(run.output.status.code(), Some(0), "{}", text(&run.output));
    let outcomes: Vec<(String, Value)> = essence(run.json.as_ref().unwrap()).1;
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert!(outcomes.iter().all(|(_, o)| o == "passed"), "{outcomes:?}");
    // The same variables with the same values, but for coverlay's own target directory and the
    // build script's hash (coverlay's `--cfg coverlay` is part of it).
    let read = |file: &Path| {
        let text = std::fs::read_to_string(file)
            .unwrap()
            .replace("/target/coverlay/", "/target/");
        let mut parts = text.split("/build/cargoenv-");
        let mut out = parts.next().unwrap().to_owned();
        for part in parts {
            out.push_str("/build/cargoenv-HASH");
            out.push_str(part.get(16..).unwrap_or(part));
        }
        out
    };
    let (cargo, coverlay) = (read(&under_cargo), read(&under_coverlay));
    assert!(cargo.contains("CARGO_BIN_EXE_tool="), "{cargo}");
    assert!(
        cargo.contains("/out/native"),
        "the build script's search path: {cargo}"
    );
    let differ: Vec<String> = {
        let (a, b): (Vec<&str>, Vec<&str>) = (cargo.lines().collect(), coverlay.lines().collect());
        a.iter()
            .filter(|l| !b.contains(l))
            .map(|l| format!("cargo test:    {l}"))
            .chain(
                b.iter()
                    .filter(|l| !a.contains(l))
                    .map(|l| format!("coverlay run: {l}")),
            )
            .collect()
    };
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// Per test id: (outcome, attempts).
fn attempts(json: &Value) -> BTreeMap<String, (String, u64)> {
    json["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let id = t["id"]
                .as_str()
                .unwrap()
                .trim_start_matches("flaky::tests::");
            let outcome = t["outcome"].as_str().unwrap_or("?").to_owned();
            (
                id.to_owned(),
                (outcome, t["attempts"].as_u64().unwrap_or(1)),
            )
        })
        .collect()
}

#[test]
fn retries_report_flaky_tests_with_the_passing_runs_coverage() {
    let dir = tempfile::tempdir().unwrap();
    let mark = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();

    let once = coverlay_run("flaky", &[], &[("FLAKY_MARK", &mark("once"))]);
    assert_eq!(
        once.output.status.code(),
        Some(101),
        "{}",
        text(&once.output)
    );
    let outcomes = attempts(once.json.as_ref().unwrap());
    assert_eq!(
        outcomes["passes_on_its_second_attempt"],
        ("failed".into(), 1)
    );

    let retried = coverlay_run(
        "flaky",
        &["--retries", "2"],
        &[("FLAKY_MARK", &mark("retried")), ("FLAKY_ALWAYS", "1")],
    );
    assert_eq!(
        retried.output.status.code(),
        Some(101),
        "one test fails every time\n{}",
        text(&retried.output)
    );
    let json = retried.json.as_ref().unwrap();
    let outcomes = attempts(json);
    assert_eq!(
        outcomes["passes_on_its_second_attempt"],
        ("passed".into(), 2)
    );
    assert_eq!(
        outcomes["fails_every_time_when_asked"],
        ("failed".into(), 3)
    );
    assert_eq!(outcomes["steady"], ("passed".into(), 1));
    let stdout = String::from_utf8_lossy(&retried.output.stdout);
    assert!(
        stdout.contains(
            "test flaky::tests::passes_on_its_second_attempt is flaky: it passed on attempt 2"
        ) && stdout.contains("tests: 2 passed (1 flaky); 1 failed"),
        "{stdout}"
    );
    // The failed attempt's coverage is gone: only the passing run's counts remain.
    let lines = &reported(json);
    let lib = lines
        .iter()
        .find(|(path, _)| path.ends_with("src/lib.rs"))
        .expect("lib.rs reported")
        .1;
    assert_eq!(
        (lib[&7], lib[&13]),
        (0, 0),
        "first_try ran only in the failed attempt"
    );
    assert_eq!(lib[&17], 2, "later_try: steady and the passing retry");
    let tests = reported_tests(json);
    let key = |line| (fixture("flaky").join("src/lib.rs"), line);
    assert_eq!(
        tests[&key(17)],
        [
            ("flaky::tests::passes_on_its_second_attempt".to_owned(), 1),
            ("flaky::tests::steady".to_owned(), 1)
        ]
    );

    let passes = coverlay_run(
        "flaky",
        &["--retries", "1", "-q"],
        &[("FLAKY_MARK", &mark("passes"))],
    );
    assert_eq!(
        passes.output.status.code(),
        Some(0),
        "{}",
        text(&passes.output)
    );
}

#[test]
fn lcov_carries_the_same_lines_and_loads_in_the_lcov_reader() {
    let run = cached("ledger");
    let lcov_path = run.lcov.as_ref().expect("lcov written");
    let lcov = std::fs::read_to_string(lcov_path).unwrap();
    let json = run.json.as_ref().unwrap();
    for (path, lines) in reported(json) {
        let record = lcov
            .split("end_of_record\n")
            .find(|r| r.contains(&format!("SF:{}\n", path.display())))
            .unwrap_or_else(|| panic!("no lcov record for {}", path.display()));
        for (line, hits) in lines {
            assert!(
                record.contains(&format!("\nDA:{line},{hits}\n")),
                "DA:{line},{hits} in {record}"
            );
        }
    }
    match Command::new("lcov")
        .arg("--summary")
        .arg(lcov_path)
        .output()
    {
        Ok(output) => {
            assert!(
                output.status.success(),
                "lcov --summary failed: {}",
                text(&output)
            );
            let summary =
                String::from_utf8_lossy(&output.stderr) + String::from_utf8_lossy(&output.stdout);
            assert!(summary.contains("lines......"), "{summary}");
            assert!(!summary.to_lowercase().contains("error"), "{summary}");
        }
        Err(_) if std::env::var_os("CI").is_none() => {
            eprintln!("lcov is not installed (apt-get install lcov); skipped the reader check");
        }
        Err(error) => panic!("lcov must be installed in CI: {error}"),
    }
}

#[test]
fn dwarf_5_binaries_give_the_same_coverage_as_dwarf_4() {
    let target = std::env::temp_dir().join(format!("coverlay-dwarf5-{}", std::process::id()));
    let run = coverlay_run(
        "ledger",
        &[],
        &[
            ("RUSTFLAGS", "-Cdwarf-version=5"),
            ("CARGO_TARGET_DIR", target.to_str().unwrap()),
        ],
    );
    assert!(run.output.status.success(), "{}", text(&run.output));
    // Verdicts, not counts: a line that threads run concurrently can be counted differently per run.
    let verdicts = |json: &Value| -> BTreeMap<PathBuf, BTreeMap<u32, bool>> {
        reported(json)
            .into_iter()
            .map(|(path, lines)| (path, lines.into_iter().map(|(l, h)| (l, h > 0)).collect()))
            .collect()
    };
    let dwarf5 = verdicts(run.json.as_ref().unwrap());
    let dwarf4 = verdicts(cached("ledger").json.as_ref().unwrap());
    assert_eq!(dwarf5, dwarf4);
    let _ = std::fs::remove_dir_all(target);
}

#[test]
fn exclude_tests_leaves_test_code_out() {
    let run = coverlay_run("ledger", &["--exclude-tests", "--count-cap", "1000"], &[]);
    assert!(run.output.status.success(), "{}", text(&run.output));
    let excluded = reported(run.json.as_ref().unwrap());
    let all = reported(cached("ledger").json.as_ref().unwrap());
    assert!(!excluded
        .keys()
        .any(|p| p.starts_with(fixture("ledger").join("tests"))));
    let lib = fixture("ledger").join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let tests_start = source
        .lines()
        .position(|l| l.contains("mod tests"))
        .expect("ledger has a tests module") as u32;
    assert!(excluded[&lib].keys().all(|&line| line < tests_start));
    assert!(all[&lib].keys().any(|&line| line > tests_start));
    assert_eq!(
        excluded[&lib],
        all[&lib]
            .iter()
            .filter(|(&l, _)| l < tests_start)
            .map(|(&l, &h)| (l, h))
            .collect()
    );
}

/// A module file declared under `#[cfg(test)]` is test code throughout, with the modules it
/// declares: the tests a macro generates there too.
#[test]
fn exclude_tests_leaves_test_module_files_out() {
    let run = coverlay_run("verdicts", &["--exclude-tests"], &[]);
    assert!(run.output.status.success(), "{}", text(&run.output));
    let excluded = reported(run.json.as_ref().unwrap());
    let all = reported(cached("verdicts").json.as_ref().unwrap());
    let generated = fixture("verdicts").join("src/generated.rs");
    let helpers = fixture("verdicts").join("src/generated/helpers.rs");
    for file in [&generated, &helpers] {
        assert!(all.contains_key(file), "{} is reported", file.display());
        assert!(
            !excluded.contains_key(file),
            "{} is left out",
            file.display()
        );
    }
    let lib = fixture("verdicts").join("src/lib.rs");
    assert!(excluded[&lib].len() < all[&lib].len());
}

#[test]
fn cargo_arguments_pass_through() {
    let run = coverlay_run("twocrates", &["--", "-p", "mathx"], &[]);
    assert!(run.output.status.success(), "{}", text(&run.output));
    let files = reported(run.json.as_ref().unwrap());
    assert!(!files.is_empty());
    assert!(
        files
            .keys()
            .all(|p| p.starts_with(fixture("twocrates").join("mathx"))),
        "{files:?}"
    );
}

#[test]
fn a_crate_that_does_not_compile_shows_the_compiler_error_and_fails_cleanly() {
    let run = coverlay_run("broken", &[], &[]);
    assert_eq!(run.output.status.code(), Some(2), "{}", text(&run.output));
    let stderr = String::from_utf8_lossy(&run.output.stderr);
    assert!(
        stderr.contains("error[E0308]: mismatched types"),
        "{stderr}"
    );
    assert!(stderr.contains("src/lib.rs"), "{stderr}");
    assert!(run.json.is_none() && run.lcov.is_none());
}

#[test]
fn a_missing_workspace_gets_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_coverlay"))
        .args(["run", "/nonexistent/crate"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/crate"), "{stderr}");
}

#[test]
fn a_manifest_cargo_cannot_read_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let run = |path: &Path| {
        let output = Command::new(env!("CARGO_BIN_EXE_coverlay"))
            .arg("run")
            .arg(path)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = run(dir.path());
    assert!(stderr.contains("has no Cargo.toml"), "{stderr}");
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"x\"\ngarbage [[[\n",
    )
    .unwrap();
    let stderr = run(dir.path());
    assert!(
        stderr.contains("cargo cannot read the workspace"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Cargo.toml:3"),
        "cargo's own words: {stderr}"
    );
    assert!(!stderr.contains("has no Cargo.toml"), "{stderr}");
}

#[test]
fn a_moved_workspace_whose_build_names_the_old_paths_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let (before, after) = (dir.path().join("before"), dir.path().join("after"));
    lsp_support::copy_tree(&fixture("twocrates"), &before);
    let run = |root: &Path| {
        let json = root.join("target/report.json");
        let output = Command::new(env!("CARGO_BIN_EXE_coverlay"))
            .args(["run", "--no-doctests", "-q", "--json"])
            .arg(&json)
            .arg(root)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        (output, report["covered"].as_u64().unwrap())
    };
    let (first, covered) = run(&before);
    assert!(!text(&first).contains("no source file"), "{}", text(&first));
    assert!(covered > 0);
    // Moved with its target directory: cargo finds the build fresh, while its debug information
    // still names the old paths. coverlay cleans the workspace's crates and builds them again.
    std::fs::rename(&before, &after).unwrap();
    let (moved, covered_after) = run(&after);
    let stderr = String::from_utf8_lossy(&moved.stderr);
    assert!(
        stderr.contains("rebuilding the workspace's crates"),
        "{stderr}"
    );
    assert!(
        stderr.contains("deps/mathx-"),
        "names the executables: {stderr}"
    );
    assert!(!stderr.contains("not measured"), "{stderr}");
    assert_eq!(
        covered_after, covered,
        "the same coverage as before the move"
    );
    let (again, _) = run(&after);
    assert!(!text(&again).contains("no source file"), "{}", text(&again));
}

/// The workspace the last run read is used to start the build while `cargo metadata` runs; when
/// the workspace has changed since (a member more), the run starts over with the one read now.
#[test]
fn a_workspace_changed_since_the_last_run_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ws");
    lsp_support::copy_tree(&fixture("twocrates"), &root);
    let elsewhere = dir.path().join("elsewhere");
    let run_with = |target_dir: Option<&Path>| {
        let json = dir.path().join("report.json");
        let mut command = Command::new(env!("CARGO_BIN_EXE_coverlay"));
        command
            .args(["run", "--no-doctests", "-q", "--json"])
            .arg(&json)
            .arg(&root)
            .env("COVERLAY_LOG", "coverlay=debug");
        if let Some(target_dir) = target_dir {
            command.env("CARGO_TARGET_DIR", target_dir);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let mut packages: Vec<String> = report["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        packages.sort();
        (
            String::from_utf8_lossy(&output.stderr).into_owned(),
            packages,
        )
    };
    let run = || run_with(None);
    let (_, first) = run();
    assert_eq!(first, ["app", "mathx"]);
    assert!(root.join("target/coverlay/workspace.json").exists());
    let (again, same) = run();
    assert_eq!(same, first);
    assert!(!again.contains("workspace changed"), "{again}");
    // A third member: the remembered workspace is not the one cargo reads now.
    std::fs::create_dir_all(root.join("extra/src")).unwrap();
    std::fs::write(
        root.join("extra/Cargo.toml"),
        "[package]\nname = \"extra\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("extra/src/lib.rs"),
        "pub fn one() -> u32 {\n    1\n}\n\n#[test]\nfn is_one() {\n    assert_eq!(one(), 1);\n}\n",
    )
    .unwrap();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    std::fs::write(
        root.join("Cargo.toml"),
        manifest.replace(r#"["mathx", "app"]"#, r#"["mathx", "app", "extra"]"#),
    )
    .unwrap();
    let (changed, more) = run();
    assert!(changed.contains("workspace changed"), "{changed}");
    assert_eq!(more, ["app", "extra", "mathx"]);
    // A target directory elsewhere: nothing there to remember the workspace by, and the
    // workspace kept under `target/` would be wrong at every run, so it goes.
    let (moved, _) = run_with(Some(&elsewhere));
    assert!(moved.contains("workspace changed"), "{moved}");
    assert!(!root.join("target/coverlay/workspace.json").exists());
    let (again, _) = run_with(Some(&elsewhere));
    assert!(!again.contains("workspace changed"), "{again}");
    assert!(elsewhere.join("coverlay").is_dir());
}

#[test]
fn more_threads_at_once_than_counter_lanes_finish_and_say_so() {
    let run = coverlay_run("crowd", &["--no-doctests"], &[]);
    assert_eq!(run.output.status.code(), Some(0), "{}", text(&run.output));
    let stderr = String::from_utf8_lossy(&run.output.stderr);
    assert!(
        stderr.contains("more threads at once than counter lanes (256)"),
        "{stderr}"
    );
    let json = run.json.as_ref().unwrap();
    let lines = json["files"][0]["lines"].as_array().unwrap();
    // `touch`'s body ran in every thread: the threads beyond the lanes share one, whose count
    // may come out low, but never zero.
    let touch = lines.iter().find(|l| l["line"] == 21).unwrap();
    let hits = touch["hits"].as_u64().unwrap();
    assert!((1..=300).contains(&hits), "{touch}");
    assert_eq!(json["tests"][0]["outcome"], "passed");
}

/// Processes whose executable lies under `dir`.
fn processes_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(exe) = std::fs::read_link(entry.path().join("exe")) {
            if exe.starts_with(dir) {
                found.push(format!(
                    "{} {}",
                    entry.file_name().to_string_lossy(),
                    exe.display()
                ));
            }
        }
    }
    found
}

#[test]
fn misbehaving_tests_are_outcomes_and_leave_nothing_behind() {
    let run = coverlay_run("faults", &["--timeout", "3"], &[]);
    assert_eq!(run.output.status.code(), Some(101), "{}", text(&run.output));
    let json = run
        .json
        .as_ref()
        .expect("coverage written although tests failed");
    let outcome = |name: &str| {
        json["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == format!("faults::tests::{name}"))
            .unwrap_or_else(|| panic!("{name} reported"))["outcome"]
            .clone()
    };
    let crashed = |signal: i32| serde_json::json!({"crashed": {"signal": signal}});
    assert_eq!(outcome("segfaults"), crashed(libc::SIGSEGV));
    assert_eq!(outcome("aborts"), crashed(libc::SIGABRT));
    assert_eq!(outcome("overflows_stack"), crashed(libc::SIGABRT));
    assert_eq!(outcome("exits_early"), "failed");
    assert_eq!(outcome("loops_forever"), "timed_out");
    for passing in [
        "handles_sigusr1",
        "forks",
        "execs",
        "spawns_64_threads",
        "leaves_detached_thread",
        "passes_plainly",
    ] {
        assert_eq!(outcome(passing), "passed", "{passing}");
    }
    // The coverage of every test is kept: `passes_plainly` runs after the crashes and the
    // timeout (tests run in name order), `child_work` only in a forked child, `bump` in threads.
    let lib = fixture("faults").join("src/lib.rs");
    let lines = &reported(json)[&lib];
    let source = std::fs::read_to_string(&lib).unwrap();
    let line_of =
        |needle: &str| source.lines().position(|l| l.contains(needle)).unwrap() as u32 + 1;
    for needle in [
        "std::hint::black_box(42)",
        "value * 2",
        "counter.fetch_add(1",
    ] {
        assert!(
            lines[&line_of(needle)] > 0,
            "`{needle}` not covered: {lines:?}"
        );
    }
    let stdout = String::from_utf8_lossy(&run.output.stdout);
    assert!(
        stdout.contains("test tests::segfaults crashed (signal 11)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the test process exited with code 3 during this test"),
        "{stdout}"
    );
    let left = processes_under(&fixture("faults"));
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

/// A crate whose build script would take a minute: only killing the build ends a run early.
fn slow_build_crate() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("src")).unwrap();
    std::fs::write(
        root.join("Cargo.toml"),
        "[package]\nname = \"slowbuild\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("build.rs"),
        "fn main() { std::thread::sleep(std::time::Duration::from_secs(60)); }\n",
    )
    .unwrap();
    std::fs::write(root.join("src/lib.rs"), "#[test]\nfn nothing() {}\n").unwrap();
    dir
}

#[test]
fn a_cancelled_build_is_killed_with_everything_it_started() {
    let dir = slow_build_crate();
    let root = dir.path();
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let options = coverlay::run::RunOptions {
        cancel: Some(cancel.clone()),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let result = std::thread::scope(|scope| {
        let run = scope.spawn(|| coverlay::run::run(root, &options, &|_| {}));
        // Cancel once the build script runs.
        while processes_under(root).is_empty() && started.elapsed().as_secs() < 50 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        cancel.store(true, std::sync::atomic::Ordering::Release);
        run.join().unwrap()
    });
    assert!(
        matches!(result, Err(coverlay::run::RunError::Cancelled)),
        "{:?}",
        result.err()
    );
    assert!(
        started.elapsed().as_secs() < 50,
        "the run ended with the build script, not by the kill"
    );
    // SIGKILL is delivered at once, but a process takes a moment to go.
    let gone = std::time::Instant::now();
    while !processes_under(root).is_empty() && gone.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(processes_under(root), Vec::<String>::new());
}

#[test]
fn an_interrupted_run_stops_its_build_and_exits_130() {
    // Ctrl-C reaches only coverlay (cargo runs in a process group of its own): the run must stop
    // the build itself. A build script that would take a minute shows whether it did.
    let dir = slow_build_crate();
    let root = dir.path();
    let started = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_coverlay"))
        .arg("run")
        .arg(root)
        .arg("-q")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while processes_under(root).is_empty() && started.elapsed().as_secs() < 50 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        started.elapsed().as_secs() < 50,
        "the run ended with the build script, not by the kill"
    );
    let gone = std::time::Instant::now();
    while !processes_under(root).is_empty() && gone.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(processes_under(root), Vec::<String>::new());
}

/// Examples are no test executables: `cargo test` builds them by default (only to see that they
/// compile), coverlay does not, or each save would relink them before its tests could run.
#[test]
fn examples_are_not_built() {
    let examples = fixture("ledger").join("target/coverlay/debug/examples");
    let _ = std::fs::remove_dir_all(&examples);
    let run = coverlay_run("ledger", &["--no-doctests", "--no-branches"], &[]);
    assert!(run.output.status.success(), "{}", text(&run.output));
    assert!(run.json.is_some(), "{}", text(&run.output));
    let built: Vec<_> = std::fs::read_dir(&examples)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    assert!(built.is_empty(), "examples built: {built:?}");
}
