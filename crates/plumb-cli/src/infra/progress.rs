//! Progress of long walks as `plumb infra` shows it: a bar on a terminal, a
//! line every few seconds otherwise, or, for `-json`, a line of the
//! machine-readable UI as each instance's provider call starts and ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use plumb_infra::Action;
use plumb_infra::addr::InstanceAddr;
use plumb_tfplugin::Value;

use super::ui;

/// A walk's progress on the terminal or the JSON stream.
pub struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    done: AtomicU64,
    total: AtomicU64,
    started: Instant,
    last_line: std::sync::Mutex<Instant>,
    verb: &'static str,
    /// Machine-readable UI lines instead of a bar or text lines.
    json: bool,
    /// With `json`: also `refresh_start` / `refresh_complete` lines.
    refresh_lines: bool,
}

impl Reporter {
    fn new(
        verb: &'static str,
        bar: Option<indicatif::ProgressBar>,
        json: bool,
        refresh_lines: bool,
    ) -> Reporter {
        Reporter {
            bar,
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            started: Instant::now(),
            last_line: std::sync::Mutex::new(Instant::now()),
            verb,
            json,
            refresh_lines,
        }
    }

    /// Progress on stderr: a bar on a TTY, periodic lines otherwise.
    pub fn stderr(verb: &'static str) -> Reporter {
        use std::io::IsTerminal;
        let bar = if std::io::stderr().is_terminal() {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {pos}/{len} ({elapsed})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_message(verb);
            b.enable_steady_tick(Duration::from_millis(200));
            Some(b)
        } else {
            None
        };
        Reporter::new(verb, bar, false, false)
    }

    /// `apply_start` / `apply_complete` / `apply_errored` lines on stdout
    /// (`-json`), and the refresh lines when `refresh_lines` (the walk that
    /// plans; the one that applies would repeat them).
    pub fn json(refresh_lines: bool) -> Reporter {
        Reporter::new("", None, true, refresh_lines)
    }
}

impl plumb_infra::Progress for Reporter {
    fn add_total(&self, n: u64) {
        let t = self.total.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(b) = &self.bar {
            b.set_length(t);
        }
    }

    fn instance_done(&self, _addr: &InstanceAddr) {
        let d = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(b) = &self.bar {
            b.set_position(d);
            return;
        }
        if self.json {
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= Duration::from_secs(10) {
            *last = Instant::now();
            eprintln!(
                "{}: {d}/{} instances ({}s elapsed)",
                self.verb,
                self.total.load(Ordering::Relaxed),
                self.started.elapsed().as_secs()
            );
        }
    }

    fn refresh_start(&self, addr: &InstanceAddr, prior: &Value) {
        if self.refresh_lines {
            ui::refresh(addr, prior, false);
        }
    }

    fn refresh_complete(&self, addr: &InstanceAddr, value: &Value) {
        if self.refresh_lines {
            ui::refresh(addr, value, true);
        }
    }

    fn drift(&self, addr: &InstanceAddr, gone: bool) {
        if self.refresh_lines {
            ui::drift(addr, gone);
        }
    }

    fn apply_start(&self, addr: &InstanceAddr, action: Action, prior: &Value) {
        if self.json {
            ui::apply_start(addr, action, prior);
        }
    }

    fn apply_end(
        &self,
        addr: &InstanceAddr,
        action: Action,
        outcome: Option<&Value>,
        elapsed: Duration,
    ) {
        if self.json {
            match outcome {
                Some(v) => ui::apply_complete(addr, action, v, elapsed),
                None => ui::apply_errored(addr, action, elapsed),
            }
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
