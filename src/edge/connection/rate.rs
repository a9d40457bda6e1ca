//! The rate limit on client frames: a token bucket per connection.

use std::time::{Duration, Instant};

/// `per_sec` frames a second, with bursts of as many.
pub struct TokenBucket {
    tokens: f64,
    /// Also the bucket's capacity.
    per_sec: u32,
    at: Instant,
    last_error: Option<Instant>,
    dropped: u32,
}

impl TokenBucket {
    pub fn new(per_sec: u32) -> Self {
        TokenBucket {
            tokens: f64::from(per_sec),
            per_sec,
            at: Instant::now(),
            last_error: None,
            dropped: 0,
        }
    }

    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        let per_sec = f64::from(self.per_sec);
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * per_sec).min(per_sec);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.dropped = 0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// One `rate_limited` error per second at most, so a flood cannot amplify itself.
    pub fn should_report(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last_error
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.last_error = Some(now);
            true
        } else {
            false
        }
    }

    /// Frames dropped in a row.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }
}
