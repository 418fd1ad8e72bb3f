//! The live loop, differential: a scripted series of edits of every kind test selection must
//! judge, each saved in a real `coverlay lsp` on the `liveloop` fixture workspace; after each save
//! the server's overlay (outcomes, per-line hits and covering tests, coverable lines) must equal
//! what a from-scratch `coverlay run` reports for the same sources. A test whose result changed
//! but was not selected would keep its old results and show up as a difference.

mod lsp_support;

use std::path::Path;
use std::time::Duration;

use lsp_support::{copy_fixture, end_of_run, selection_after_save, Client};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_coverlay");

/// What a save must rerun.
#[derive(Debug)]
enum Expect {
    Nothing,
    Tests(usize),
    All,
}

struct Edit {
    what: &'static str,
    file: &'static str,
    from: &'static str,
    to: &'static str,
    expect: Expect,
}

const fn edit(
    what: &'static str,
    file: &'static str,
    from: &'static str,
    to: &'static str,
    expect: Expect,
) -> Edit {
    Edit {
        what,
        file,
        from,
        to,
        expect,
    }
}

const LIB: &str = "shapes/src/lib.rs";
const API: &str = "shapes/tests/api.rs";
const COMMON: &str = "shapes/tests/common/mod.rs";
const MAIN: &str = "app/src/main.rs";

fn script() -> Vec<Edit> {
    use Expect::*;
    vec![
        edit("a comment", LIB, "pub trait Shape {", "// shapes\n\npub trait Shape {", Nothing),
        edit("a generic body", LIB, "if item > best {", "if best < item {", Tests(2)),
        edit("an impl method body", LIB, "self.0 * self.0\n", "self.0.powi(2)\n", Tests(4)),
        edit(
            "a trait default body",
            LIB,
            "format!(\"a shape of area {:.1}\", self.area())",
            "format!(\"a shape of area {:.1}\", self.area() + 0.0)",
            Tests(4),
        ),
        edit("a tests/common helper", COMMON, ".sum()", ".sum::<f64>()", Tests(1)),
        edit("a test's body", LIB, "add_two(40), 42", "add_two(1), 3", Tests(1)),
        // Only its doctest reaches it: that doctest alone is compiled and run.
        edit("a body only a doctest runs", LIB, "\"hexagon\" => Some(6)", "\"hexagon\" => Some(3 + 3)", Tests(1)),
        edit("a failing test", LIB, "Square(3.0).area(), 9.0", "Square(3.0).area(), 10.0", Tests(1)),
        // The failed test joins: the two app tests and square_area.
        edit("a binary's body", MAIN, "Square(side).describe()", "Square(side * 1.0).describe()", Tests(3)),
        edit("the failing test fixed", LIB, "Square(3.0).area(), 10.0", "Square(3.0).area(), 9.0", Tests(1)),
        edit("a const", LIB, "SIDES_OF_A_SQUARE: u32 = 4", "SIDES_OF_A_SQUARE: u32 = 2 + 2", All),
        edit("a lazy static's initialiser", LIB, "for n in 2..30", "for n in 2..31", All),
        edit("a macro_rules!", LIB, "x + $n", "$n + x", All),
        edit("an include_str! file", "shapes/data/names.txt", "circle\n", "circle\ntriangle\n", All),
        edit("a build script", "shapes/build.rs", "SHAPES_UNIT=cm", "SHAPES_UNIT=mm", All),
        edit("a test added to the binary", MAIN,
            "    #[test]\n    fn report_of_a_small_square",
            "    #[test]\n    fn report_is_short() {\n        assert!(super::report(1.0).len() < 40);\n    }\n\n    #[test]\n    fn report_of_a_small_square",
            // app's two known tests and the two failing shapes tests (names, unit); the new
            // test runs with every test of app.
            Tests(4)),
        edit("a test removed", API,
            "#[test]\nfn a_circle_is_round() {\n    assert!(Circle(2.0).describe().starts_with(\"a shape\"));\n}\n",
            "", All),
        edit("a README", "README.md", "", "# liveloop\n", Nothing),
    ]
}

/// The overlay a from-scratch run reports for the sources as they are now (tests may fail).
fn from_scratch(root: &Path) -> lsp_support::Overlay {
    let (code, overlay) = lsp_support::from_scratch(BIN, root);
    assert!(
        code == Some(0) || code == Some(101),
        "coverlay run exited with {code:?}"
    );
    overlay
}

fn shown(root: &Path) -> lsp_support::Overlay {
    lsp_support::saved_overlay(root)
}

fn assert_same(step: &str, live: &lsp_support::Overlay, scratch: &lsp_support::Overlay) {
    assert_eq!(live.1, scratch.1, "{step}: test outcomes");
    let lines =
        |o: &lsp_support::Overlay| o.0.iter().map(|l| (l.0.clone(), l.1)).collect::<Vec<_>>();
    assert_eq!(lines(live), lines(scratch), "{step}: coverable lines");
    for (l, s) in live.0.iter().zip(&scratch.0) {
        assert_eq!(l, s, "{step}: a line's hits and tests");
    }
}

/// The server's log line for the run that just ended.
fn done_message(client: &mut Client) -> String {
    let done = client.wait_for("the run's log line", Duration::from_secs(30), |m| {
        m["method"] == "window/logMessage"
            && m["params"]["message"]
                .as_str()
                .is_some_and(|t| t.contains(" done: "))
    });
    done["params"]["message"].as_str().unwrap().to_owned()
}

#[test]
fn after_every_kind_of_edit_the_overlay_equals_a_full_run() {
    let dir = copy_fixture("liveloop");
    let root = dir.path();
    std::fs::write(root.join("README.md"), "").unwrap();
    let mut client = Client::start(BIN, root);
    client.initialize(
        root,
        json!({}),
        json!({"window": {"workDoneProgress": true}}),
    );
    end_of_run(&mut client);
    done_message(&mut client);
    assert_same("the first run", &shown(root), &from_scratch(root));

    let mut opened = std::collections::HashSet::new();
    // The saves whose run built only the executables of the selected tests.
    let mut narrowed = Vec::new();
    for (version, edit) in script().into_iter().enumerate() {
        let path = root.join(edit.file);
        // As in an editor: the file is open before it is edited.
        if opened.insert(path.clone()) {
            client.open(&path);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(edit.from),
            "{}: {:?} not in {}",
            edit.what,
            edit.from,
            edit.file
        );
        let changed = text.replacen(edit.from, edit.to, 1);
        client.edit_and_save(&path, version as i64 + 2, &changed);
        let message = selection_after_save(&mut client);
        let total = message
            .split(" of ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .unwrap_or("?");
        match edit.expect {
            Expect::Nothing => assert!(
                message.contains("nothing to rerun"),
                "{}: {message}",
                edit.what
            ),
            Expect::Tests(n) => assert!(
                message.contains(&format!("rerunning {n} of {total} tests")),
                "{}: {message}",
                edit.what
            ),
            Expect::All => assert!(message.contains("every test"), "{}: {message}", edit.what),
        }
        if !matches!(edit.expect, Expect::Nothing) {
            end_of_run(&mut client);
            if done_message(&mut client).contains("built only") {
                narrowed.push(edit.what);
            }
        }
        assert_same(edit.what, &shown(root), &from_scratch(root));
    }
    assert_eq!(
        narrowed,
        [
            "a generic body",
            "a tests/common helper",
            "a test's body",
            "a body only a doctest runs",
            "a failing test",
            "the failing test fixed"
        ],
        "bodies whose tests are all in one package build only their executables"
    );

    // A file a crate reads with include_str!, closed in the editor and changed elsewhere: the
    // watcher sees it and its packages rerun.
    let names = root.join("shapes/data/names.txt");
    client.notify(
        "textDocument/didClose",
        json!({"textDocument": {"uri": lsp_support::uri(&names)}}),
    );
    std::fs::write(&names, "square\ncircle\n").unwrap();
    end_of_run(&mut client);
    assert_same(
        "an input changed outside the editor",
        &shown(root),
        &from_scratch(root),
    );
    let status = client.shutdown();
    assert!(status.success(), "{status:?}");
}
