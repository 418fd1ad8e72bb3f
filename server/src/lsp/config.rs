//! User settings, from `initializationOptions` and `workspace/didChangeConfiguration` (either flat
//! or under a `coverlay` key). Unknown keys are ignored; a malformed value keeps the old setting.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::run::RunOptions;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Hint,
    Information,
    Warning,
    /// No "not covered" diagnostics (an editor that draws coverage itself, e.g. VS Code's gutter).
    Off,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Severity of "not covered" diagnostics; `hint` also tags them unnecessary (faded text).
    pub severity: Severity,
    /// Hit-count inlay hints on/off.
    pub inlay_hints: bool,
    /// Code lenses on/off.
    pub code_lens: bool,
    /// The int3 fallback's cap: executions counted per address and test before its breakpoint is
    /// lifted. It applies only to addresses that cannot be patched with a counter trampoline (the
    /// others count exactly); a line counted partly this way shows as `≥N×`.
    pub count_cap: u32,
    /// Extra arguments for `cargo test`, e.g. `["--all-features"]`.
    pub cargo_args: Vec<String>,
    /// Seconds a test executable may run.
    pub test_timeout: u64,
    /// Path prefixes, relative to the workspace root, whose files get no overlay.
    pub excluded_paths: Vec<String>,
    /// Quiet time after a change outside the editor before a run starts.
    pub debounce_ms: u64,
    /// Build and measure the doctests too (`cargo test --doc`).
    pub doctests: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            severity: Severity::Hint,
            inlay_hints: true,
            code_lens: true,
            count_cap: 10,
            cargo_args: Vec::new(),
            test_timeout: 300,
            excluded_paths: Vec::new(),
            debounce_ms: 500,
            doctests: true,
        }
    }
}

impl Settings {
    /// Applies the keys present in `value` (flat or under `coverlay`); returns what was rejected.
    pub fn update(&mut self, value: &Value) -> Vec<String> {
        let value = value.get("coverlay").unwrap_or(value);
        let Some(object) = value.as_object() else {
            return Vec::new();
        };
        let mut rejected = Vec::new();
        for (key, value) in object {
            let ok = match key.as_str() {
                "severity" | "diagnosticSeverity" => set(&mut self.severity, value),
                "inlayHints" => set(&mut self.inlay_hints, value),
                "codeLens" => set(&mut self.code_lens, value),
                "countCap" => set(&mut self.count_cap, value),
                "cargoArgs" => set(&mut self.cargo_args, value),
                "testTimeout" => set(&mut self.test_timeout, value),
                "excludedPaths" => set(&mut self.excluded_paths, value),
                "debounceMs" => set(&mut self.debounce_ms, value),
                "doctests" => set(&mut self.doctests, value),
                _ => true,
            };
            if !ok {
                rejected.push(format!("{key}: {value}"));
            }
        }
        self.count_cap = self.count_cap.max(1);
        rejected
    }

    pub fn run_options(&self) -> RunOptions {
        RunOptions {
            cargo_args: self.cargo_args.clone(),
            count_cap: self.count_cap,
            timeout: Duration::from_secs(self.test_timeout.max(1)),
            snapshot_sources: true,
            doctests: self.doctests,
            ..RunOptions::default()
        }
    }

    pub fn is_excluded(&self, path: &Path, root: &Path) -> bool {
        let relative = path.strip_prefix(root).unwrap_or(path);
        self.excluded_paths
            .iter()
            .any(|prefix| relative.starts_with(prefix.trim_end_matches('/')))
    }
}

fn set<T: serde::de::DeserializeOwned>(slot: &mut T, value: &Value) -> bool {
    match T::deserialize(value) {
        Ok(v) => {
            *slot = v;
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_cap_defaults_to_ten() {
        assert_eq!(Settings::default().count_cap, 10);
        assert_eq!(Settings::default().run_options().count_cap, 10);
    }

    #[test]
    fn settings_come_flat_or_under_coverlay_and_bad_values_are_rejected() {
        let mut settings = Settings::default();
        let rejected = settings.update(&serde_json::json!({"coverlay": {
            "severity": "information", "countCap": 50, "excludedPaths": ["benches/"],
            "inlayHints": "yes"
        }}));
        assert_eq!(settings.severity, Severity::Information);
        assert_eq!(settings.count_cap, 50);
        assert!(settings.inlay_hints);
        assert_eq!(rejected.len(), 1);
        assert!(settings.is_excluded(Path::new("/w/benches/a.rs"), Path::new("/w")));
        assert!(!settings.is_excluded(Path::new("/w/src/a.rs"), Path::new("/w")));
        settings.update(&serde_json::json!({"testTimeout": 5, "severity": "off"}));
        assert_eq!(settings.test_timeout, 5);
        assert_eq!(settings.severity, Severity::Off);
    }
}
