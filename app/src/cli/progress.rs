//! What a command says besides its output, all on stderr: progress bars with
//! an ETA for the steps that take a while, and warnings. Bars are drawn only
//! when stderr is a terminal; `--quiet` silences bars and warnings (errors
//! still print). Stdout is never touched here.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where a command's progress and warnings go.
#[derive(Clone, Debug)]
pub struct Console {
    /// Whether stdout is a terminal (a table by default then).
    pub stdout_terminal: bool,
    bars: bool,
    quiet: bool,
}

impl Console {
    /// From the process's stdout and stderr.
    pub fn new(quiet: bool) -> Self {
        Self {
            stdout_terminal: std::io::stdout().is_terminal(),
            bars: !quiet && std::io::stderr().is_terminal(),
            quiet,
        }
    }

    /// Nothing on stderr but errors, and stdout taken as piped (for tests).
    pub fn silent() -> Self {
        Self { stdout_terminal: false, bars: false, quiet: true }
    }

    /// A bar over `total` steps, labelled `what` ("Sweeping").
    pub fn bar(&self, what: &str, total: usize) -> Bar {
        self.styled(what, total as u64, "[{bar:30}] {pos}/{len} ETA {eta:<4} {wide_msg}")
    }

    /// A bar over `total` bytes.
    pub fn bytes_bar(&self, what: &str, total: u64) -> Bar {
        self.styled(
            what,
            total,
            "[{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec:>11} ETA {eta:<4} {wide_msg}",
        )
    }

    /// A step with no count ("Running the float model"): a spinner and the time taken.
    pub fn spinner(&self, what: &str) -> Bar {
        let bar = self.styled(what, 0, "{spinner} {elapsed} {wide_msg}");
        bar.0.enable_steady_tick(Duration::from_millis(100));
        bar
    }

    fn styled(&self, what: &str, total: u64, template: &str) -> Bar {
        let target = if self.bars { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        let style = ProgressStyle::with_template(&format!("{{prefix:>12.cyan.bold}} {template}"))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(what.to_string());
        Bar(bar)
    }

    /// A warning (not an error): one line on stderr unless `--quiet`.
    pub fn warn(&self, msg: &str) {
        if !self.quiet {
            eprintln!("quantscope: warning: {msg}");
        }
    }
}

/// One progress bar; cleared from the terminal when dropped.
pub struct Bar(ProgressBar);

impl Bar {
    /// `done` of `total` steps.
    pub fn set(&self, done: usize, total: usize) {
        self.set_u64(done as u64, total as u64);
    }

    pub fn set_u64(&self, done: u64, total: u64) {
        if self.0.length() != Some(total) {
            self.0.set_length(total);
        }
        self.0.set_position(done);
    }

    /// The text after the bar (the layer at work).
    pub fn message(&self, msg: impl Into<String>) {
        self.0.set_message(msg.into());
    }

    /// The engine's `progress(done, total)` callback, callable from any thread.
    pub fn callback(&self) -> impl Fn(usize, usize) + Sync + use<> {
        let bar = self.0.clone();
        move |done, total| {
            if bar.length() != Some(total as u64) {
                bar.set_length(total as u64);
            }
            bar.set_position(done as u64);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_console_draws_nothing_and_bars_still_count() {
        let c = Console::silent();
        let bar = c.bar("Sweeping", 4);
        let f = bar.callback();
        f(3, 4);
        assert_eq!(bar.0.position(), 3);
        assert!(bar.0.is_hidden());
        bar.set(4, 5);
        assert_eq!((bar.0.position(), bar.0.length()), (4, Some(5)));
    }
}
