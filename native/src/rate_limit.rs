//! A per-minute request limit and token limit judged together.
//!
//! Each limit is a token bucket that holds one minute's allowance (the burst) and
//! refills at a sixtieth of it per second. A request is admitted only if both
//! buckets can pay, and then both pay: a request rejected for tokens must not burn
//! a request slot, or retries would starve each other.

use crate::error::LimitError;
use crate::token_bucket::{check_amount, check_time, Admission, TokenBucket};

/// Requests-per-minute and tokens-per-minute limits; 0 means unlimited.
#[derive(Debug, Clone)]
pub struct RateLimit {
    requests_per_minute: f64,
    tokens_per_minute: f64,
    requests: Option<TokenBucket>,
    tokens: Option<TokenBucket>,
}

impl RateLimit {
    /// Builds both buckets full. `requests_per_minute` must be 0 or >= 1 (a smaller
    /// bucket could never hold one request), `tokens_per_minute` 0 or > 0; both finite.
    pub fn new(requests_per_minute: f64, tokens_per_minute: f64) -> Result<Self, LimitError> {
        if !(requests_per_minute == 0.0 || requests_per_minute >= 1.0) {
            return Err(LimitError::InvalidRequestLimit(requests_per_minute));
        }
        let requests = per_minute_bucket(requests_per_minute)
            .map_err(|_| LimitError::InvalidRequestLimit(requests_per_minute))?;
        let tokens = per_minute_bucket(tokens_per_minute)
            .map_err(|_| LimitError::InvalidTokenLimit(tokens_per_minute))?;
        Ok(Self {
            requests_per_minute,
            tokens_per_minute,
            requests,
            tokens,
        })
    }

    /// The request limit (0 = unlimited).
    pub fn requests_per_minute(&self) -> f64 {
        self.requests_per_minute
    }

    /// The token limit (0 = unlimited).
    pub fn tokens_per_minute(&self) -> f64 {
        self.tokens_per_minute
    }

    /// Admits one request of `tokens` tokens at `now`, taking from both buckets or,
    /// when either cannot pay, from neither; the wait is then the longer of the two.
    pub fn try_acquire(&mut self, tokens: f64, now: f64) -> Result<Admission, LimitError> {
        check_amount("tokens", tokens)?;
        check_time(now)?;
        if tokens
            > self
                .tokens
                .as_ref()
                .map_or(f64::INFINITY, TokenBucket::capacity)
        {
            return Err(LimitError::ExceedsTokenLimit {
                needed: tokens,
                per_minute: self.tokens_per_minute,
            });
        }
        let mut wait: f64 = 0.0;
        if let Some(bucket) = &mut self.requests {
            bucket.advance(now);
            wait = bucket.wait_for(1.0);
        }
        if let Some(bucket) = &mut self.tokens {
            bucket.advance(now);
            wait = wait.max(bucket.wait_for(tokens));
        }
        if wait > 0.0 {
            return Ok(Admission::Wait(wait));
        }
        if let Some(bucket) = &mut self.requests {
            bucket.consume(1.0);
        }
        if let Some(bucket) = &mut self.tokens {
            bucket.consume(tokens);
        }
        Ok(Admission::Admitted)
    }

    /// Gives back tokens a request reserved but did not use. The request itself
    /// still counts: it was made.
    pub fn refund(&mut self, tokens: f64, now: f64) -> Result<(), LimitError> {
        check_amount("tokens", tokens)?;
        check_time(now)?;
        match &mut self.tokens {
            Some(bucket) => bucket.give_back(tokens, now),
            None => Ok(()),
        }
    }

    /// Requests available at `now`, `None` when unlimited.
    pub fn available_requests(&mut self, now: f64) -> Result<Option<f64>, LimitError> {
        self.requests.as_mut().map(|b| b.available(now)).transpose()
    }

    /// Tokens available at `now`, `None` when unlimited.
    pub fn available_tokens(&mut self, now: f64) -> Result<Option<f64>, LimitError> {
        self.tokens.as_mut().map(|b| b.available(now)).transpose()
    }
}

/// A bucket holding one minute's allowance, or `None` for 0 (unlimited).
fn per_minute_bucket(per_minute: f64) -> Result<Option<TokenBucket>, LimitError> {
    if per_minute == 0.0 {
        return Ok(None);
    }
    TokenBucket::new(per_minute, per_minute / 60.0).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejected_for_tokens_does_not_spend_a_request() {
        let mut limit = RateLimit::new(2.0, 600.0).unwrap();
        assert_eq!(limit.try_acquire(500.0, 0.0), Ok(Admission::Admitted));
        // 100 tokens left, refilling at 10/s: 200 more need 20 s.
        assert_eq!(limit.try_acquire(300.0, 0.0), Ok(Admission::Wait(20.0)));
        assert_eq!(limit.available_requests(0.0), Ok(Some(1.0)));
        assert_eq!(limit.try_acquire(100.0, 0.0), Ok(Admission::Admitted));
        assert_eq!(limit.available_tokens(0.0), Ok(Some(0.0)));
    }

    #[test]
    fn wait_is_the_longer_of_the_two() {
        let mut limit = RateLimit::new(1.0, 60.0).unwrap();
        limit.try_acquire(30.0, 0.0).unwrap();
        // Requests: 1 more in 60 s. Tokens: 30 left, 60 needed: 30 s.
        assert_eq!(limit.try_acquire(60.0, 0.0), Ok(Admission::Wait(60.0)));
        assert_eq!(limit.try_acquire(60.0, 60.0), Ok(Admission::Admitted));
    }

    #[test]
    fn zero_means_unlimited() {
        let mut limit = RateLimit::new(0.0, 0.0).unwrap();
        for i in 0..10_000 {
            assert_eq!(
                limit.try_acquire(1e12, f64::from(i)),
                Ok(Admission::Admitted)
            );
        }
        assert_eq!(limit.available_requests(0.0), Ok(None));
        let mut only_requests = RateLimit::new(1.0, 0.0).unwrap();
        assert_eq!(
            only_requests.try_acquire(1e12, 0.0),
            Ok(Admission::Admitted)
        );
        assert_eq!(
            only_requests.try_acquire(0.0, 0.0),
            Ok(Admission::Wait(60.0))
        );
    }

    #[test]
    fn refund_returns_tokens_but_not_the_request() {
        let mut limit = RateLimit::new(10.0, 1000.0).unwrap();
        limit.try_acquire(800.0, 0.0).unwrap();
        limit.refund(500.0, 0.0).unwrap();
        assert_eq!(limit.available_tokens(0.0), Ok(Some(700.0)));
        assert_eq!(limit.available_requests(0.0), Ok(Some(9.0)));
        limit.refund(1e9, 0.0).unwrap();
        assert_eq!(limit.available_tokens(0.0), Ok(Some(1000.0)));
    }

    #[test]
    fn rejects_bad_limits_and_requests() {
        for bad in [f64::NAN, -1.0, 0.5, f64::INFINITY] {
            assert!(matches!(
                RateLimit::new(bad, 0.0),
                Err(LimitError::InvalidRequestLimit(_))
            ));
        }
        for bad in [f64::NAN, -1.0, f64::INFINITY] {
            assert!(matches!(
                RateLimit::new(0.0, bad),
                Err(LimitError::InvalidTokenLimit(_))
            ));
        }
        let mut limit = RateLimit::new(60.0, 4000.0).unwrap();
        assert_eq!(
            limit.try_acquire(5000.0, 0.0).unwrap_err().to_string(),
            "request needs 5000 tokens but the limit allows at most 4000 per minute"
        );
        assert_eq!(
            limit.try_acquire(-1.0, 0.0).unwrap_err().to_string(),
            "tokens must be a finite number >= 0, got -1"
        );
        assert!(matches!(
            limit.refund(f64::NAN, 0.0),
            Err(LimitError::InvalidAmount { name: "tokens", .. })
        ));
        assert!(matches!(
            limit.try_acquire(1.0, f64::INFINITY),
            Err(LimitError::InvalidTime(_))
        ));
    }

    proptest! {
        /// Every call either takes one request and `tokens` tokens, or changes nothing,
        /// and a rejection's wait is exactly the longer of the two buckets' waits.
        #[test]
        fn takes_from_both_buckets_or_neither(
            rpm in 1.0..100.0f64,
            tpm in 1.0..10_000.0f64,
            calls in prop::collection::vec((0.0..3.0f64, 0.0..1.0f64), 1..200),
        ) {
            let mut limit = RateLimit::new(rpm, tpm).unwrap();
            let mut now = 0.0;
            for (dt, fraction) in calls {
                now += dt;
                let tokens = fraction * tpm;
                let requests_before = limit.available_requests(now).unwrap().unwrap();
                let tokens_before = limit.available_tokens(now).unwrap().unwrap();
                let before = limit.clone();
                let admission = limit.try_acquire(tokens, now).unwrap();
                let requests_after = limit.available_requests(now).unwrap().unwrap();
                let tokens_after = limit.available_tokens(now).unwrap().unwrap();
                match admission {
                    Admission::Admitted => {
                        prop_assert!((requests_before - 1.0 - requests_after).abs() < 1e-6);
                        prop_assert!((tokens_before - tokens - tokens_after).abs() < 1e-6 * tpm);
                    }
                    Admission::Wait(wait) => {
                        prop_assert_eq!(requests_before, requests_after);
                        prop_assert_eq!(tokens_before, tokens_after);
                        let requests_wait = before.requests.as_ref().unwrap().wait_for(1.0);
                        let tokens_wait = before.tokens.as_ref().unwrap().wait_for(tokens);
                        prop_assert!(wait > 0.0);
                        prop_assert_eq!(wait, requests_wait.max(tokens_wait));
                    }
                }
            }
        }
    }
}
