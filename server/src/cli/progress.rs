//! Progress of `coverlay run` on stderr: a spinner while cargo builds, then a bar of tests done
//! with the test binary at work; on anything but a terminal, a few plain lines instead.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::run::Progress;

pub struct Display {
    bar: Option<ProgressBar>,
    printed: Mutex<Printed>,
}

/// What the plain output printed last.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Printed {
    Nothing,
    Building,
    /// Tenths of the tests done.
    Running(usize),
}

impl Display {
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("template"),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Self {
            bar,
            printed: Mutex::new(Printed::Nothing),
        }
    }

    pub fn show(&self, progress: Progress) {
        match &self.bar {
            Some(bar) => show_bar(bar, progress),
            None => self.show_lines(progress),
        }
    }

    /// One line when the build starts, then one when the tests start and one per tenth done.
    fn show_lines(&self, progress: Progress) {
        let mut printed = self.printed.lock().expect("progress lock");
        let (now, line) = match progress {
            Progress::Building { .. } if *printed == Printed::Nothing => {
                (Printed::Building, "building tests".to_owned())
            }
            Progress::Building { .. } => return,
            Progress::Running { done, total, .. } => (
                Printed::Running((done * 10).checked_div(total).unwrap_or(10)),
                format!("running tests under coverage: {done}/{total}"),
            ),
        };
        if *printed != now {
            *printed = now;
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }
}

fn show_bar(bar: &ProgressBar, progress: Progress) {
    match progress {
        Progress::Building { crates_compiled } => {
            bar.set_message(format!(
                "building tests ({crates_compiled} crates compiled)"
            ));
        }
        Progress::Running {
            done,
            total,
            binary,
        } => {
            bar.set_message(binary);
            if bar.length() != Some(total as u64) {
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} running tests {bar:30} {pos}/{len} [{elapsed}] {msg}",
                    )
                    .expect("template")
                    .progress_chars("=> "),
                );
                bar.set_length(total as u64);
            }
            bar.set_position(done as u64);
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
