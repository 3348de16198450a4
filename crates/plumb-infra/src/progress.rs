//! Progress for long walks: a bar on a terminal, a line every few seconds
//! otherwise.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::addr::InstanceAddr;

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
            })),
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
