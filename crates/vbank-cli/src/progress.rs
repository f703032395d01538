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

/// Runs `fut`, showing `label` and the seconds spent until it completes.
pub(crate) async fn waiting<T>(label: &str, fut: impl Future<Output = T>) -> T {
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut fut = std::pin::pin!(fut);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last_line = None::<u64>;
    let out = loop {
        tokio::select! {
            out = &mut fut => break out,
            _ = tick.tick() => {
                let s = start.elapsed().as_secs();
                if tty {
                    eprint!("\r{label}… {s} s ");
                    let _ = std::io::stderr().flush();
                } else if last_line.is_none_or(|l| s >= l + 15) {
                    eprintln!("{label}… {s} s");
                    last_line = Some(s);
                }
            }
        }
    };
    let s = start.elapsed().as_secs_f64();
    if tty && s >= 1.0 {
        eprintln!("\r{label}: done in {s:.1} s");
    } else if last_line.is_some() {
        eprintln!("{label}: done in {s:.1} s");
    }
    out
}

/// Shows a countdown to `until` (unix seconds) while `fut` runs.
pub(crate) async fn countdown<T>(label: &str, until: u64, fut: impl Future<Output = T>) -> T {
    let tty = std::io::stderr().is_terminal();
    let mut fut = std::pin::pin!(fut);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_line = None::<u64>;
    loop {
        tokio::select! {
            out = &mut fut => {
                if tty { eprintln!(); }
                return out;
            }
            _ = tick.tick() => {
                let left = until.saturating_sub(unix_now());
                if tty {
                    eprint!("\r{label}: {left} s left ");
                    let _ = std::io::stderr().flush();
                } else if last_line.is_none_or(|l| l >= left + 15) {
                    eprintln!("{label}: {left} s left");
                    last_line = Some(left);
                }
            }
        }
    }
}

/// Seconds since the unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
