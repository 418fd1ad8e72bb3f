//! `workspace/didChangeConfiguration`: settings that change how runs go rerun everything.

use std::sync::Arc;

use tower_lsp_server::ls_types::*;

use crate::lsp::scheduler::Scope;
use crate::lsp::state::GlobalState;

pub async fn did_change_configuration(
    state: &Arc<GlobalState>,
    params: DidChangeConfigurationParams,
) {
    let (rejected, rerun) = {
        let mut settings = state.settings.write().unwrap_or_else(|e| e.into_inner());
        let before = settings.clone();
        let rejected = settings.update(&params.settings);
        let rerun = before.cargo_args != settings.cargo_args
            || before.count_cap != settings.count_cap
            || before.test_timeout != settings.test_timeout
            || before.doctests != settings.doctests;
        if let Some(scheduler) = state.scheduler.get() {
            scheduler.set_options(settings.run_options());
        }
        (rejected, rerun)
    };
    if rerun {
        state.request_run(Scope::All);
    }
    let inner = state.clone();
    tokio::spawn(async move {
        if !rejected.is_empty() {
            inner
                .client
                .show_message(
                    MessageType::WARNING,
                    format!("coverlay ignored invalid settings: {}", rejected.join(", ")),
                )
                .await;
        }
        let paths = inner.store.shown().paths();
        inner.publish(paths).await;
        inner.refresh();
    });
}
