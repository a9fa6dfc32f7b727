//! The Redis event bus against a real Redis (`BAI_TEST_REDIS_URL`, started by scripts/test).

use std::time::Duration;

use bai_agent_runtime::bus::{Envelope, EventBus, RedisBus};
use bai_core::Event;
use bai_test_support::service_env;
use futures::StreamExt;

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

#[tokio::test]
async fn a_consumer_group_gets_each_event_once_and_redelivers_what_was_not_acknowledged() {
    let Some(url) = service_env("BAI_TEST_REDIS_URL") else { return };
    let bus = RedisBus::connect(&url).await.expect("redis");
    let group = unique("group");
    let source = unique("i-bus");
    let mut a = bus.consume(&group, "a").await.unwrap();
    let events: Vec<String> = (0..3).map(|i| format!("reason-{i}")).collect();
    for reason in &events {
        bus.produce(&Envelope::new(&source, Event::AgentStarted { reason: reason.clone() })).await.unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let d = tokio::time::timeout(Duration::from_secs(10), a.next()).await.expect("a delivery").unwrap().unwrap();
        let envelope = d.envelope.clone().unwrap();
        if envelope.source != source {
            bus.ack(&group, &d.id).await.unwrap();
            continue;
        }
        if let Event::AgentStarted { reason } = &envelope.event {
            seen.push((d.id.clone(), reason.clone()));
        }
    }
    assert_eq!(seen.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(), events);
    // Acknowledge the first two only; a new consumption by "a" gets the third again.
    for (id, _) in &seen[..2] {
        bus.ack(&group, id).await.unwrap();
    }
    drop(a);
    let mut again = bus.consume(&group, "a").await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), again.next()).await.expect("a redelivery").unwrap().unwrap();
    assert_eq!(d.id, seen[2].0);
    bus.ack(&group, &d.id).await.unwrap();
    // Another member of the group does not get what "a" already had.
    let mut b = bus.consume(&group, "b").await.unwrap();
    let nothing = tokio::time::timeout(Duration::from_millis(1500), b.next()).await;
    if let Ok(Some(Ok(d))) = nothing {
        assert_ne!(d.envelope.map(|e| e.source).ok(), Some(source), "b got an event of a");
    }
}

#[tokio::test]
async fn subscribers_see_events_produced_after_they_subscribed() {
    let Some(url) = service_env("BAI_TEST_REDIS_URL") else { return };
    let bus = RedisBus::connect(&url).await.expect("redis");
    let source = unique("i-sub");
    let mut sub = bus.subscribe().await.unwrap();
    bus.produce(&Envelope::new(&source, Event::AgentTerminated { reason: "shutdown".into() })).await.unwrap();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), sub.next()).await.expect("an event").unwrap().unwrap();
        if e.source == source {
            assert_eq!(e.event, Event::AgentTerminated { reason: "shutdown".into() });
            break;
        }
    }
}
