//! A token bucket, fed with the caller's clock.

use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    at: Option<Instant>,
}

impl TokenBucket {
    pub fn full(limit: RateLimit) -> TokenBucket {
        TokenBucket {
            tokens: limit.burst,
            at: None,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, limit: RateLimit, now: Instant) -> bool {
        if let Some(at) = self.at {
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + elapsed * limit.per_second).min(limit.burst);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_steady_rate() {
        let limit = RateLimit {
            per_second: 5.0,
            burst: 10.0,
        };
        let mut b = TokenBucket::full(limit);
        let t0 = Instant::now();
        assert_eq!((0..15).filter(|_| b.take(limit, t0)).count(), 10);
        // One second later: five more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..15).filter(|_| b.take(limit, t1)).count(), 5);
        // Never more than the burst, however long the pause.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!((0..15).filter(|_| b.take(limit, t2)).count(), 10);
    }
}
