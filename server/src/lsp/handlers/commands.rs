//! `workspace/executeCommand`: the commands the server offers, their arguments, and what they do.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use tower_lsp_server::jsonrpc::{self, Error};

use crate::lsp::scheduler::Scope;
use crate::lsp::state::GlobalState;

pub const RERUN_ALL: &str = "coverlay.rerunAll";
pub const RERUN_TEST: &str = "coverlay.rerunTest";
pub const WRITE_LCOV: &str = "coverlay.writeLcov";
pub const CLEAR_COVERAGE: &str = "coverlay.clearCoverage";

pub const ALL: [&str; 4] = [RERUN_ALL, RERUN_TEST, WRITE_LCOV, CLEAR_COVERAGE];

#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Rerun every test.
    RerunAll,
    /// Rerun these tests (ids `<target>::<test path>`, one per argument or as one array).
    RerunTests(Vec<String>),
    /// Write lcov to this path (default `<target>/coverlay/lcov.info`).
    WriteLcov(Option<PathBuf>),
    /// Forget all results and clear the overlay.
    Clear,
}

pub fn parse(command: &str, arguments: &[Value]) -> Result<Action, String> {
    match command {
        RERUN_ALL => Ok(Action::RerunAll),
        RERUN_TEST => {
            let mut ids = Vec::new();
            for argument in arguments {
                match argument {
                    Value::String(id) => ids.push(id.clone()),
                    Value::Array(items) => {
                        ids.extend(items.iter().filter_map(|v| v.as_str().map(str::to_owned)))
                    }
                    _ => return Err(format!("{RERUN_TEST}: expected test ids, got {argument}")),
                }
            }
            if ids.is_empty() {
                return Err(format!("{RERUN_TEST} needs a test id argument"));
            }
            Ok(Action::RerunTests(ids))
        }
        WRITE_LCOV => match arguments.first() {
            None | Some(Value::Null) => Ok(Action::WriteLcov(None)),
            Some(Value::String(path)) => Ok(Action::WriteLcov(Some(path.into()))),
            Some(other) => Err(format!("{WRITE_LCOV}: expected a file path, got {other}")),
        },
        CLEAR_COVERAGE => Ok(Action::Clear),
        _ => Err(format!(
            "unknown command {command:?}; coverlay offers {}",
            ALL.join(", ")
        )),
    }
}

impl GlobalState {
    /// Carries out a command: reruns are queued (the answer does not wait for them), lcov is
    /// written from the shown results, clearing empties the overlay and the saved store.
    pub(crate) async fn execute(
        self: &Arc<Self>,
        action: Action,
    ) -> jsonrpc::Result<Option<Value>> {
        match action {
            Action::RerunAll => self.request_run(Scope::All),
            Action::RerunTests(ids) => {
                self.request_run(Scope::Tests(crate::selection::TestFilter::ids(ids)))
            }
            Action::Clear => {
                let generation = self
                    .scheduler
                    .get()
                    .map_or(2, |scheduler| scheduler.next_generation());
                let paths = self.store.clear(generation);
                self.publish(paths).await;
                self.notify_coverage().await;
                self.refresh();
                self.save_store().await;
            }
            Action::WriteLcov(path) => {
                let path = match (path, self.workspace.get()) {
                    (Some(path), _) => path,
                    (None, Some(workspace)) => workspace.coverlay_dir().join("lcov.info"),
                    (None, None) => {
                        return Err(Error::invalid_params(
                            "no workspace: give the lcov file's path as the argument",
                        ))
                    }
                };
                let shown = self.store.shown().coverage();
                if shown.files.is_empty() {
                    // An empty file would read as "nothing is covered" to whatever loads it.
                    return Err(Error {
                        code: jsonrpc::ErrorCode::ServerError(-32803),
                        message: "coverlay has no coverage to write yet: wait for the first run \
                                  to finish (or run coverlay.rerunAll)"
                            .into(),
                        data: None,
                    });
                }
                let lcov = crate::report::lcov::render(&shown);
                let written = {
                    let path = path.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Some(dir) = path.parent() {
                            std::fs::create_dir_all(dir)?;
                        }
                        std::fs::write(&path, lcov)
                    })
                    .await
                };
                match written {
                    Ok(Ok(())) => return Ok(Some(Value::String(path.display().to_string()))),
                    Ok(Err(error)) => {
                        let mut e = Error::internal_error();
                        e.message = format!("cannot write {}: {error}", path.display()).into();
                        return Err(e);
                    }
                    Err(_) => return Err(Error::internal_error()),
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commands_parse_their_arguments() {
        assert_eq!(parse(RERUN_ALL, &[]), Ok(Action::RerunAll));
        assert_eq!(
            parse(RERUN_TEST, &[json!("a::t"), json!(["b::u"])]),
            Ok(Action::RerunTests(vec!["a::t".into(), "b::u".into()]))
        );
        assert!(parse(RERUN_TEST, &[]).is_err());
        assert!(parse(RERUN_TEST, &[json!(3)]).is_err());
        assert_eq!(parse(WRITE_LCOV, &[]), Ok(Action::WriteLcov(None)));
        assert!(parse("coverlay.nope", &[]).is_err());
    }
}
