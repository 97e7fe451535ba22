//! The progress bar of `scan`, on stderr and only when stderr is a terminal
//! (indicatif draws nothing on a hidden bar): a count of repositories listed,
//! then of keys described.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::report::RegistryId;

/// A progress bar, or nothing.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// Drawn on stderr when it is a terminal; hidden otherwise.
    pub fn on_stderr() -> Self {
        if !std::io::stderr().is_terminal() {
            return Self::hidden();
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}: {pos} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        // Redrawn while a page is awaited, so the spinner shows it is alive.
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar }
    }

    /// Draws nothing.
    pub fn hidden() -> Self {
        Self {
            bar: ProgressBar::hidden(),
        }
    }

    /// A registry's listing starts.
    pub fn listing(&self, id: &RegistryId) {
        self.bar.set_message(format!(
            "listing repositories ({} {})",
            id.account, id.region
        ));
    }

    /// A page of `n` repositories was read.
    pub fn listed(&self, n: usize) {
        self.bar.inc(n as u64);
    }

    /// `keys` distinct keys are to be described.
    pub fn describing(&self, keys: usize) {
        self.bar.set_position(0);
        self.bar.set_length(keys as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{msg}: {bar:30} {pos}/{len} keys {elapsed}")
        {
            self.bar.set_style(style);
        }
        self.bar.set_message("describing KMS keys");
    }

    /// One key was described.
    pub fn described(&self) {
        self.bar.inc(1);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
