//! Logging setup: `--log-level` and `--log-as-json`, as daprd.

pub fn init(level: &str, json: bool) {
    let level = match level {
        "fatal" => "error",
        l => l,
    };
    // pingora logs every closed connection at info; keep those at warn.
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPAR_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{level},pingora_core=warn,pingora_proxy=warn,h2=warn,hyper=warn"
        ))
    });
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if json {
        b.json().try_init()
    } else {
        b.try_init()
    };
}
