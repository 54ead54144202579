//! Retrying with exponential backoff, in one place. Docker fails in ways
//! that pass: the overlay network torn down under a start (moby PR#41011),
//! a daemon restarting, a registry resetting connections. Each caller says
//! which errors are worth another try and how patient to be; the loop is
//! the same.

use std::future::Future;
use std::time::Duration;

/// How patient a retry is: the first wait, the longest wait, and how many
/// retries after the first try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry; each next wait doubles.
    pub first: Duration,
    /// No wait is longer than this.
    pub max: Duration,
    /// Retries after the first try.
    pub retries: u32,
}

impl Backoff {
    /// The waits this backoff makes, in order.
    pub fn waits(self) -> impl Iterator<Item = Duration> {
        std::iter::successors(Some(self.first), move |d| Some((*d * 2).min(self.max)))
            .map(move |d| d.min(self.max))
            .take(self.retries as usize)
    }

    /// The whole time spent waiting when every retry is used.
    pub fn total(self) -> Duration {
        self.waits().sum()
    }
}

/// Runs `op` until it succeeds, fails with an error `retryable` refuses, or
/// the backoff's retries are spent (then its last error is returned).
/// Waits on tokio's clock, so a paused-clock test spends no real time.
pub async fn retry<T, E, F, Fut>(backoff: Backoff, retryable: impl Fn(&E) -> bool, mut op: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut waits = backoff.waits();
    loop {
        match op().await {
            Err(e) if retryable(&e) => match waits.next() {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Err(e),
            },
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_max() {
        let b = Backoff { first: Duration::from_millis(50), max: Duration::from_secs(2), retries: 8 };
        let ms: Vec<u128> = b.waits().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![50, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(b.total(), Duration::from_millis(7150));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_only_what_is_retryable_and_gives_up_with_the_last_error() {
        let b = Backoff { first: Duration::from_millis(10), max: Duration::from_millis(40), retries: 3 };
        let mut calls = 0;
        let r: Result<(), u32> = retry(
            b,
            |e| *e < 100,
            || {
                calls += 1;
                let n = calls;
                async move { Err(n) }
            },
        )
        .await;
        assert_eq!((r, calls), (Err(4), 4));
        let mut calls = 0;
        let r: Result<(), u32> = retry(
            b,
            |e| *e < 100,
            || {
                calls += 1;
                async { Err(100) }
            },
        )
        .await;
        assert_eq!((r, calls), (Err(100), 1));
        let mut calls = 0;
        let r: Result<u32, u32> = retry(
            b,
            |_| true,
            || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 3 {
                        Err(n)
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await;
        assert_eq!(r, Ok(3));
    }
}
