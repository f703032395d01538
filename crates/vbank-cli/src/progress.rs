//! Progress on stderr while a command waits (for a receipt, the peer, a deposit, a lock period).
//!
//! Nothing is shown for a wait under a second. Then, on a terminal, one line is redrawn every
//! second; otherwise (a pipe, a log file, CI) a line is written after the first second, every 15
//! seconds, and when the wait ends. Stdout stays clean for `--json`.

use std::{
    future::Future,
    io::{IsTerminal, Write},
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

/// Runs `fut`, showing a countdown to `until` (unix seconds).
pub(crate) async fn countdown<T>(label: &str, until: u64, fut: impl Future<Output = T>) -> T {
    show(fut, |_| format!("{label}: {} s left", until.saturating_sub(unix_now())), label).await
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
        assert_eq!(countdown("a lock", unix_now() + 5, async { "now" }).await, "now");
    }
}
