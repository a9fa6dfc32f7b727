//! [`TracingConfig`]: the `[tracing]` section both daemons' configuration files share — the
//! log format, and where (if anywhere) spans are exported.

use serde::{Deserialize, Serialize};

use crate::Error;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    #[default]
    Text,
    /// One JSON object per line with `timestamp`, `level`, `component`, `target`, `message`,
    /// the event's fields and the `session_id` / `user_id` / `access_key` / `kernel_id` /
    /// `agent_id` of the spans it happened in (see [`crate::json`]).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(Error::invalid("log-format", format!("{other:?} is neither \"text\" nor \"json\""))),
        }
    }
}

/// `[tracing]`: logs and OpenTelemetry traces. Exporting is off unless an endpoint is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct TracingConfig {
    /// `text` (default) or `json`.
    pub log_format: LogFormat,
    /// The OTLP/gRPC endpoint spans are exported to, e.g. `http://otel-collector:4317`; empty
    /// means `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` when set,
    /// else no export at all.
    pub otlp_endpoint: String,
    /// The `service.name` of the exported spans; empty means `OTEL_SERVICE_NAME` when set, else
    /// `bai-<component>` (`bai-manager`, `bai-agent`).
    pub service_name: String,
    /// The fraction (0 to 1) of new traces that are recorded; a call that arrives with a
    /// `traceparent` follows its caller's decision.
    pub sample_ratio: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            otlp_endpoint: String::new(),
            service_name: String::new(),
            sample_ratio: 1.0,
        }
    }
}

impl TracingConfig {
    /// Checks values that parse but make no sense; errors name the key under `section`
    /// (`tracing.sample-ratio`).
    pub fn validate(&self, section: &str) -> Result<(), Error> {
        if !(self.sample_ratio.is_finite() && (0.0..=1.0).contains(&self.sample_ratio)) {
            return Err(Error::invalid(
                &format!("{section}.sample-ratio"),
                format!("{} is not a fraction between 0 and 1", self.sample_ratio),
            ));
        }
        if !self.otlp_endpoint.is_empty() {
            check_endpoint(&self.otlp_endpoint)
                .map_err(|reason| Error::invalid(&format!("{section}.otlp-endpoint"), reason))?;
        }
        Ok(())
    }

    /// Fills what the file left empty from the standard OpenTelemetry variables read through
    /// `env` (`std::env::var(..).ok()` in the daemons): the endpoint from
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`, the service name
    /// from `OTEL_SERVICE_NAME`. Values the file sets win.
    pub fn with_env(mut self, env: impl Fn(&str) -> Option<String>) -> Self {
        let set = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        if self.otlp_endpoint.is_empty() {
            if let Some(v) =
                set(env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")).or_else(|| set(env("OTEL_EXPORTER_OTLP_ENDPOINT")))
            {
                self.otlp_endpoint = v;
            }
        }
        if self.service_name.is_empty() {
            if let Some(v) = set(env("OTEL_SERVICE_NAME")) {
                self.service_name = v;
            }
        }
        self
    }

    /// Whether spans are exported.
    pub fn exports(&self) -> bool {
        !self.otlp_endpoint.is_empty()
    }

    /// The service name spans carry: `service-name`, else `bai-<component>`.
    pub fn service_name_for(&self, component: &str) -> String {
        if self.service_name.is_empty() {
            format!("bai-{component}")
        } else {
            self.service_name.clone()
        }
    }
}

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let uri: http::Uri = endpoint.parse().map_err(|e| format!("{endpoint:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{endpoint:?} is not an http:// or https:// URL (OTLP over gRPC)")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{endpoint:?} has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exporting_is_off_by_default() {
        let c = TracingConfig::default();
        assert!(!c.exports());
        c.validate("tracing").unwrap();
        assert_eq!(c.service_name_for("manager"), "bai-manager");
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn bad_values_are_named() {
        let c = TracingConfig { sample_ratio: 1.5, ..Default::default() };
        let err = c.validate("tracing").unwrap_err();
        assert_eq!(err.to_string(), "tracing.sample-ratio: 1.5 is not a fraction between 0 and 1");
        let c = TracingConfig { sample_ratio: f64::NAN, ..Default::default() };
        assert!(c.validate("tracing").is_err());
        for bad in ["otel:4317", "grpc://otel:4317", "http://", "not a url"] {
            let c = TracingConfig { otlp_endpoint: bad.into(), ..Default::default() };
            let err = c.validate("tracing").unwrap_err().to_string();
            assert!(err.starts_with("tracing.otlp-endpoint: "), "{bad}: {err}");
        }
        let c = TracingConfig { otlp_endpoint: "http://127.0.0.1:4317".into(), ..Default::default() };
        c.validate("tracing").unwrap();
        assert!(c.exports());
        assert_eq!(
            "yaml".parse::<LogFormat>().unwrap_err().to_string(),
            "log-format: \"yaml\" is neither \"text\" nor \"json\""
        );
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
    }

    #[test]
    fn the_otel_variables_fill_what_the_file_leaves_empty() {
        let env = |k: &str| match k {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://collector:4317".to_string()),
            "OTEL_SERVICE_NAME" => Some("bai-manager-eu".to_string()),
            _ => None,
        };
        let c = TracingConfig::default().with_env(env);
        assert_eq!((c.otlp_endpoint.as_str(), c.service_name.as_str()), ("http://collector:4317", "bai-manager-eu"));
        let traces_first = |k: &str| match k {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => Some("http://traces:4317".to_string()),
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://collector:4317".to_string()),
            _ => None,
        };
        assert_eq!(TracingConfig::default().with_env(traces_first).otlp_endpoint, "http://traces:4317");
        let file = TracingConfig { otlp_endpoint: "http://file:4317".into(), ..Default::default() };
        assert_eq!(file.with_env(env).otlp_endpoint, "http://file:4317");
        assert!(!TracingConfig::default().with_env(|_| Some(" ".into())).exports());
    }
}
