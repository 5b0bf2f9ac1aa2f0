//! Progress for long reads and applies, on stderr: a bar when stderr is a terminal, otherwise a
//! plain line at most every 10 seconds (so CI logs show the job is alive). Short jobs (one
//! batch or less) show nothing. Shell code: it looks at the terminal and the clock.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Work smaller than this finishes in one request: no progress output.
const QUIET_BELOW: usize = 51;
const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Progress {
    label: &'static str,
    total: usize,
    done: AtomicUsize,
    bar: Option<ProgressBar>,
    /// For non-terminal output: when the last line was written (None: never report).
    last_line: Option<Mutex<Instant>>,
    started: Instant,
}

impl Progress {
    pub fn start(label: &'static str, total: usize) -> Progress {
        let quiet = total < QUIET_BELOW;
        let terminal = std::io::stderr().is_terminal();
        let bar = (!quiet && terminal).then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:>10} [{bar:30}] {pos}/{len} ({elapsed}, ~{eta} left)",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            bar.set_message(label);
            bar
        });
        Progress {
            label,
            total,
            done: AtomicUsize::new(0),
            bar,
            last_line: (!quiet && !terminal).then(|| Mutex::new(Instant::now())),
            started: Instant::now(),
        }
    }

    pub fn inc(&self, n: usize) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
        if let Some(last) = &self.last_line {
            let mut last = last.lock().expect("progress lock");
            if last.elapsed() >= LOG_EVERY {
                *last = Instant::now();
                eprintln!(
                    "roster: {} {done}/{} ({} s)",
                    self.label,
                    self.total,
                    self.started.elapsed().as_secs()
                );
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
