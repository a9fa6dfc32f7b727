//! Per-keypair request rate limiting (spec §4.5).
//!
//! The original counts each access key's requests over a rolling 15-minute window and answers
//! `429 rate-limit-exceeded` once the count exceeds the keypair's `rate_limit`; every response
//! to a signed request carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
//! `X-RateLimit-Window` (seconds). [`RateLimiter`] is that counter; [`InMemoryRateLimiter`]
//! keeps it in this process (the embedded mode, one manager); [`RedisRateLimiter`] keeps it in
//! Redis, so that several managers share each keypair's count (a cluster).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use chrono::{DateTime, Utc};

use super::clock::{Clock, SystemClock};
use super::error::ApiError;

/// The original's rolling window: 15 minutes.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// `X-RateLimit-Limit`: the keypair's limit per window.
pub const LIMIT_HEADER: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`: requests left in the current window.
pub const REMAINING_HEADER: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Window`: the window length in seconds.
pub const WINDOW_HEADER: HeaderName = HeaderName::from_static("x-ratelimit-window");

/// The outcome of counting one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitStatus {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The limit per window.
    pub limit: i64,
    /// Requests left in the window after this one (0 when refused).
    pub remaining: i64,
    /// The window length.
    pub window: Duration,
    /// When refused: how long until the oldest counted request leaves the window.
    pub retry_after: Option<Duration>,
}

impl RateLimitStatus {
    /// The `X-RateLimit-*` headers for this status (plus `Retry-After` when refused).
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(LIMIT_HEADER, HeaderValue::from(self.limit));
        headers.insert(REMAINING_HEADER, HeaderValue::from(self.remaining.max(0)));
        headers.insert(WINDOW_HEADER, HeaderValue::from(self.window.as_secs()));
        if let Some(after) = self.retry_after {
            // Round up so a client that waits this long is admitted.
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        headers
    }
}

/// Counts requests per access key over a rolling window.
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one request by `access_key`, whose keypair allows `limit` requests per window
    /// (`limit > 0`; the caller skips keypairs without a limit), and says whether it may
    /// proceed.
    async fn check(&self, access_key: &str, limit: i64) -> Result<RateLimitStatus, ApiError>;
}

#[async_trait]
impl<T: RateLimiter + ?Sized> RateLimiter for Arc<T> {
    async fn check(&self, access_key: &str, limit: i64) -> Result<RateLimitStatus, ApiError> {
        (**self).check(access_key, limit).await
    }
}

/// A limiter that admits everything and reports nothing (benchmarks, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRateLimit;

#[async_trait]
impl RateLimiter for NoRateLimit {
    async fn check(&self, _access_key: &str, limit: i64) -> Result<RateLimitStatus, ApiError> {
        Ok(RateLimitStatus { allowed: true, limit, remaining: limit, window: DEFAULT_WINDOW, retry_after: None })
    }
}

/// How many calls between sweeps of idle access keys.
const SWEEP_EVERY: u64 = 4096;

#[derive(Debug, Default)]
struct Windows {
    /// Timestamps (ms) of the admitted requests of each key within the window, oldest first.
    by_key: HashMap<String, VecDeque<i64>>,
    calls: u64,
}

/// An exact rolling-window counter in this process's memory.
///
/// Each key keeps the times of its admitted requests in the window, at most `limit` of them;
/// refused requests are not counted, so a client that keeps calling is admitted again as soon
/// as its oldest request leaves the window. Keys idle for a whole window are swept away.
pub struct InMemoryRateLimiter {
    window: Duration,
    clock: Arc<dyn Clock>,
    state: Mutex<Windows>,
}

impl std::fmt::Debug for InMemoryRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryRateLimiter").field("window", &self.window).finish_non_exhaustive()
    }
}

impl Default for InMemoryRateLimiter {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

impl InMemoryRateLimiter {
    /// A limiter with the given window, on the system clock.
    pub fn new(window: Duration) -> Self {
        Self::with_clock(window, Arc::new(SystemClock))
    }

    /// A limiter with the given window and clock.
    pub fn with_clock(window: Duration, clock: Arc<dyn Clock>) -> Self {
        InMemoryRateLimiter { window, clock, state: Mutex::new(Windows::default()) }
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX)
    }

    fn count(&self, access_key: &str, limit: i64, now: DateTime<Utc>) -> RateLimitStatus {
        let now_ms = now.timestamp_millis();
        let window_ms = self.window_ms();
        let horizon = now_ms.saturating_sub(window_ms);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.calls += 1;
        if state.calls >= SWEEP_EVERY {
            state.calls = 0;
            state.by_key.retain(|_, times| times.back().is_some_and(|&t| t > horizon));
        }
        let times = state.by_key.entry(access_key.to_string()).or_default();
        while times.front().is_some_and(|&t| t <= horizon) {
            times.pop_front();
        }
        let used = i64::try_from(times.len()).unwrap_or(i64::MAX);
        if used >= limit {
            let oldest = times.front().copied().unwrap_or(now_ms);
            let wait_ms = u64::try_from(oldest.saturating_add(window_ms).saturating_sub(now_ms)).unwrap_or(0);
            return RateLimitStatus {
                allowed: false,
                limit,
                remaining: 0,
                window: self.window,
                retry_after: Some(Duration::from_millis(wait_ms)),
            };
        }
        times.push_back(now_ms);
        RateLimitStatus { allowed: true, limit, remaining: limit - used - 1, window: self.window, retry_after: None }
    }
}

#[async_trait]
impl RateLimiter for InMemoryRateLimiter {
    async fn check(&self, access_key: &str, limit: i64) -> Result<RateLimitStatus, ApiError> {
        if limit <= 0 {
            return Ok(RateLimitStatus { allowed: true, limit, remaining: 0, window: self.window, retry_after: None });
        }
        Ok(self.count(access_key, limit, self.clock.now()))
    }
}

/// The Redis key prefix: a keypair's window is the sorted set `ratelimit.<access key>`.
pub const REDIS_KEY_PREFIX: &str = "ratelimit.";

/// The counter the Redis script draws unique member names from.
const REDIS_SEQUENCE_KEY: &str = "ratelimit.__request_id";

/// One atomic step of the sliding window, on Redis's own clock (so that every manager agrees):
/// drop the entries older than the window, count the rest, and when below the limit add this
/// request (score: now in ms) and renew the key's expiry. Returns `{admitted (0|1), count,
/// ms until the oldest entry leaves the window (when refused)}`.
///
/// `KEYS[1]`: the keypair's sorted set; `KEYS[2]`: the member sequence. `ARGV[1]`: the limit;
/// `ARGV[2]`: the window in ms.
const REDIS_WINDOW_SCRIPT: &str = r"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local used = tonumber(redis.call('ZCARD', key))
if used >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local first = now
  if oldest[2] then first = tonumber(oldest[2]) end
  local wait = first + window - now
  if wait < 0 then wait = 0 end
  return {0, used, wait}
end
local id = redis.call('INCR', KEYS[2])
if id >= 1000000000000 then redis.call('SET', KEYS[2], 0) end
redis.call('ZADD', key, now, tostring(now) .. ':' .. tostring(id))
redis.call('PEXPIRE', key, window)
return {1, used + 1, 0}
";

/// A rolling-window counter in Redis, shared by every manager of a cluster.
///
/// Each keypair's admitted requests are the members of the sorted set
/// `ratelimit.<access key>`, scored by their time in ms; one Lua script (sent with `EVAL`, so
/// it runs atomically) drops the entries older than the window, counts the rest and adds the
/// new request when the count is below the limit. As with [`InMemoryRateLimiter`], refused
/// requests are not counted. Times come from the Redis server's clock, so managers with
/// skewed clocks still agree. The connection is opened on first use and re-established by
/// itself; while Redis is unreachable, signed requests fail with 503
/// `service-unavailable`.
pub struct RedisRateLimiter {
    client: redis::Client,
    /// The URL without its password, for `Debug`.
    shown_url: String,
    connection: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    window: Duration,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("redis", &self.shown_url)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limiter on the Redis at `url` (`redis://[user:password@]host:port/db`) with the given
    /// window. Only the URL is checked here; the connection is made on first use.
    pub fn new(url: &str, window: Duration) -> Result<Self, redis::RedisError> {
        Ok(RedisRateLimiter {
            client: redis::Client::open(url)?,
            shown_url: crate::config::redact(url),
            connection: tokio::sync::OnceCell::new(),
            window,
        })
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    async fn connection(&self) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
        self.connection
            .get_or_try_init(|| {
                // Fail fast: a request must not wait long for an unreachable Redis.
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_number_of_retries(1)
                    .set_max_delay(200)
                    .set_connection_timeout(Duration::from_secs(2))
                    .set_response_timeout(Duration::from_secs(5));
                redis::aio::ConnectionManager::new_with_config(self.client.clone(), config)
            })
            .await
            .cloned()
    }

    async fn count(&self, access_key: &str, limit: i64) -> Result<RateLimitStatus, redis::RedisError> {
        let mut conn = self.connection().await?;
        let window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX).max(1);
        let (admitted, used, wait_ms): (i64, i64, i64) = redis::cmd("EVAL")
            .arg(REDIS_WINDOW_SCRIPT)
            .arg(2)
            .arg(format!("{REDIS_KEY_PREFIX}{access_key}"))
            .arg(REDIS_SEQUENCE_KEY)
            .arg(limit)
            .arg(window_ms)
            .query_async(&mut conn)
            .await?;
        Ok(if admitted == 1 {
            RateLimitStatus {
                allowed: true,
                limit,
                remaining: (limit - used).max(0),
                window: self.window,
                retry_after: None,
            }
        } else {
            RateLimitStatus {
                allowed: false,
                limit,
                remaining: 0,
                window: self.window,
                retry_after: Some(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0))),
            }
        })
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, access_key: &str, limit: i64) -> Result<RateLimitStatus, ApiError> {
        if limit <= 0 {
            return Ok(RateLimitStatus { allowed: true, limit, remaining: 0, window: self.window, retry_after: None });
        }
        let counted = match self.count(access_key, limit).await {
            // The connection was dropped (Redis restarted): the first command on it fails and
            // starts a reconnection, so one more try is answered by the new connection rather
            // than turning this request away.
            Err(e) if e.is_connection_dropped() || e.is_io_error() => self.count(access_key, limit).await,
            other => other,
        };
        counted.map_err(|e| {
            tracing::warn!(error = %e, "rate limiter: Redis unavailable");
            ApiError::service_unavailable("the rate limiter's Redis is unavailable")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::clock::ManualClock;
    use chrono::TimeDelta;

    #[tokio::test]
    async fn rolling_window_admits_limit_then_refuses_then_recovers() {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let limiter = InMemoryRateLimiter::with_clock(Duration::from_secs(60), clock.clone());
        for remaining in [2, 1, 0] {
            let s = limiter.check("AK", 3).await.unwrap();
            assert!(s.allowed);
            assert_eq!(s.remaining, remaining);
            clock.advance(TimeDelta::seconds(10));
        }
        let refused = limiter.check("AK", 3).await.unwrap();
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Some(Duration::from_secs(30)));
        assert_eq!(refused.headers()["retry-after"], "30");
        // other keys are independent
        assert!(limiter.check("BK", 3).await.unwrap().allowed);
        // the first request leaves the window after 60 s
        clock.advance(TimeDelta::seconds(31));
        let s = limiter.check("AK", 3).await.unwrap();
        assert!(s.allowed);
        assert_eq!(s.remaining, 0);
        assert!(!limiter.check("AK", 3).await.unwrap().allowed);
    }
}
