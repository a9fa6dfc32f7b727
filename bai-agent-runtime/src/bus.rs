//! The event bus: how agents (and the manager) tell each other what happened.
//!
//! [`EventBus`] has two implementations behind one trait: [`RedisBus`], the transport of a
//! cluster (anycast events are appended to the Redis stream `events`, broadcast events are
//! published on the channel `events_all`, as in the original), and [`MemoryBus`], an
//! in-process bus for the all-in-one embedded mode and for tests.
//!
//! On Redis every stream entry has three fields: `name` (the event name, e.g.
//! `kernel_started`), `source` (the agent id, or `manager`) and `args` (the positional
//! arguments as a JSON array — see [`bai_core::Event`]). The stream is trimmed to about
//! [`STREAM_MAXLEN`] entries.

use std::pin::Pin;

use async_trait::async_trait;
use bai_core::Event;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The Redis stream anycast events go to.
pub const EVENT_STREAM: &str = "events";
/// The Redis pub/sub channel broadcast events go to.
pub const BROADCAST_CHANNEL: &str = "events_all";
/// About how many entries the stream keeps (approximate trimming).
pub const STREAM_MAXLEN: usize = 10_000;

/// An event with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The producer: an agent id or `manager`.
    pub source: String,
    /// The event.
    pub event: Event,
}

impl Envelope {
    /// An envelope from `source`.
    pub fn new(source: impl Into<String>, event: Event) -> Self {
        Self { source: source.into(), event }
    }
}

/// A stream of events as a subscriber sees them.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Envelope>> + Send>>;

/// Where events go. Implementations must be cheap to share (`Arc<dyn EventBus>`).
#[async_trait]
pub trait EventBus: Send + Sync + std::fmt::Debug {
    /// Sends an event to one consumer group member (the manager's event handlers).
    async fn produce(&self, envelope: &Envelope) -> Result<()>;
    /// Sends an event to every subscriber.
    async fn broadcast(&self, envelope: &Envelope) -> Result<()>;
    /// Every event produced or broadcast from now on, in order (best-effort: a slow
    /// subscriber of the memory bus skips what it missed and gets an error saying how many).
    async fn subscribe(&self) -> Result<EventStream>;
    /// Anycast events for the consumer group `group`: each event goes to one member of the
    /// group. A delivery must be [acknowledged](EventBus::ack) once handled; unacknowledged
    /// deliveries of `consumer` come again when it consumes anew (after a crash, say).
    async fn consume(&self, group: &str, consumer: &str) -> Result<DeliveryStream>;
    /// Acknowledges a delivery of `group`.
    async fn ack(&self, group: &str, delivery_id: &str) -> Result<()>;
    /// A short name for logs: `redis` or `memory`.
    fn name(&self) -> &'static str;
}

/// An event delivered to a consumer group member.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The id to acknowledge (the stream entry id on Redis).
    pub id: String,
    /// The event, or why its entry could not be decoded (acknowledge it all the same).
    pub envelope: std::result::Result<Envelope, String>,
}

/// Deliveries of a consumer group.
pub type DeliveryStream = Pin<Box<dyn Stream<Item = Result<Delivery>> + Send>>;

fn bus_error(operation: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Engine { operation, message: e.to_string() }
}

/// The in-process bus.
#[derive(Debug, Clone)]
pub struct MemoryBus {
    sender: tokio::sync::broadcast::Sender<Envelope>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl MemoryBus {
    /// A bus whose subscribers may fall up to `capacity` events behind.
    pub fn new(capacity: usize) -> Self {
        Self { sender: tokio::sync::broadcast::channel(capacity.max(1)).0 }
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn produce(&self, envelope: &Envelope) -> Result<()> {
        // No subscriber is not an error: nobody is listening yet.
        let _ = self.sender.send(envelope.clone());
        Ok(())
    }

    async fn broadcast(&self, envelope: &Envelope) -> Result<()> {
        self.produce(envelope).await
    }

    async fn subscribe(&self) -> Result<EventStream> {
        let receiver = self.sender.subscribe();
        let stream = futures::stream::unfold(receiver, |mut rx| async move {
            match rx.recv().await {
                Ok(envelope) => Some((Ok(envelope), rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    Some((Err(bus_error("receive event", format!("subscriber lagged; {n} events skipped"))), rx))
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
            }
        });
        Ok(Box::pin(stream))
    }

    async fn consume(&self, _group: &str, _consumer: &str) -> Result<DeliveryStream> {
        // One process: every consumer sees every event; ids count deliveries.
        let events = self.subscribe().await?;
        let stream = events
            .enumerate()
            .map(|(i, item)| item.map(|envelope| Delivery { id: i.to_string(), envelope: Ok(envelope) }));
        Ok(Box::pin(stream))
    }

    async fn ack(&self, _group: &str, _delivery_id: &str) -> Result<()> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

/// The Redis bus (stream `events` for anycast, channel `events_all` for broadcast).
#[derive(Clone)]
pub struct RedisBus {
    client: redis::Client,
    connection: redis::aio::ConnectionManager,
    url: String,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus").field("url", &redact(&self.url)).finish_non_exhaustive()
    }
}

/// A URL with its credentials hidden, for messages and logs (`redis://***@host:6379/4`).
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_string(),
    }
}

impl RedisBus {
    /// Connects to `url` (`redis://host:port/db`). Reconnects by itself afterwards.
    pub async fn connect(url: &str) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|e| Error::invalid("redis url", e.to_string()))?;
        // redis' default reconnection backoff waits up to 60 s between attempts (its factor
        // multiplies a 1 s minimum), and every command waits for the reconnection meanwhile:
        // a Redis back after a short outage stalled heartbeats and events for a minute. Retry
        // about every second instead, and never let one command hang.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_factor(1)
            .set_max_delay(1000)
            .set_number_of_retries(5)
            .set_connection_timeout(std::time::Duration::from_secs(2))
            .set_response_timeout(std::time::Duration::from_secs(5));
        let connection = redis::aio::ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| Error::Unreachable { address: redact(url), message: e.to_string() })?;
        Ok(Self { client, connection, url: url.to_string() })
    }

    fn fields(envelope: &Envelope) -> Result<[(&'static str, String); 3]> {
        let args = serde_json::to_string(&envelope.event.args()).map_err(|e| bus_error("encode event", e))?;
        Ok([("name", envelope.event.name().to_string()), ("source", envelope.source.clone()), ("args", args)])
    }

    /// Decodes a stream entry's fields back into an envelope.
    pub fn decode(fields: &std::collections::HashMap<String, redis::Value>) -> Result<Envelope> {
        let text = |key: &str| -> Result<String> {
            match fields.get(key) {
                Some(v) => redis::from_redis_value::<String>(v)
                    .map_err(|e| bus_error("decode event", format!("field {key}: {e}"))),
                None => Err(bus_error("decode event", format!("field {key} missing"))),
            }
        };
        let name = text("name")?;
        let args: serde_json::Value = serde_json::from_str(&text("args")?).map_err(|e| bus_error("decode event", e))?;
        let event = Event::from_parts(&name, args)?;
        Ok(Envelope { source: text("source")?, event })
    }
}

#[async_trait]
impl EventBus for RedisBus {
    async fn produce(&self, envelope: &Envelope) -> Result<()> {
        let fields = Self::fields(envelope)?;
        let mut conn = self.connection.clone();
        let options = redis::streams::StreamAddOptions::default().trim(redis::streams::StreamTrimStrategy::maxlen(
            redis::streams::StreamTrimmingMode::Approx,
            STREAM_MAXLEN,
        ));
        let _: String = redis::AsyncCommands::xadd_options(&mut conn, EVENT_STREAM, "*", &fields, &options)
            .await
            .map_err(|e| bus_error("XADD events", e))?;
        Ok(())
    }

    async fn broadcast(&self, envelope: &Envelope) -> Result<()> {
        let payload = serde_json::to_string(&serde_json::json!({
            "name": envelope.event.name(),
            "source": envelope.source,
            "args": envelope.event.args(),
        }))
        .map_err(|e| bus_error("encode event", e))?;
        let mut conn = self.connection.clone();
        let _: i64 = redis::AsyncCommands::publish(&mut conn, BROADCAST_CHANNEL, payload)
            .await
            .map_err(|e| bus_error("PUBLISH events_all", e))?;
        Ok(())
    }

    async fn subscribe(&self) -> Result<EventStream> {
        // A dedicated connection: XREAD BLOCK would stall every other command on a shared one.
        let conn = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| Error::Unreachable { address: redact(&self.url), message: e.to_string() })?;
        // Start after the stream's current last entry, fixed now: events produced between
        // this call and the first poll are delivered too.
        let mut conn = conn;
        let newest: redis::streams::StreamRangeReply =
            redis::AsyncCommands::xrevrange_count(&mut conn, EVENT_STREAM, "+", "-", 1)
                .await
                .map_err(|e| bus_error("XREVRANGE events", e))?;
        let start = newest.ids.first().map(|e| e.id.clone()).unwrap_or_else(|| "0-0".to_string());
        let state = (conn, start, std::collections::VecDeque::<Result<Envelope>>::new());
        let stream = futures::stream::unfold(state, |(mut conn, mut last, mut pending)| async move {
            loop {
                if let Some(item) = pending.pop_front() {
                    return Some((item, (conn, last, pending)));
                }
                let options = redis::streams::StreamReadOptions::default().block(1000).count(100);
                let reply: redis::RedisResult<Option<redis::streams::StreamReadReply>> =
                    redis::AsyncCommands::xread_options(&mut conn, &[EVENT_STREAM], &[last.as_str()], &options).await;
                match reply {
                    Ok(Some(reply)) => {
                        for key in reply.keys {
                            for entry in key.ids {
                                last = entry.id.clone();
                                pending.push_back(Self::decode(&entry.map));
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => return Some((Err(bus_error("XREAD events", e)), (conn, last, pending))),
                }
            }
        });
        Ok(Box::pin(stream))
    }

    async fn consume(&self, group: &str, consumer: &str) -> Result<DeliveryStream> {
        let mut conn = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| Error::Unreachable { address: redact(&self.url), message: e.to_string() })?;
        let created: redis::RedisResult<()> =
            redis::AsyncCommands::xgroup_create_mkstream(&mut conn, EVENT_STREAM, group, "$").await;
        if let Err(e) = created {
            if e.code() != Some("BUSYGROUP") {
                return Err(bus_error("XGROUP CREATE", e));
            }
        }
        // First this consumer's own unacknowledged entries ("0"), then new ones (">").
        let state = (
            conn,
            "0".to_string(),
            std::collections::VecDeque::<Result<Delivery>>::new(),
            group.to_string(),
            consumer.to_string(),
        );
        let stream =
            futures::stream::unfold(state, |(mut conn, mut cursor, mut pending, group, consumer)| async move {
                loop {
                    if let Some(item) = pending.pop_front() {
                        return Some((item, (conn, cursor, pending, group, consumer)));
                    }
                    let options =
                        redis::streams::StreamReadOptions::default().group(&group, &consumer).count(100).block(1000);
                    let reply: redis::RedisResult<Option<redis::streams::StreamReadReply>> =
                        redis::AsyncCommands::xread_options(&mut conn, &[EVENT_STREAM], &[cursor.as_str()], &options)
                            .await;
                    match reply {
                        Ok(Some(reply)) => {
                            let mut got = 0;
                            for key in reply.keys {
                                for entry in key.ids {
                                    got += 1;
                                    let envelope = Self::decode(&entry.map).map_err(|e| e.to_string());
                                    pending.push_back(Ok(Delivery { id: entry.id, envelope }));
                                }
                            }
                            if got == 0 && cursor != ">" {
                                cursor = ">".to_string();
                            }
                        }
                        Ok(None) => {
                            if cursor != ">" {
                                cursor = ">".to_string();
                            }
                        }
                        Err(e) => {
                            return Some((
                                Err(bus_error("XREADGROUP events", e)),
                                (conn, cursor, pending, group, consumer),
                            ))
                        }
                    }
                }
            });
        Ok(Box::pin(stream))
    }

    async fn ack(&self, group: &str, delivery_id: &str) -> Result<()> {
        let mut conn = self.connection.clone();
        let _: i64 = redis::AsyncCommands::xack(&mut conn, EVENT_STREAM, group, &[delivery_id])
            .await
            .map_err(|e| bus_error("XACK", e))?;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn memory_bus_delivers_in_order_to_every_subscriber() {
        let bus = MemoryBus::default();
        let mut a = bus.subscribe().await.unwrap();
        let mut b = bus.subscribe().await.unwrap();
        for reason in ["one", "two"] {
            bus.produce(&Envelope::new("i-1", Event::AgentStarted { reason: reason.into() })).await.unwrap();
        }
        for sub in [&mut a, &mut b] {
            for reason in ["one", "two"] {
                let got = sub.next().await.unwrap().unwrap();
                assert_eq!(got, Envelope::new("i-1", Event::AgentStarted { reason: reason.into() }));
            }
        }
    }

    #[test]
    fn redis_urls_are_redacted() {
        assert_eq!(redact("redis://user:pw@host:6379/4"), "redis://***@host:6379/4");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }
}
