//! When to restart a daemon that died, and when to give up on it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use plumbing::config::SupervisorConfig;

/// What the supervisor does after a death.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Wait this long, then start the daemon again.
    pub delay: Duration,
    /// The daemon died too often within the window.
    pub crash_loop: bool,
}

/// Exponential backoff with jitter, reset after a stable run, plus a sliding window of
/// deaths that detects a crash loop.
#[derive(Debug)]
pub struct RestartTracker {
    initial: Duration,
    max: Duration,
    stable: Duration,
    loop_limit: usize,
    loop_window: Duration,
    next_delay: Duration,
    deaths: VecDeque<Instant>,
}

impl RestartTracker {
    pub fn new(config: &SupervisorConfig) -> Self {
        RestartTracker {
            initial: config.restart_backoff_initial(),
            max: config.restart_backoff_max(),
            stable: config.restart_stable(),
            loop_limit: config.crash_loop_restarts as usize,
            loop_window: config.crash_loop_window(),
            next_delay: config.restart_backoff_initial(),
            deaths: VecDeque::new(),
        }
    }

    /// Records a death at `now` of a process that had run for `ran_for`. `jitter` in
    /// `[0, 1)` spreads restarts so that daemons failing together do not retry in lockstep.
    pub fn record_death(&mut self, now: Instant, ran_for: Duration, jitter: f64) -> Verdict {
        if ran_for >= self.stable {
            self.next_delay = self.initial;
        }
        self.deaths.push_back(now);
        while let Some(&oldest) = self.deaths.front() {
            if now.duration_since(oldest) > self.loop_window {
                self.deaths.pop_front();
            } else {
                break;
            }
        }
        let base = self.next_delay;
        self.next_delay = (base * 2).min(self.max);
        Verdict {
            // Between 75% and 125% of the nominal delay.
            delay: base.mul_f64(0.75 + jitter.clamp(0.0, 1.0) / 2.0),
            crash_loop: self.deaths.len() >= self.loop_limit,
        }
    }

    pub fn deaths_in_window(&self) -> usize {
        self.deaths.len()
    }

    pub fn window(&self) -> Duration {
        self.loop_window
    }
}

/// A number in `[0, 1)` from the OS's random source; without one, no jitter.
pub fn jitter() -> f64 {
    getrandom::u32().map_or(0.5, |r| f64::from(r) / (f64::from(u32::MAX) + 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> RestartTracker {
        RestartTracker::new(&SupervisorConfig::default())
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut t = tracker();
        let start = Instant::now();
        let delays: Vec<_> = (0..9)
            .map(|i| {
                t.record_death(start + Duration::from_secs(40 * i), Duration::ZERO, 0.5)
                    .delay
            })
            .collect();
        let millis: Vec<_> = delays.iter().map(|d| d.as_millis()).collect();
        assert_eq!(
            millis,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]
        );
    }

    #[test]
    fn jitter_stays_within_a_quarter_of_the_delay() {
        let mut low = tracker();
        let mut high = tracker();
        let now = Instant::now();
        assert_eq!(
            low.record_death(now, Duration::ZERO, 0.0).delay.as_millis(),
            187
        );
        assert_eq!(
            high.record_death(now, Duration::ZERO, 0.999_999)
                .delay
                .as_millis(),
            312
        );
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }

    #[test]
    fn a_stable_run_resets_the_delay() {
        let mut t = tracker();
        let now = Instant::now();
        for _ in 0..5 {
            t.record_death(now, Duration::ZERO, 0.5);
        }
        let verdict = t.record_death(now, Duration::from_secs(61), 0.5);
        assert_eq!(verdict.delay, Duration::from_millis(250));
    }

    #[test]
    fn ten_deaths_in_five_minutes_is_a_crash_loop_and_old_deaths_age_out() {
        let mut t = tracker();
        let start = Instant::now();
        for i in 0..9 {
            let v = t.record_death(start + Duration::from_secs(i * 30), Duration::ZERO, 0.5);
            assert!(!v.crash_loop, "death {i}");
        }
        // The first death is now more than five minutes old.
        let v = t.record_death(start + Duration::from_secs(301), Duration::ZERO, 0.5);
        assert!(!v.crash_loop);
        assert_eq!(t.deaths_in_window(), 9);
        let v = t.record_death(start + Duration::from_secs(302), Duration::ZERO, 0.5);
        assert!(v.crash_loop);
    }
}
