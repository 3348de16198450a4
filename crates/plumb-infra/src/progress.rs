//! Progress for long walks: a bar on a terminal, a line every few seconds
//! otherwise, or, for `-json`, a line of the machine-readable UI as each
//! instance's provider call starts and ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use plumb_tfplugin::Value;

use crate::addr::InstanceAddr;
use crate::engine::Action;

/// Progress reporting; cheap to clone.
#[derive(Clone, Default)]
pub struct Progress {
    inner: Option<Arc<Inner>>,
}

struct Inner {
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

impl Progress {
    /// No progress output.
    pub fn hidden() -> Progress {
        Progress { inner: None }
    }

    /// Progress on stderr: a bar on a TTY, periodic lines otherwise.
    pub fn stderr(verb: &'static str) -> Progress {
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
        Progress {
            inner: Some(Arc::new(Inner {
                bar,
                done: AtomicU64::new(0),
                total: AtomicU64::new(0),
                started: Instant::now(),
                last_line: std::sync::Mutex::new(Instant::now()),
                verb,
                json: false,
                refresh_lines: false,
            })),
        }
    }

    /// `apply_start` / `apply_complete` / `apply_errored` lines on stdout
    /// (`-json`), and the refresh lines when `refresh_lines` (the walk that
    /// plans; the one that applies would repeat them).
    pub fn json(refresh_lines: bool) -> Progress {
        Progress {
            inner: Some(Arc::new(Inner {
                bar: None,
                done: AtomicU64::new(0),
                total: AtomicU64::new(0),
                started: Instant::now(),
                last_line: std::sync::Mutex::new(Instant::now()),
                verb: "",
                json: true,
                refresh_lines,
            })),
        }
    }

    fn json_on(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.json)
    }

    /// An instance's provider call begins (`prior` is its value before);
    /// returns when, for [`Progress::apply_end`].
    pub fn apply_start(&self, addr: &InstanceAddr, action: Action, prior: &Value) -> Instant {
        if self.json_on() {
            crate::ui::apply_start(addr, action, prior);
        }
        Instant::now()
    }

    /// Refreshing an instance's state from its provider begins.
    pub fn refresh_start(&self, addr: &InstanceAddr, prior: &Value) {
        if self.inner.as_ref().is_some_and(|i| i.refresh_lines) {
            crate::ui::refresh(addr, prior, false);
        }
    }

    /// Refreshing an instance's state ended with `value`.
    pub fn refresh_complete(&self, addr: &InstanceAddr, value: &Value) {
        if self.inner.as_ref().is_some_and(|i| i.refresh_lines) {
            crate::ui::refresh(addr, value, true);
        }
    }

    /// Refreshing found an instance changed (or `gone`) outside plumb.
    pub fn drift(&self, addr: &InstanceAddr, gone: bool) {
        if self.inner.as_ref().is_some_and(|i| i.refresh_lines) {
            crate::ui::drift(addr, gone);
        }
    }

    /// An instance's provider call ended: with its new value, or failed.
    pub fn apply_end(
        &self,
        addr: &InstanceAddr,
        action: Action,
        outcome: Option<&Value>,
        started: Instant,
    ) {
        if self.json_on() {
            match outcome {
                Some(v) => crate::ui::apply_complete(addr, action, v, started.elapsed()),
                None => crate::ui::apply_errored(addr, action, started.elapsed()),
            }
        }
    }

    /// More work is known.
    pub fn add_total(&self, n: u64) {
        if let Some(i) = &self.inner {
            let t = i.total.fetch_add(n, Ordering::Relaxed) + n;
            if let Some(b) = &i.bar {
                b.set_length(t);
            }
        }
    }

    /// One instance finished.
    pub fn inc(&self, _addr: &InstanceAddr) {
        let Some(i) = &self.inner else {
            return;
        };
        let d = i.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(b) = &i.bar {
            b.set_position(d);
            return;
        }
        if i.json {
            return;
        }
        let mut last = i.last_line.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= Duration::from_secs(10) {
            *last = Instant::now();
            eprintln!(
                "{}: {d}/{} instances ({}s elapsed)",
                i.verb,
                i.total.load(Ordering::Relaxed),
                i.started.elapsed().as_secs()
            );
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(i) = &self.inner
            && let Some(b) = &i.bar
        {
            b.finish_and_clear();
        }
    }
}
