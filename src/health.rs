//! The health gate between starting the candidate and the commit point: the
//! candidate must stay running without restarts, be on every network it was
//! planned on, and, when it has a healthcheck, reach `healthy` in time.

use std::time::{Duration, Instant};

use crate::docker::Engine;
use crate::report::Report;

/// Limits of the gate.
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    /// How long the candidate may take to become healthy.
    pub timeout: Duration,
    /// Without a healthcheck, how long it must stay running.
    pub settle: Duration,
    /// How often Docker is asked.
    pub poll: Duration,
}

/// Why the candidate did not pass.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// What was seen.
    pub reason: String,
    /// Whether the daemon could not be asked (the candidate's fate unknown).
    pub unreachable: bool,
}

impl Gate {
    /// Waits until the candidate passes or fails. Returns the outcome word
    /// (`healthy`, or `running` when it has no healthcheck).
    pub async fn wait<E: Engine>(
        &self,
        engine: &E,
        id: &str,
        networks: &[String],
        report: &Report,
    ) -> Result<&'static str, Rejection> {
        let start = tokio::time::Instant::now();
        let wall = Instant::now();
        loop {
            let c = match engine.container(id).await {
                Ok(Some(c)) => c,
                Ok(None) => return Err(reject("the candidate was removed during its health gate")),
                Err(e) => return Err(Rejection { reason: e.to_string(), unreachable: e.is_unreachable() }),
            };
            if c.restart_count > 0 {
                return Err(reject(format!(
                    "the candidate restarted {} time(s) (last exit code {})",
                    c.restart_count, c.exit_code
                )));
            }
            if !c.running {
                return Err(reject(format!("the candidate exited with code {}", c.exit_code)));
            }
            let missing: Vec<&String> =
                networks.iter().filter(|n| !c.networks.iter().any(|a| &a.network == *n)).collect();
            let elapsed = start.elapsed();
            match c.health.as_deref() {
                Some("healthy") if missing.is_empty() => {
                    report.waiting_done();
                    return Ok("healthy");
                }
                Some("unhealthy") => return Err(reject("the candidate's healthcheck reported unhealthy")),
                None if elapsed >= self.settle && missing.is_empty() => {
                    report.waiting_done();
                    return Ok("running");
                }
                _ => {}
            }
            if crate::signal::interrupted() {
                report.waiting_done();
                return Err(reject("interrupted by a signal"));
            }
            if elapsed >= self.timeout {
                report.waiting_done();
                let why = if !missing.is_empty() {
                    format!("the candidate is not on network(s) {:?}", missing)
                } else {
                    format!(
                        "the candidate was not healthy after {} s (health: {})",
                        self.timeout.as_secs(),
                        c.health.as_deref().unwrap_or("none")
                    )
                };
                return Err(reject(why));
            }
            report.waiting(&format!(
                "waiting for the candidate: {} ({:.1} s)",
                c.health.as_deref().unwrap_or("running"),
                wall.elapsed().as_secs_f64()
            ));
            tokio::time::sleep(self.poll).await;
        }
    }
}

fn reject(reason: impl Into<String>) -> Rejection {
    Rejection { reason: reason.into(), unreachable: false }
}
