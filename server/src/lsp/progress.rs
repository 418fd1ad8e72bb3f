//! Work-done progress for runs (`window/workDoneProgress/create` + `$/progress`), used only when
//! the client declared support; "building", then "running 12/140 tests (mycrate)".

use std::time::Duration;

use tower_lsp_server::ls_types::ProgressToken;
use tower_lsp_server::{Client, NotCancellable, OngoingProgress, Unbounded};

use crate::lsp::scheduler::Scope;
use crate::run::Progress;

/// How long the server waits for the client to accept a progress token.
const CREATE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn text(progress: &Progress) -> String {
    match progress {
        Progress::Building { crates_compiled } => {
            format!("building tests ({crates_compiled} crates compiled)")
        }
        Progress::Running {
            done,
            total,
            binary,
        } => format!("running {done}/{total} tests ({binary})"),
    }
}

/// The progress of one run as the client sees it; a no-op when unsupported.
#[derive(Default)]
pub struct RunProgress {
    ongoing: Option<OngoingProgress<Unbounded, NotCancellable>>,
    last: String,
}

impl RunProgress {
    pub async fn begin(client: &Client, supported: bool, generation: u64, scope: &Scope) -> Self {
        if !supported {
            return Self::default();
        }
        let token = ProgressToken::String(format!("coverlay/run/{generation}"));
        let created = tokio::time::timeout(
            CREATE_TIMEOUT,
            client.create_work_done_progress(token.clone()),
        )
        .await;
        if !matches!(created, Ok(Ok(()))) {
            return Self::default();
        }
        let title = match scope {
            Scope::All => "coverage".to_owned(),
            Scope::Tests(f) if f.packages.is_empty() && f.ids.len() == 1 => {
                format!("coverage of {}", f.ids[0])
            }
            Scope::Tests(f) if f.packages.is_empty() => {
                format!("coverage of {} tests", f.ids.len())
            }
            Scope::Tests(f) => format!(
                "coverage of {} and {} more tests",
                f.packages.join(", "),
                f.ids.len()
            ),
        };
        let ongoing = client
            .progress(token, title)
            .with_message("building tests")
            .begin()
            .await;
        Self {
            ongoing: Some(ongoing),
            last: String::new(),
        }
    }

    pub async fn report(&mut self, progress: &Progress) {
        let Some(ongoing) = &self.ongoing else {
            return;
        };
        let text = text(progress);
        if text != self.last {
            ongoing.report(text.clone()).await;
            self.last = text;
        }
    }

    pub async fn finish(self, message: &str) {
        if let Some(ongoing) = self.ongoing {
            ongoing.finish_with_message(message.to_owned()).await;
        }
    }
}
