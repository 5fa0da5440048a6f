//! Logging setup: `--log-level` and `--log-as-json`, as daprd. JSON lines
//! carry daprd's fields — `time`, `level`, `msg`, `scope`, `type`, `ver`,
//! `app_id`, `instance` — plus the event's own fields, so log pipelines
//! built for daprd parse spar's logs unchanged.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub fn init(level: &str, json: bool, app_id: &str) {
    init_to(level, json, app_id, None);
}

/// As [`init`], writing to `file` (appended, `--log-file`) when given.
pub fn init_to(level: &str, json: bool, app_id: &str, file: Option<std::fs::File>) {
    let level = match level {
        "fatal" => "error",
        l => l,
    };
    // pingora logs every closed connection at info; keep those at warn.
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPAR_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{level},pingora_core=warn,pingora_proxy=warn,h2=warn,hyper=warn,openraft=warn"
        ))
    });
    let to_file = file.is_some();
    let writer = match file {
        Some(f) => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::sync::Mutex::new(f)),
        None => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    };
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(!to_file && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if json {
        b.event_format(DaprJson {
            app_id: app_id.to_string(),
            instance: hostname(),
        })
        .try_init()
    } else {
        b.try_init()
    };
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// One JSON object per line in daprd's shape.
struct DaprJson {
    app_id: String,
    instance: String,
}

/// Collects an event's fields: `message` becomes `msg`.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, f: &Field, v: &dyn fmt::Debug) {
        self.insert(f, Value::String(format!("{v:?}")));
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        self.insert(f, Value::String(v.to_string()));
    }
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.insert(f, v.into());
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.insert(f, v.into());
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        self.insert(f, v.into());
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.insert(f, v.into());
    }
}

impl Fields<'_> {
    fn insert(&mut self, f: &Field, v: Value) {
        let key = match f.name() {
            "message" => "msg",
            n => n,
        };
        self.0.insert(key.to_string(), v);
    }
}

/// `spar::subscriber::delivery` → `spar.subscriber.delivery`; targets that
/// already are daprd scopes (`dapr.runtime.http-info`) stay as they are.
fn scope(target: &str) -> String {
    target.replace("::", ".")
}

impl<S, N> FormatEvent<S, N> for DaprJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut m = Map::new();
        m.insert(
            "time".into(),
            humantime::format_rfc3339_micros(std::time::SystemTime::now())
                .to_string()
                .into(),
        );
        m.insert(
            "level".into(),
            meta.level().as_str().to_ascii_lowercase().into(),
        );
        m.insert("scope".into(), scope(meta.target()).into());
        m.insert("type".into(), "log".into());
        m.insert("ver".into(), env!("CARGO_PKG_VERSION").into());
        m.insert("instance".into(), self.instance.clone().into());
        if !self.app_id.is_empty() {
            m.insert("app_id".into(), self.app_id.clone().into());
        }
        // The event's own fields; one that would shadow daprd's (a component
        // logging `type = ...`) keeps its value under `<name>_`.
        let mut own = Map::new();
        event.record(&mut Fields(&mut own));
        for (k, v) in own {
            if k != "msg" && m.contains_key(&k) {
                m.insert(format!("{k}_"), v);
            } else {
                m.insert(k, v);
            }
        }
        let line = serde_json::to_string(&Value::Object(m)).map_err(|_| fmt::Error)?;
        writeln!(w, "{line}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn scopes() {
        assert_eq!(super::scope("spar::subscriber"), "spar.subscriber");
        assert_eq!(
            super::scope("dapr.runtime.http-info"),
            "dapr.runtime.http-info"
        );
    }
}
