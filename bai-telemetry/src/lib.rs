//! Logs and traces of the bai daemons, shared by `bai-manager` and `bai-agent`.
//!
//! - Log lines on stderr, human-readable ([`LogFormat::Text`], the default) or one JSON object
//!   per line ([`LogFormat::Json`], see [`json`]) with `level`, `component`, and the
//!   `session_id` / `user_id` of the spans an event happened in; `BAI_LOG` filters them
//!   (`info` by default, any `tracing-subscriber` `EnvFilter` directive).
//! - OpenTelemetry spans exported over OTLP/gRPC when `[tracing] otlp-endpoint` (or
//!   `OTEL_EXPORTER_OTLP_ENDPOINT`) is set; off otherwise, and then nothing is exported.
//!   Spans at `info` and above are exported, and `warn`/`error` events as their span events;
//!   the transport crates' own spans (tonic, h2, hyper) never are, so the exporter's calls do
//!   not trace themselves.
//! - [`propagation`]: the W3C `traceparent` across processes, so that one trace runs from a
//!   manager's API request through the scheduler to the agent creating the containers.
//!
//! This crate never decides what is traced: the daemons open the spans. It does no I/O of
//! its own besides writing log lines and the exporter's background export.

pub mod config;
pub mod json;
pub mod propagation;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

pub use config::{LogFormat, TracingConfig};

/// The environment variable holding the log filter (`info` when unset or invalid).
pub const LOG_FILTER_ENV: &str = "BAI_LOG";

/// A bad setting, or an exporter that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Error {
    /// The key or flag.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl Error {
    /// An error about `field`.
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Self { field: field.to_string(), reason: reason.into() }
    }
}

/// The exporter of a running daemon, if any: keep it for the process's life and call
/// [`shutdown`](Self::shutdown) at the end so the last spans are sent.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans that ended so far and waits for the collector's answer. Blocks: call
    /// it from a blocking thread (`spawn_blocking`) of a multi-threaded runtime, whose other
    /// threads drive the exporter's connection.
    pub fn flush(&self) -> Result<(), Error> {
        match &self.provider {
            Some(p) => p.force_flush().map_err(|e| Error::invalid("tracing.otlp-endpoint", e.to_string())),
            None => Ok(()),
        }
    }

    /// Flushes and stops the exporter (blocking, like [`flush`](Self::flush)).
    pub fn shutdown(mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("tracing: the span exporter did not shut down cleanly: {e}");
            }
        }
    }
}

/// Whether a span or event is exported: our spans at `info` and above, `warn` and `error`
/// events, never the transport crates' (the exporter itself runs on them).
fn exported(meta: &Metadata<'_>) -> bool {
    const TRANSPORT: &[&str] = &["h2", "hyper", "hyper_util", "tonic", "tower", "opentelemetry"];
    let krate = meta.target().split("::").next().unwrap_or_default();
    if TRANSPORT.contains(&krate) || krate.starts_with("opentelemetry") {
        return false;
    }
    if meta.is_event() {
        *meta.level() <= Level::WARN
    } else {
        *meta.level() <= Level::INFO
    }
}

/// The tracer provider exporting to `config`'s endpoint, or `None` when none is set. Must be
/// called inside a Tokio runtime (the gRPC channel lives on it).
fn provider(component: &str, config: &TracingConfig) -> Result<Option<SdkTracerProvider>, Error> {
    if !config.exports() {
        return Ok(None);
    }
    config.validate("tracing")?;
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::invalid("tracing.otlp-endpoint", "the exporter must be started inside a Tokio runtime"));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.otlp_endpoint.clone())
        .build()
        .map_err(|e| Error::invalid("tracing.otlp-endpoint", e.to_string()))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name_for(component))
        .with_attribute(KeyValue::new("bai.component", component.to_string()))
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_resource(resource)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))))
            .with_batch_exporter(exporter)
            .build(),
    ))
}

/// Layers for a subscriber `S`, as [`layers`] builds them.
pub type Layers<S> = Vec<Box<dyn Layer<S> + Send + Sync>>;

/// The layers of a daemon labelled `component` (`manager`, `agent`): log lines in
/// `config.log_format` to `writer`, filtered by `BAI_LOG`, and the span exporter when
/// `config` sets an endpoint. For embedding in one's own subscriber; daemons use [`init`].
/// Must be called inside a Tokio runtime when exporting.
pub fn layers<S, W>(component: &'static str, config: &TracingConfig, writer: W) -> Result<(Layers<S>, Telemetry), Error>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    config.validate("tracing")?;
    let filter = EnvFilter::try_from_env(LOG_FILTER_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    let mut layers: Layers<S> = vec![match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(writer).with_filter(filter).boxed(),
        LogFormat::Json => json::JsonLayer::new(component, writer).with_filter(filter).boxed(),
    }];
    let provider = provider(component, config)?;
    if let Some(p) = &provider {
        let tracer = p.tracer(format!("bai-{component}"));
        layers.push(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(filter_fn(exported)).boxed());
    }
    Ok((layers, Telemetry { provider }))
}

/// Installs the process's logging and tracing (see the crate docs) as the global default, log
/// lines on stderr. Call it once, inside the Tokio runtime when `config` exports, and keep the
/// returned [`Telemetry`] until the end.
pub fn init(component: &'static str, config: &TracingConfig) -> Result<Telemetry, Error> {
    let (layers, telemetry) = layers(component, config, std::io::stderr)?;
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| Error::invalid("tracing", format!("logging is set up already: {e}")))?;
    Ok(telemetry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_endpoint_nothing_is_exported() {
        let (layers, telemetry) =
            layers::<tracing_subscriber::Registry, _>("agent", &TracingConfig::default(), std::io::sink).unwrap();
        assert_eq!(layers.len(), 1);
        assert!(!telemetry.exporting());
        telemetry.flush().unwrap();
    }

    #[test]
    fn the_exporter_needs_a_runtime_and_a_valid_config() {
        let config = TracingConfig { otlp_endpoint: "http://127.0.0.1:4317".into(), ..Default::default() };
        let err = layers::<tracing_subscriber::Registry, _>("agent", &config, std::io::sink).err().unwrap();
        assert_eq!(err.field, "tracing.otlp-endpoint");
        let bad = TracingConfig { sample_ratio: -1.0, ..Default::default() };
        let err = layers::<tracing_subscriber::Registry, _>("agent", &bad, std::io::sink).err().unwrap();
        assert_eq!(err.field, "tracing.sample-ratio");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_an_endpoint_spans_are_exported_and_propagated() {
        use tracing_subscriber::layer::SubscriberExt;
        let config = TracingConfig { otlp_endpoint: "http://127.0.0.1:9".into(), ..Default::default() };
        let (layers, telemetry) = layers("manager", &config, std::io::sink).unwrap();
        assert!(telemetry.exporting());
        let subscriber = tracing_subscriber::registry().with(layers);
        tracing::subscriber::with_default(subscriber, || {
            let parent = tracing::info_span!("parent");
            let header = propagation::traceparent(&parent).expect("a recorded span has a traceparent");
            let child = tracing::info_span!("child");
            propagation::set_parent_from_traceparent(&child, &header);
            let child_header = propagation::traceparent(&child).unwrap();
            // Same trace id, another span id.
            assert_eq!(header.split('-').nth(1), child_header.split('-').nth(1));
            assert_ne!(header.split('-').nth(2), child_header.split('-').nth(2));
            let debug = tracing::debug_span!("not exported");
            assert_eq!(propagation::traceparent(&debug), None);
        });
        // Nothing listens on port 9: shutting down must not hang or panic.
        tokio::task::spawn_blocking(move || telemetry.shutdown()).await.unwrap();
    }
}
