//! Removes what a test left on the shared brokers (keys, streams, queues,
//! sessions), so the next run starts clean.

use std::process::Command;
use std::time::Duration;

/// Deletes the Redis keys matching `pattern` (a test's streams or keys).
pub async fn delete_redis_keys(pattern: &str) {
    let Ok(client) = redis::Client::open("redis://127.0.0.1:6379") else {
        return;
    };
    let Ok(mut c) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    for k in keys {
        let _: Result<i64, _> = redis::cmd("DEL").arg(k).query_async(&mut c).await;
    }
}

/// Deletes the JetStream streams whose name contains `part` (streams are
/// named after their topic, with `.` as `_`).
pub async fn delete_jetstream_streams(part: &str) {
    use futures::StreamExt;
    let Ok(client) = async_nats::connect("nats://127.0.0.1:4222").await else {
        return;
    };
    let js = async_nats::jetstream::new(client);
    let part = part.replace(['.', '*', '>', ' '], "_");
    let mut names = js.stream_names();
    let mut ours = Vec::new();
    while let Some(Ok(n)) = names.next().await {
        if n.contains(&part) {
            ours.push(n);
        }
    }
    for n in ours {
        let _ = js.delete_stream(&n).await;
    }
}

/// Deletes the RabbitMQ queues and exchanges whose name contains `part`
/// (listed with `rabbitmqctl`, deleted over AMQP).
pub async fn delete_rabbitmq(part: &str) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let list = |what: &str| -> Vec<String> {
        Command::new("rabbitmqctl")
            .args([what, "-q", "--no-table-headers", "name"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(|l| l.trim().to_string())
                    .filter(|n| n.contains(part))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (queues, exchanges) = (list("list_queues"), list("list_exchanges"));
    let Ok(conn) = lapin::Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672",
        lapin::ConnectionProperties::default(),
    )
    .await
    else {
        return;
    };
    let Ok(ch) = conn.create_channel().await else {
        return;
    };
    for q in queues {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for e in exchanges {
        let _ = ch
            .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "bye".into()).await;
}

/// Ends the MQTT sessions of these client ids (the consumer connection of
/// `pubsub.mqtt3` for group G on this host is `G-{hostname}`): a clean
/// session connect discards the broker's session and its subscriptions.
pub async fn clear_mqtt_sessions(groups: &[impl AsRef<str>]) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let ids: Vec<String> = groups
        .iter()
        .map(|g| format!("{}-{host}", g.as_ref()))
        .collect();
    clear_mqtt_clients(&ids).await;
}

/// Ends the MQTT sessions of these exact client ids (a component's
/// `consumerID`).
pub async fn clear_mqtt_clients(ids: &[impl AsRef<str>]) {
    for id in ids {
        let mut o = rumqttc::MqttOptions::new(id.as_ref(), "127.0.0.1", 1883);
        o.set_clean_session(true);
        let (client, mut ev) = rumqttc::AsyncClient::new(o, 10);
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(e) = ev.poll().await {
                if matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) {
                    break;
                }
            }
        })
        .await;
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(500), ev.poll()).await;
    }
}
