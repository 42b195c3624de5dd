//! Where the server reads the time: session expiry, token `iat`/`exp`, audit times, the
//! freshness of reference values and collateral. Production uses [`SystemClock`]; tests use
//! a [`ManualClock`] and step it instead of sleeping.
//!
//! A clock that cannot be read (the system time is before 1970) is an error the caller
//! sees, never time 0: at time 0 every session and token would look unexpired.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The system clock reads a time before the Unix epoch.
#[derive(Debug, thiserror::Error)]
#[error("the system clock reads a time before 1970-01-01")]
pub struct ClockError(#[source] pub std::time::SystemTimeError);

/// A source of the current time, in Unix milliseconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> Result<i64, ClockError>;

    /// Whole seconds since the Unix epoch (what sessions, tokens and the store count in).
    fn now_secs(&self) -> Result<i64, ClockError> {
        Ok(self.now_ms()?.div_euclid(1000))
    }
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Result<i64, ClockError> {
        system_ms(SystemTime::now())
    }
}

/// Milliseconds from the epoch to `t`; an error for a time before it.
fn system_ms(t: SystemTime) -> Result<i64, ClockError> {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .map_err(ClockError)
}

/// A clock that stands still until told to move: for tests of expiry without sleeping.
/// Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(std::sync::Arc<AtomicI64>);

impl ManualClock {
    /// A clock reading `secs` seconds after the epoch.
    pub fn at_secs(secs: i64) -> Self {
        ManualClock(std::sync::Arc::new(AtomicI64::new(
            secs.saturating_mul(1000),
        )))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Result<i64, ClockError> {
        Ok(self.0.load(Ordering::SeqCst))
    }
}

/// A clock that always fails, as the system clock does when set before 1970.
#[derive(Debug, Clone, Copy, Default)]
pub struct BrokenClock;

impl Clock for BrokenClock {
    fn now_ms(&self) -> Result<i64, ClockError> {
        system_ms(UNIX_EPOCH - Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_before_the_epoch_is_an_error_not_zero() {
        assert!(BrokenClock.now_ms().is_err());
        assert!(BrokenClock.now_secs().is_err());
        assert!(SystemClock.now_secs().unwrap() > 1_600_000_000);
    }

    #[test]
    fn a_manual_clock_moves_only_when_stepped() {
        let c = ManualClock::at_secs(1000);
        let shared = c.clone();
        assert_eq!(c.now_secs().unwrap(), 1000);
        shared.advance(Duration::from_millis(1500));
        assert_eq!(c.now_ms().unwrap(), 1_001_500);
        assert_eq!(c.now_secs().unwrap(), 1001);
    }
}
