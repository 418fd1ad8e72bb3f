//! Reads what a libtest harness printed: each test's outcome and, for failures, the captured
//! output with the panic message, as `cargo test` shows them.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed,
    Ignored,
    /// The executable was killed at its deadline while this test ran (or had not finished).
    TimedOut,
    /// The whole executable died from a signal while this test ran.
    Crashed {
        signal: i32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestResult {
    pub name: String,
    pub outcome: Outcome,
    /// For failures: the test's captured stdout, which holds the panic message and location.
    pub message: Option<String>,
}

/// Parses libtest's default ("pretty") output. Tests that were announced (`test x ... `) but got no
/// verdict are returned with `unfinished` as their outcome: the process died under them.
pub fn parse(stdout: &str, unfinished: Outcome) -> Vec<TestResult> {
    let mut results: Vec<TestResult> = Vec::new();
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("test ") else {
            continue;
        };
        let Some((name, verdict)) = rest.split_once(" ... ") else {
            continue;
        };
        let name = name
            .strip_suffix(" - should panic")
            .unwrap_or(name)
            .to_string();
        let outcome = match verdict.trim() {
            "ok" => Outcome::Passed,
            "FAILED" => Outcome::Failed,
            v if v.starts_with("ignored") => Outcome::Ignored,
            _ => unfinished.clone(),
        };
        results.push(TestResult {
            name,
            outcome,
            message: None,
        });
    }
    for result in results.iter_mut().filter(|r| r.outcome == Outcome::Failed) {
        result.message = failure_section(stdout, &result.name);
    }
    results
}

/// The `---- name stdout ----` block that libtest prints for a failed test.
fn failure_section(stdout: &str, name: &str) -> Option<String> {
    let header = format!("---- {name} stdout ----\n");
    let start = stdout.find(&header)? + header.len();
    let body = &stdout[start..];
    let end = [body.find("\n---- "), body.find("\n\nfailures:\n")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(body.len());
    Some(body[..end].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "
running 4 tests
test tests::deposit ... ok
test tests::overdraw - should panic ... ok
test tests::slow ... ignored, takes an hour
test tests::broken ... FAILED

failures:

---- tests::broken stdout ----

thread 'tests::broken' panicked at src/lib.rs:40:9:
assertion `left == right` failed
  left: 1
 right: 2
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace


failures:
    tests::broken

test result: FAILED. 2 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s
";

    #[test]
    fn reads_every_outcome_and_the_failure_message() {
        let results = parse(OUTPUT, Outcome::Crashed { signal: 11 });
        let outcomes: Vec<_> = results
            .iter()
            .map(|r| (r.name.as_str(), r.outcome.clone()))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("tests::deposit", Outcome::Passed),
                ("tests::overdraw", Outcome::Passed),
                ("tests::slow", Outcome::Ignored),
                ("tests::broken", Outcome::Failed),
            ]
        );
        let message = results[3].message.as_deref().unwrap();
        assert!(message.starts_with("thread 'tests::broken' panicked at src/lib.rs:40:9:"));
        assert!(message.ends_with("display a backtrace"));
    }

    #[test]
    fn a_test_without_verdict_died_with_the_process() {
        let results = parse(
            "running 2 tests\ntest a ... ok\ntest b ... ",
            Outcome::TimedOut,
        );
        assert_eq!(results[1].name, "b");
        assert_eq!(results[1].outcome, Outcome::TimedOut);
    }
}
