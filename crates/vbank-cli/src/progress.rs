//! Progress on stderr while a command waits (for a receipt, the peer, a deposit, a lock period).
//!
//! Nothing is shown for a wait under a second. Then, on a terminal, one line is redrawn every
//! second; otherwise (a pipe, a log file, CI) a line is written after the first second, every 15
//! seconds, and when the wait ends. Stdout stays clean for `--json`.

use std::{
    future::Future,
    io::{IsTerminal, Write},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Runs `fut`; each second, `line(seconds waited)` says how it goes.
async fn show<T>(fut: impl Future<Output = T>, line: impl Fn(u64) -> String, label: &str) -> T {
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut fut = std::pin::pin!(fut);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = None::<u64>;
    let out = loop {
        tokio::select! {
            out = &mut fut => break out,
            _ = tick.tick() => {
                let s = start.elapsed().as_secs();
                if tty {
                    eprint!("\r{} ", line(s));
                    let _ = std::io::stderr().flush();
                    last = Some(s);
                } else if last.is_none_or(|l| s >= l + 15) {
                    eprintln!("{}", line(s));
                    last = Some(s);
                }
            }
        }
    };
    if last.is_some() {
        let lead = if tty { "\r" } else { "" };
        eprintln!("{lead}{label}: done in {:.1} s", start.elapsed().as_secs_f64());
    }
    out
}

/// Runs `fut`, showing `label` and the seconds spent.
pub(crate) async fn waiting<T>(label: &str, fut: impl Future<Output = T>) -> T {
    show(fut, |s| format!("{label}… {s} s"), label).await
}

/// Shows on stderr what a library operation is waiting for, step by step, as [`waiting`] and
/// [`countdown`] do for one future: each step the library reports ([`vbank::Progress::Waiting`],
/// [`vbank::Progress::Countdown`]) is drawn while it lasts; notes are written as they come; the
/// rest goes to the handler given to [`Tracker::with`].
#[derive(Clone)]
pub(crate) struct Tracker {
    current: Arc<Mutex<Option<Step>>>,
    handler: Arc<dyn Fn(&vbank::Progress) + Send + Sync>,
}

struct Step {
    label: String,
    until: Option<u64>,
    start: Instant,
    shown: Option<u64>,
}

impl Tracker {
    /// A tracker that draws waits and notes only.
    pub(crate) fn new() -> Self {
        Self::with(|_| {})
    }

    /// A tracker that also hands every other progress report to `handler`.
    pub(crate) fn with(handler: impl Fn(&vbank::Progress) + Send + Sync + 'static) -> Self {
        Self { current: Arc::new(Mutex::new(None)), handler: Arc::new(handler) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Step>> {
        self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Ends the step shown, saying how long it took if it was drawn.
    fn end(&self) {
        if let Some(step) = self.lock().take()
            && step.shown.is_some()
        {
            let lead = if std::io::stderr().is_terminal() { "\r" } else { "" };
            eprintln!("{lead}{}: done in {:.1} s", step.label, step.start.elapsed().as_secs_f64());
        }
    }

    fn begin(&self, label: String, until: Option<u64>) {
        self.end();
        *self.lock() = Some(Step { label, until, start: Instant::now(), shown: None });
    }

    /// The callback to give the library.
    pub(crate) fn progress(&self) -> vbank::ProgressFn {
        let me = self.clone();
        Arc::new(move |p: vbank::Progress| match p {
            vbank::Progress::Waiting(label) => me.begin(label, None),
            vbank::Progress::Countdown { label, until } => me.begin(label, Some(until)),
            vbank::Progress::Note(text) => {
                me.end();
                eprintln!("{text}");
            }
            other => {
                me.end();
                (me.handler)(&other);
            }
        })
    }

    /// Runs `fut`, drawing the steps it reports each second.
    pub(crate) async fn follow<T>(&self, fut: impl Future<Output = T>) -> T {
        let tty = std::io::stderr().is_terminal();
        let mut fut = std::pin::pin!(fut);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let out = loop {
            tokio::select! {
                out = &mut fut => break out,
                _ = tick.tick() => {
                    let mut current = self.lock();
                    let Some(step) = current.as_mut() else { continue };
                    let s = step.start.elapsed().as_secs();
                    if s == 0 {
                        continue;
                    }
                    let line = match step.until {
                        Some(until) => format!("{}: {} s left", step.label, until.saturating_sub(unix_now())),
                        None => format!("{}… {s} s", step.label),
                    };
                    if tty {
                        eprint!("\r{line} ");
                        let _ = std::io::stderr().flush();
                        step.shown = Some(s);
                    } else if step.shown.is_none_or(|l| s >= l + 15) {
                        eprintln!("{line}");
                        step.shown = Some(s);
                    }
                }
            }
        };
        self.end();
        out
    }
}

/// Ctrl-C or SIGTERM, caught for the whole command once installed: a command that can be
/// interrupted says what it did and what it left, rather than dying mid-way.
#[derive(Clone)]
pub(crate) struct Interrupt(tokio::sync::watch::Receiver<bool>);

impl Interrupt {
    /// Catches SIGINT and SIGTERM from now on.
    pub(crate) fn install() -> Self {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            crate::node::shutdown_signal().await;
            let _ = tx.send(true);
        });
        Self(rx)
    }

    /// Completes once the command is interrupted.
    pub(crate) async fn wait(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|v| *v).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The error of an interrupted command (exit code 130, as a shell reports Ctrl-C).
#[derive(Debug)]
pub(crate) struct Interrupted(pub(crate) String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

/// Seconds since the unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_wrapped_future_decides_the_result() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(40)).await;
            7
        };
        assert_eq!(waiting("a slow thing", slow).await, 7);
        let tracker = Tracker::new();
        let steps = async {
            (tracker.progress())(vbank::Progress::Countdown { label: "a lock".into(), until: unix_now() + 5 });
            tokio::time::sleep(Duration::from_secs(3)).await;
            "now"
        };
        assert_eq!(tracker.follow(steps).await, "now");
    }
}
