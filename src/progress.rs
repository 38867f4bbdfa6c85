//! Progress of the long commands (backup, restore, compact) on a terminal: bytes done, rate and
//! time left, redrawn a few times a second; nothing at all when stderr is not a terminal (cron,
//! systemd), where only the last line is printed.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A running progress display; `finish` (or dropping it) clears it.
pub struct Progress {
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
    sampler: Option<std::thread::JoinHandle<()>>,
}

/// Shows `what` while `measure` (bytes done so far, sampled every 200 ms by a thread of its own)
/// grows toward `total`, if known.
pub fn watch(
    what: &str,
    total: Option<u64>,
    measure: impl Fn() -> u64 + Send + 'static,
) -> Progress {
    let bar = match total {
        Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}, {eta} left",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} {binary_bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_message(what.to_string());
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (bar, stop) = (bar.clone(), stop.clone());
        std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    bar.set_position(measure());
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
            .ok()
    };
    Progress { bar, stop, sampler }
}

impl Progress {
    pub fn finish(mut self) {
        self.end();
    }

    fn end(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.sampler.take() {
            let _ = t.join();
        }
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.end();
    }
}

/// Bytes in people's units: `12.3 MiB`.
pub fn human(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}
