//! `coverlay lsp` over stdio, driven by a scripted client (tests/lsp_support): the overlay of the
//! `ledger` fixture (diagnostics, inlay hints, code lenses), a save that covers a missed function,
//! commands, malformed input, a save that reruns only the tests it can affect, and a shutdown that
//! leaves no process behind.

mod lsp_support;

use std::path::Path;
use std::time::Duration;

use lsp_support::{
    copy_fixture, end_of_run, from_scratch, leftover_processes, saved_overlay,
    selection_after_save, uri, Client,
};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_coverlay");
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

fn full_capabilities() -> Value {
    json!({
        "window": {"workDoneProgress": true},
        "workspace": {"inlayHint": {"refreshSupport": true}, "codeLens": {"refreshSupport": true}},
        "textDocument": {"inlayHint": {}, "codeLens": {}, "publishDiagnostics": {"tagSupport": {"valueSet": [1, 2]}}}
    })
}

/// 0-based line of the first line of `text` containing `needle`.
/// Inlay hint params for whole lines `start..end` of `uri`.
fn hint_range(uri: &impl serde::Serialize, start: u64, end: u64) -> Value {
    json!({"textDocument": {"uri": uri},
           "range": {"start": {"line": start, "character": 0}, "end": {"line": end, "character": 0}}})
}

fn line_of(text: &str, needle: &str) -> u64 {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the file")) as u64
}

fn messages(diagnostics: &[Value]) -> Vec<String> {
    diagnostics
        .iter()
        .map(|d| d["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn mentions(diagnostics: &[Value], what: &str) -> bool {
    messages(diagnostics).iter().any(|m| m.contains(what))
}

#[test]
fn overlay_of_a_fixture_follows_a_save() {
    let dir = copy_fixture("ledger");
    let root = dir.path();
    let lib = root.join("src/lib.rs");
    let lib_uri = uri(&lib);
    let text = std::fs::read_to_string(&lib).unwrap();

    let mut client = Client::start(BIN, root);
    let init = client.initialize(root, json!({}), full_capabilities());
    let caps = &init["capabilities"];
    assert_eq!(caps["inlayHintProvider"], json!({"resolveProvider": true}));
    assert!(caps["codeLensProvider"].is_object());
    assert!(caps["executeCommandProvider"]["commands"]
        .as_array()
        .unwrap()
        .contains(&json!("coverlay.rerunTest")));
    client.open(&lib);

    // Diagnostics: one per uncovered range, named after the function.
    let diagnostics =
        client.wait_diagnostics(&lib_uri, RUN_TIMEOUT, |d| mentions(d, "close_account"));
    let close = diagnostics
        .iter()
        .find(|d| d["message"] == "not covered by any test (fn close_account)")
        .unwrap_or_else(|| panic!("{:#?}", messages(&diagnostics)));
    assert_eq!(close["source"], "coverlay");
    assert_eq!(close["severity"], 4, "Hint by default");
    assert_eq!(close["tags"], json!([1]), "tagged unnecessary");
    let close_fn = line_of(&text, "pub fn close_account");
    assert_eq!(close["range"]["start"]["line"], close_fn);
    assert_eq!(
        close["range"]["start"]["character"], 4,
        "starts at the code, not the indent"
    );
    assert_eq!(
        close["range"]["end"]["line"],
        line_of(&text, "self.open = false")
    );
    let fee = line_of(&text, "self.fees += amount / 100");
    assert!(diagnostics
        .iter()
        .any(|d| d["range"]["start"]["line"] == fee
            && d["range"]["end"]["line"] == fee
            && d["message"] == "not covered by any test (fn withdraw)"));
    assert!(mentions(&diagnostics, "(fn classify)"));
    let uncovered = diagnostics.iter().filter(|d| d["code"] == "uncovered");
    assert_eq!(uncovered.count(), 3, "{:#?}", messages(&diagnostics));
    // Branch coverage: `withdraw`'s fee condition ran, but was never true, and `classify`'s
    // `match` never took its last arm. Same severity, not faded (the line ran).
    let fee_condition = line_of(&text, "if amount >= 1_000");
    let branches: Vec<&Value> = diagnostics
        .iter()
        .filter(|d| d["code"] == "branch")
        .collect();
    assert_eq!(branches.len(), 2, "{:#?}", messages(&diagnostics));
    assert_eq!(branches[0]["message"], "condition never true");
    assert_eq!(branches[0]["range"]["start"]["line"], fee_condition);
    let large = line_of(&text, "_ => \"large\"") + 1;
    assert_eq!(
        branches[1]["message"],
        format!("`match` arm at line {large} never taken")
    );
    assert_eq!(
        branches[1]["range"]["start"]["line"],
        line_of(&text, "match amount {")
    );
    for branch in branches {
        assert_eq!(branch["severity"], 4);
        assert!(branch.get("tags").is_none_or(Value::is_null));
    }

    // Progress and refresh requests went out, as the client declared support.
    client.wait_for("a progress token", Duration::from_secs(5), |m| {
        m["method"] == "window/workDoneProgress/create"
    });
    client.wait_for("an inlay hint refresh", Duration::from_secs(5), |m| {
        m["method"] == "workspace/inlayHint/refresh"
    });
    client.wait_for("a code lens refresh", Duration::from_secs(5), |m| {
        m["method"] == "workspace/codeLens/refresh"
    });

    // Inlay hints: at the end of covered lines only, within the requested range.
    let hints = client
        .request("textDocument/inlayHint", hint_range(&lib_uri, 0, 400))
        .unwrap();
    let hints = hints.as_array().unwrap();
    let hint_at = |line: u64| hints.iter().find(|h| h["position"]["line"] == line);
    let deposit_line = line_of(&text, "self.balance += amount;");
    let hint = hint_at(deposit_line).expect("a hint on a covered line");
    let label = hint["label"].as_str().unwrap();
    // `×N` exactly, or `≥N×` where part of the line was counted only up to the int3 cap.
    let capped = label.starts_with('≥');
    assert!(capped || label.starts_with('×'), "{label}");
    let count: u64 = label.trim_matches(['≥', '×']).parse().unwrap();
    assert!(count >= 4, "deposit runs at least 4 times: {label}");
    assert_eq!(
        hint["position"]["character"],
        text.lines().nth(deposit_line as usize).unwrap().len() as u64
    );
    let tooltip = hint["tooltip"]["value"].as_str().unwrap();
    // The ledger's counts stay below 1,000: no digit grouping in the tooltip.
    let at_least = if capped { "at least " } else { "" };
    assert!(
        tooltip.starts_with(&format!("executed {at_least}{count} times")),
        "{tooltip}"
    );
    if tooltip.contains(", by ") {
        // Each test is listed with its own count (`×N`, or `≥N×`).
        assert!(
            tooltip.contains("- `ledger::tests::deposit_adds_to_the_balance` "),
            "{tooltip}"
        );
    }
    assert!(hint_at(close_fn).is_none() && hint_at(fee).is_none());
    assert!(hint_at(line_of(&text, "pub struct Ledger")).is_none());
    // A line whose condition went one way only says so after its count, and its sides in the
    // tooltip; a line whose branches went both ways shows its count alone.
    let partial = hint_at(fee_condition).expect("a hint on the fee condition");
    let label = partial["label"].as_str().unwrap();
    assert!(label.ends_with(" · 1/2 branches"), "{label}");
    let tooltip = partial["tooltip"]["value"].as_str().unwrap();
    assert!(
        tooltip.contains("branches: 1 of 2 sides ran:\n- `if` condition: true ×0, false ×"),
        "{tooltip}"
    );
    // A `match` with an arm never taken: its arms count as branches, each listed with its count.
    let arms = hint_at(line_of(&text, "match amount {")).expect("a hint on the match");
    assert!(
        arms["label"].as_str().unwrap().ends_with(" · 1/2 branches"),
        "{arms}"
    );
    let (zero, large) = (
        line_of(&text, "0 => \"zero\"") + 1,
        line_of(&text, "_ => \"large\"") + 1,
    );
    assert!(
        arms["tooltip"]["value"]
            .as_str()
            .unwrap()
            .ends_with(&format!("- `match`: line {zero} ×1, line {large} ×0")),
        "{arms}"
    );
    let both = hint_at(line_of(&text, "if amount > self.balance")).unwrap();
    assert!(
        !both["label"].as_str().unwrap().contains("branches"),
        "{both}"
    );

    let window = client
        .request("textDocument/inlayHint", hint_range(&lib_uri, 25, 30))
        .unwrap();
    let window = window.as_array().unwrap();
    assert!(!window.is_empty());
    assert!(window
        .iter()
        .all(|h| (25..=30).contains(&h["position"]["line"].as_u64().unwrap())));

    // Code lenses: coverage over functions, outcome and a rerun command over tests.
    let lenses = client
        .request(
            "textDocument/codeLens",
            json!({"textDocument": {"uri": lib_uri}}),
        )
        .unwrap();
    let lenses = lenses.as_array().unwrap();
    let lens_at = |line: u64| {
        lenses
            .iter()
            .find(|l| l["range"]["start"]["line"] == line)
            .unwrap_or_else(|| panic!("no lens on line {line}: {lenses:#?}"))
    };
    assert_eq!(lens_at(close_fn)["command"]["title"], "not covered");
    let deposit = lens_at(line_of(&text, "pub fn deposit"))["command"]["title"]
        .as_str()
        .unwrap()
        .to_owned();
    // No branch of its own (`assert!`'s is inside a macro): no branch count.
    assert!(
        deposit.starts_with("4/4 lines · ") && !deposit.contains("branches"),
        "{deposit}"
    );
    let withdraw = lens_at(line_of(&text, "pub fn withdraw"))["command"]["title"]
        .as_str()
        .unwrap()
        .to_owned();
    // Its two `if`s: one went both ways, the fee condition never held.
    assert!(
        withdraw.starts_with("8/9 lines · 3/4 branches · "),
        "{withdraw}"
    );
    let test_lens = &lens_at(line_of(&text, "fn deposit_adds_to_the_balance"))["command"];
    assert!(
        test_lens["title"]
            .as_str()
            .unwrap()
            .starts_with("✓ passed · "),
        "{test_lens}"
    );
    assert_eq!(test_lens["command"], "coverlay.rerunTest");
    assert_eq!(
        test_lens["arguments"],
        json!(["ledger::tests::deposit_adds_to_the_balance"])
    );

    // Typing two lines above, unsaved (incremental changes: a line, then another after it):
    // the overlay moves with the text, the edit is stale, diagnostics carry the version.
    let impl_line = line_of(&text, "impl Ledger {");
    let at = |line: u64, character: u64| json!({"line": line, "character": character});
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": lib_uri, "version": 7}, "contentChanges": [
            {"range": {"start": at(impl_line, 0), "end": at(impl_line, 0)}, "text": "// note\n"},
            {"range": {"start": at(impl_line + 1, 0), "end": at(impl_line + 1, 0)}, "text": "// more\n"},
        ]}),
    );
    let published = client.wait_for("shifted diagnostics", Duration::from_secs(10), |m| {
        m["method"] == "textDocument/publishDiagnostics"
            && m["params"]["uri"] == lib_uri
            && m["params"]["diagnostics"].as_array().is_some_and(|d| {
                d.iter()
                    .any(|d| d["range"]["start"]["line"] == close_fn + 2)
            })
    });
    assert_eq!(published["params"]["version"], 7);
    let shifted = published["params"]["diagnostics"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(shifted.len(), 5, "{:#?}", messages(&shifted));
    let hints = client
        .request("textDocument/inlayHint", hint_range(&lib_uri, 0, 400))
        .unwrap();
    let hint_lines: Vec<u64> = hints
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["position"]["line"].as_u64().unwrap())
        .collect();
    assert!(hint_lines.contains(&(deposit_line + 2)), "{hint_lines:?}");
    assert!(!hint_lines.contains(&(close_fn + 2)));
    assert!(!hint_lines.contains(&impl_line) && !hint_lines.contains(&(impl_line + 1)));

    // A save that makes a new test call close_account: its diagnostic disappears.
    let covered = format!(
        "{text}\n#[cfg(test)]\nmod closing {{\n    #[test]\n    fn closing_pays_out() {{\n        \
         let mut ledger = super::Ledger::new();\n        ledger.deposit(5);\n        \
         assert_eq!(ledger.close_account(), 5);\n    }}\n}}\n"
    );
    client.edit_and_save(&lib, 2, &covered);
    let after = client.wait_diagnostics(&lib_uri, RUN_TIMEOUT, |d| {
        !mentions(d, "close_account") && mentions(d, "(fn withdraw)")
    });
    // withdraw's and classify's uncovered lines, the fee condition still never true and
    // classify's last arm never taken.
    assert_eq!(after.len(), 4, "{:#?}", messages(&after));
    assert!(after.iter().any(|d| d["message"] == "condition never true"));
    assert!(
        root.join("target/coverlay/coverage.json").exists(),
        "the store is saved after each run"
    );

    // A save that does not compile: the first compiler error is shown, the overlay stays.
    client.edit_and_save(
        &lib,
        3,
        &format!("{covered}\nfn broken() -> u32 {{ \"text\" }}\n"),
    );
    let message = client.wait_for("the build failure", RUN_TIMEOUT, |m| {
        m["method"] == "window/showMessage"
    });
    assert_eq!(message["params"]["type"], 1);
    let text_shown = message["params"]["message"].as_str().unwrap();
    assert!(text_shown.contains("do not compile"), "{text_shown}");
    assert!(text_shown.contains("error[E0308]"), "{text_shown}");
    let hints = client
        .request("textDocument/inlayHint", hint_range(&lib_uri, 0, 400))
        .unwrap();
    assert!(!hints.as_array().unwrap().is_empty());

    // Commands: write lcov, then clear the overlay.
    let written = client
        .request(
            "workspace/executeCommand",
            json!({"command": "coverlay.writeLcov", "arguments": []}),
        )
        .unwrap();
    let lcov = std::fs::read_to_string(written.as_str().unwrap()).unwrap();
    assert!(lcov.contains(&format!("SF:{}", lib.display())), "{lcov}");
    let unknown = client
        .request(
            "workspace/executeCommand",
            json!({"command": "coverlay.nope"}),
        )
        .unwrap_err();
    assert_eq!(unknown["code"], -32602);
    client
        .request(
            "workspace/executeCommand",
            json!({"command": "coverlay.clearCoverage"}),
        )
        .unwrap();
    client.wait_diagnostics(&lib_uri, Duration::from_secs(10), <[Value]>::is_empty);

    let status = client.shutdown();
    assert!(status.success(), "{status:?}");
    assert_eq!(leftover_processes(root), Vec::<String>::new());
}

#[test]
fn a_save_reruns_only_the_tests_it_can_affect_and_the_overlay_equals_a_full_run() {
    let dir = copy_fixture("ledger");
    let root = dir.path();
    let lib = root.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    let mut client = Client::start(BIN, root);
    client.initialize(root, json!({}), full_capabilities());
    client.open(&lib);
    end_of_run(&mut client);

    // A comment: no test can be affected.
    let commented = text.replacen("impl Ledger {", "// ledgers\nimpl Ledger {", 1);
    client.edit_and_save(&lib, 2, &commented);
    let message = selection_after_save(&mut client);
    assert!(message.contains("nothing to rerun"), "{message}");

    // One more statement in `withdraw`, which three of the nine tests run: those three rerun,
    // and every line below moves down one.
    let edited = commented.replacen(
        "self.withdrawals += 1; //~ hit",
        "self.withdrawals += 1; //~ hit\n            self.withdrawals += 0;",
        1,
    );
    client.edit_and_save(&lib, 3, &edited);
    let message = selection_after_save(&mut client);
    assert!(message.contains("rerunning 3 of 9 tests"), "{message}");
    end_of_run(&mut client);

    // Rerunning one test leaves the others' results as they were.
    let lib_uri = uri(&lib);
    let lens_titles = |client: &mut Client| -> Vec<String> {
        let lenses = client
            .request(
                "textDocument/codeLens",
                json!({"textDocument": {"uri": lib_uri}}),
            )
            .unwrap();
        lenses
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["command"]["title"].as_str().map(str::to_owned))
            .filter(|t| t.contains("passed") || t.contains("ignored") || t.contains("failed"))
            .collect()
    };
    let before = lens_titles(&mut client);
    assert!(
        before.len() >= 5 && before.iter().all(|t| t.starts_with("✓ passed")),
        "{before:?}"
    );
    client
        .request(
            "workspace/executeCommand",
            json!({"command": "coverlay.rerunTest", "arguments": ["ledger::tests::double_doubles"]}),
        )
        .unwrap();
    end_of_run(&mut client);
    let after = lens_titles(&mut client);
    assert_eq!(after.len(), before.len());
    assert!(after.iter().all(|t| t.starts_with("✓ passed")), "{after:?}");
    let status = client.shutdown();
    assert!(status.success(), "{status:?}");

    let live = saved_overlay(root);
    let (code, scratch) = from_scratch(BIN, root);
    assert_eq!(code, Some(0), "the full run passes");
    assert_eq!(live.1, scratch.1, "outcomes");
    assert_eq!(live.0.len(), scratch.0.len(), "coverable lines");
    for (l, s) in live.0.iter().zip(&scratch.0) {
        assert_eq!(l, s, "line as shown after the partial run vs a full run");
    }
}

#[test]
fn clients_that_declare_it_get_coverlays_own_protocol() {
    let dir = copy_fixture("ledger");
    let root = dir.path();
    let lib = root.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    let mut capabilities = full_capabilities();
    capabilities["experimental"] = json!({"coverlay": true});
    let mut client = Client::start(BIN, root);
    client.initialize(root, json!({}), capabilities);
    let update = client.wait_for("coverlay/didUpdate", RUN_TIMEOUT, |m| {
        m["method"] == "coverlay/didUpdate"
    });
    let update = &update["params"];
    assert!(update["version"].as_u64().unwrap() > 0);
    let tests = update["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 9);
    let deposit = tests
        .iter()
        .find(|t| t["id"] == "ledger::tests::deposit_adds_to_the_balance")
        .unwrap();
    assert_eq!(deposit["label"], "deposit_adds_to_the_balance");
    assert_eq!(deposit["uri"], uri(&lib));
    assert_eq!(
        deposit["line"],
        line_of(&text, "fn deposit_adds_to_the_balance")
    );
    assert_eq!(deposit["outcome"], "passed");
    let lib_totals = update["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["uri"] == uri(&lib))
        .unwrap();
    assert!(lib_totals["covered"].as_u64().unwrap() < lib_totals["coverable"].as_u64().unwrap());

    // One file's lines, for all tests and for one: 0-based, coverable lines only.
    let all = client
        .request("coverlay/fileCoverage", json!({"uri": uri(&lib)}))
        .unwrap();
    let hits_at = |payload: &Value, needle: &str| {
        let line = line_of(&text, needle);
        payload["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["line"] == line)
            .map(|l| l["hits"].as_u64().unwrap())
    };
    assert!(hits_at(&all, "self.balance += amount;").unwrap() >= 4);
    assert_eq!(hits_at(&all, "self.fees += amount / 100"), Some(0));
    assert_eq!(hits_at(&all, "pub struct Ledger"), None, "not coverable");
    // `classify`'s `match`: its arms by their 0-based lines, the last never taken.
    let match_line = line_of(&text, "match amount {");
    let on_match = all["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["line"] == match_line)
        .unwrap();
    assert_eq!(
        on_match["matches"],
        json!([{"arms": [
            {"line": line_of(&text, "0 => \"zero\""), "hits": 1},
            {"line": line_of(&text, "_ => \"large\""), "hits": 0},
        ]}]),
        "{on_match}"
    );
    let one = client
        .request(
            "coverlay/fileCoverage",
            json!({"uri": uri(&lib), "testId": "ledger::tests::deposit_adds_to_the_balance"}),
        )
        .unwrap();
    assert_eq!(hits_at(&one, "self.balance += amount;"), Some(2));
    assert_eq!(hits_at(&one, "if amount > self.balance {"), Some(0));
    let unknown = client
        .request(
            "coverlay/fileCoverage",
            json!({"uri": uri(&lib), "testId": "ledger::nope"}),
        )
        .unwrap_err();
    assert_eq!(unknown["code"], -32602);
    assert!(client.shutdown().success());

    // A client that did not ask never hears of it.
    let mut client = Client::start(BIN, root);
    client.initialize(root, json!({}), full_capabilities());
    end_of_run(&mut client);
    let refused = client
        .request("coverlay/fileCoverage", json!({"uri": uri(&lib)}))
        .unwrap_err();
    assert_eq!(refused["code"], -32601);
    client.drain();
    assert!(client
        .log
        .iter()
        .all(|m| m["method"] != "coverlay/didUpdate"));
    assert!(client.shutdown().success());
}

#[test]
fn files_changed_while_the_server_was_down_show_nothing_until_rerun() {
    let dir = copy_fixture("ledger");
    let root = dir.path();
    let lib = root.join("src/lib.rs");
    let lib_uri = uri(&lib);
    let mut client = Client::start(BIN, root);
    client.initialize(root, json!({}), full_capabilities());
    // Three uncovered ranges, the fee condition that was never true and classify's `match` arm
    // never taken.
    client.wait_diagnostics(&lib_uri, RUN_TIMEOUT, |d| d.len() == 5);
    end_of_run(&mut client);
    assert!(client.shutdown().success());

    // Two lines added above everything while no server runs.
    let text = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, format!("// one\n// two\n{text}")).unwrap();
    let mut client = Client::start(BIN, root);
    client.initialize(root, json!({}), full_capabilities());
    // The saved results come first: nothing for the changed file, whose lines moved...
    let first = client.wait_diagnostics(&lib_uri, RUN_TIMEOUT, |_| true);
    assert_eq!(first, Vec::<Value>::new());
    // ...then the run measures it again.
    let again = client.wait_diagnostics(&lib_uri, RUN_TIMEOUT, |d| d.len() == 5);
    let close_fn = line_of(&format!("// one\n// two\n{text}"), "pub fn close_account");
    assert!(again
        .iter()
        .any(|d| d["range"]["start"]["line"] == close_fn));
    assert!(client.shutdown().success());
}

#[test]
fn a_target_directory_moved_while_the_server_was_down_is_followed_and_said() {
    let dir = copy_fixture("ledger");
    let root = dir.path();
    let mut client = Client::start(BIN, root);
    client.initialize(root, json!({}), full_capabilities());
    end_of_run(&mut client);
    assert!(client.shutdown().success());
    // The next server starts its first run with the workspace this one read.
    assert!(root.join("target/coverlay/workspace.json").exists());

    std::fs::create_dir_all(root.join(".cargo")).unwrap();
    std::fs::write(
        root.join(".cargo/config.toml"),
        "[build]\ntarget-dir = \"elsewhere\"\n",
    )
    .unwrap();
    let mut client = Client::start(BIN, root);
    client.initialize(root, json!({}), full_capabilities());
    let message = client.wait_for("a warning about the target directory", RUN_TIMEOUT, |m| {
        m["method"] == "window/showMessage"
    });
    assert_eq!(message["params"]["type"], 2, "{message}");
    let text = message["params"]["message"].as_str().unwrap();
    assert!(text.contains("elsewhere"), "{text}");
    // The run found cargo's new directory and built there.
    assert!(root.join("elsewhere/coverlay").is_dir());
    assert!(client.shutdown().success());
}

#[test]
fn bad_input_gets_errors_and_no_crash() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut client = Client::start(BIN, root);
    // No Cargo.toml: the user is told so.
    client.initialize(root, json!({"countCap": "many"}), json!({}));
    let message = client.wait_for("a message about Cargo.toml", Duration::from_secs(30), |m| {
        m["method"] == "window/showMessage"
    });
    assert_eq!(message["params"]["type"], 1);
    assert!(
        message["params"]["message"]
            .as_str()
            .unwrap()
            .contains("Cargo.toml"),
        "{message}"
    );

    let unknown = client.request("coverlay/unknown", json!({})).unwrap_err();
    assert_eq!(unknown["code"], -32601);
    // No coverage yet: lcov is refused with a reason, and no empty file is left behind.
    let lcov = root.join("out.info");
    let refused = client
        .request(
            "workspace/executeCommand",
            json!({"command": "coverlay.writeLcov", "arguments": [lcov]}),
        )
        .unwrap_err();
    assert_eq!(refused["code"], -32803);
    assert!(refused["message"].as_str().unwrap().contains("no coverage"));
    assert!(!lcov.exists());
    let malformed = client
        .request("textDocument/inlayHint", json!({"textDocument": 3}))
        .unwrap_err();
    assert_eq!(malformed["code"], -32602);
    let range = json!({"start": {"line": 0, "character": 0}, "end": {"line": 9, "character": 0}});
    let not_file = client
        .request(
            "textDocument/inlayHint",
            json!({"textDocument": {"uri": "untitled:Untitled-1"}, "range": range}),
        )
        .unwrap_err();
    assert_eq!(not_file["code"], -32602);
    assert!(not_file["message"].as_str().unwrap().contains("file:"));
    let outside = client
        .request(
            "textDocument/codeLens",
            json!({"textDocument": {"uri": "file:///etc/hostname"}}),
        )
        .unwrap();
    assert_eq!(outside, json!([]));
    // Notifications with bad params and for odd documents are ignored.
    client.notify("textDocument/didOpen", json!({"textDocument": {"uri": 5}}));
    client.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": "untitled:x", "languageId": "rust", "version": 1, "text": "fn ("}}),
    );
    client.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"coverlay": {"severity": 7}}}),
    );
    client.wait_for(
        "a warning about the setting",
        Duration::from_secs(10),
        |m| m["method"] == "window/showMessage" && m["params"]["type"] == 2,
    );
    client.send_raw(json!({"jsonrpc": "2.0", "id": 99, "method": "textDocument/codeLens"}));
    // A body that is not JSON, and one that is JSON but no JSON-RPC message: each is answered
    // with its error (id null), and the session goes on.
    client.send_body("{\"jsonrpc\": \"2.0\", \"id\": 5, \"method\": ");
    let parse = client.wait_for("a parse error", Duration::from_secs(10), |m| {
        m["id"].is_null() && m["error"]["code"] == -32700
    });
    assert!(parse["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not JSON"));
    client.send_body("{\"jsonrpc\": \"1.0\", \"id\": {\"a\": 1}}");
    client.wait_for("an invalid request error", Duration::from_secs(10), |m| {
        m["id"].is_null() && m["error"]["code"] == -32600
    });
    // Still answering.
    let lenses = client
        .request(
            "textDocument/codeLens",
            json!({"textDocument": {"uri": uri(&root.join("x.rs"))}}),
        )
        .unwrap();
    assert_eq!(lenses, json!([]));
    assert!(client.shutdown().success());
}

#[test]
fn shutdown_during_a_run_leaves_no_process() {
    let dir = copy_fixture("ledger");
    let root = dir.path();
    // A test that outlives any reasonable wait: only the shutdown can end it.
    std::fs::write(
        root.join("tests/slow.rs"),
        "#[test]\nfn sleeps() { std::thread::sleep(std::time::Duration::from_secs(600)); }\n",
    )
    .unwrap();
    let mut client = Client::start(BIN, root);
    client.initialize(
        root,
        json!({}),
        json!({"window": {"workDoneProgress": true}}),
    );
    client.wait_for("the traced tests to run", RUN_TIMEOUT, |m| {
        m["method"] == "$/progress"
            && m["params"]["value"]["message"]
                .as_str()
                .is_some_and(|s| s.starts_with("running"))
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !lsp_support::processes_under(&root.join("target")).is_empty(),
        "test binaries are running"
    );
    let started = std::time::Instant::now();
    let status = client.shutdown();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(leftover_processes(Path::new(root)), Vec::<String>::new());
}

#[test]
fn a_failing_test_gets_an_error_at_its_fn_and_settings_apply() {
    let dir = copy_fixture("ledger");
    let root = dir.path();
    let failing = root.join("tests/failing.rs");
    std::fs::write(
        &failing,
        "#[test]\nfn books_balance() {\n    assert_eq!(ledger::double(2), 5, \"books do not balance\");\n}\n",
    )
    .unwrap();
    let mut client = Client::start(BIN, root);
    client.initialize(
        root,
        json!({"coverlay": {"severity": "information", "excludedPaths": ["src/scale.rs"]}}),
        json!({"textDocument": {"inlayHint": {"resolveSupport": {"properties": ["tooltip"]}}}}),
    );
    client.open(&failing);
    let diagnostics = client.wait_diagnostics(&uri(&failing), RUN_TIMEOUT, |d| !d.is_empty());
    let error = &diagnostics[0];
    assert_eq!(error["severity"], 1, "{diagnostics:#?}");
    assert_eq!(error["range"]["start"]["line"], 1, "at the test's fn line");
    let message = error["message"].as_str().unwrap();
    assert!(message.starts_with("test failed: "), "{message}");
    assert!(message.contains("books do not balance"), "{message}");
    let lenses = client
        .request(
            "textDocument/codeLens",
            json!({"textDocument": {"uri": uri(&failing)}}),
        )
        .unwrap();
    let title = lenses[0]["command"]["title"].as_str().unwrap();
    assert!(title.starts_with("✗ failed · "), "{title}");
    assert_eq!(
        lenses[0]["command"]["arguments"],
        json!(["failing::books_balance"])
    );

    // Information severity from initializationOptions; excluded paths get nothing.
    let lib = client.wait_diagnostics(
        &uri(&root.join("src/lib.rs")),
        Duration::from_secs(5),
        |d| !d.is_empty(),
    );
    assert!(
        lib.iter()
            .all(|d| d["severity"] == 3 && d.get("tags").is_none()),
        "{lib:#?}"
    );
    let scale = root.join("src/scale.rs");
    let hints = client
        .request(
            "textDocument/inlayHint",
            json!({"textDocument": {"uri": uri(&scale)},
                   "range": {"start": {"line": 0, "character": 0}, "end": {"line": 99, "character": 0}}}),
        )
        .unwrap();
    assert_eq!(hints, json!([]));

    // A client that resolves tooltips lazily gets them from inlayHint/resolve.
    let hints = client
        .request(
            "textDocument/inlayHint",
            json!({"textDocument": {"uri": uri(&root.join("src/lib.rs"))},
                   "range": {"start": {"line": 0, "character": 0}, "end": {"line": 99, "character": 0}}}),
        )
        .unwrap();
    let hint = hints[0].clone();
    assert!(
        hint.get("tooltip").is_none() && hint.get("data").is_some(),
        "{hint}"
    );
    let resolved = client.request("inlayHint/resolve", hint).unwrap();
    let tooltip = resolved["tooltip"]["value"].as_str().unwrap();
    assert!(tooltip.starts_with("executed "), "{tooltip}");

    // Turning hints off and severity back to hint takes effect without a run.
    client.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"coverlay": {"severity": "hint", "inlayHints": false}}}),
    );
    let lib_uri = uri(&root.join("src/lib.rs"));
    let lib = client.wait_diagnostics(&lib_uri, Duration::from_secs(10), |d| {
        !d.is_empty() && d.iter().all(|d| d["severity"] == 4)
    });
    assert!(!lib.is_empty());
    let hints = client
        .request("textDocument/inlayHint", hint_range(&lib_uri, 0, 99))
        .unwrap();
    assert_eq!(hints, json!([]));

    // Rerunning one test: its file's diagnostics come again, the other results stay.
    client.drain();
    client
        .request(
            "workspace/executeCommand",
            json!({"command": "coverlay.rerunTest", "arguments": ["failing::books_balance"]}),
        )
        .unwrap();
    let again = client.wait_diagnostics(&uri(&failing), RUN_TIMEOUT, |d| !d.is_empty());
    assert_eq!(again[0]["severity"], 1);
    let lib = client.wait_diagnostics(&lib_uri, Duration::from_secs(5), |d| !d.is_empty());
    assert!(mentions(&lib, "close_account"), "{lib:#?}");

    // A change made outside the editor (the file is closed) starts a run: the test passes now.
    client.notify(
        "textDocument/didClose",
        json!({"textDocument": {"uri": uri(&failing)}}),
    );
    std::fs::write(
        &failing,
        "#[test]\nfn books_balance() {\n    assert_eq!(ledger::double(2), 4, \"books do not balance\");\n}\n",
    )
    .unwrap();
    client.wait_diagnostics(&uri(&failing), RUN_TIMEOUT, <[Value]>::is_empty);
    assert!(client.shutdown().success());
}
