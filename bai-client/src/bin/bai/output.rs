//! How the command line prints: tables or JSON on stdout, errors and progress on stderr.

use std::collections::BTreeMap;
use std::io::Write;

use bai_client::Error;
use serde::Serialize;
use serde_json::Value;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON document for programs.
    Json,
}

/// A table: headers and rows of cells.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&'static str]) -> Self {
        Self { headers: headers.to_vec(), rows: Vec::new() }
    }

    /// Adds a row (missing cells print empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The aligned text: upper-case headers, two spaces between columns, no trailing blanks.
    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(widths.len()) {
                widths[i] = widths[i].max(width(cell));
            }
        }
        let line = |cells: Vec<String>| {
            let mut out = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                out.push_str(cell);
                if i + 1 < widths.len() {
                    out.push_str(&" ".repeat(w - width(cell) + 2));
                }
            }
            out.trim_end().to_string() + "\n"
        };
        let mut out = line(self.headers.iter().map(|h| h.to_ascii_uppercase()).collect());
        for row in &self.rows {
            out.push_str(&line(row.clone()));
        }
        out
    }
}

/// Prints `value` as JSON, or `table` in the table format.
pub fn emit<T: Serialize>(format: Format, value: &T, table: impl FnOnce() -> Table) {
    let text = match format {
        Format::Json => {
            serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
        }
        Format::Table => table().render(),
    };
    let _ = std::io::stdout().write_all(text.as_bytes());
}

/// A cell for an optional value.
pub fn opt<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map(ToString::to_string).unwrap_or_else(|| "-".into())
}

/// A resource-slot map as `cpu=1 mem=1GiB`: memory in binary units, numbers trimmed.
pub fn slots(map: &BTreeMap<String, Value>) -> String {
    let mut parts = Vec::new();
    for (slot, value) in map {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let shown = if slot == "mem" || slot.ends_with(".mem") {
            text.parse::<f64>()
                .ok()
                .filter(|b| b.is_finite() && *b >= 0.0)
                .map(|b| bai_core::BinarySize::new(b as u64).to_short_string())
                .unwrap_or(text)
        } else {
            text
        };
        parts.push(format!("{slot}={shown}"));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

/// A timestamp cut to the second, in the server's offset (`2026-11-23 10:04:05`).
pub fn time(value: &Option<String>) -> String {
    match value {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|_| t.clone()),
        None => "-".into(),
    }
}

/// The error text: what failed, the server's details, and what to do.
pub fn describe(error: &Error) -> String {
    let mut out = format!("error: {error}\n");
    if let Some(problem) = error.problem() {
        if let Some(data) = &problem.data {
            out.push_str(&format!("  details: {data}\n"));
        }
    }
    if let Some(hint) = error.hint() {
        out.push_str(&format!("  hint: {hint}\n"));
    }
    out
}

/// The error as a JSON document (for `--output json`).
pub fn describe_json(error: &Error) -> Value {
    let mut doc = serde_json::json!({ "error": error.to_string() });
    if let Some(status) = error.status() {
        doc["status"] = status.into();
    }
    if let Some(problem) = error.problem() {
        doc["problem"] = problem.raw.clone();
    }
    if let Some(hint) = error.hint() {
        doc["hint"] = hint.into();
    }
    doc
}

/// A byte progress bar on stderr (hidden when stderr is not a terminal or `quiet`).
pub fn byte_bar(label: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    let style =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(label.to_string());
    bar
}

/// A spinner on stderr while something is waited for.
pub fn spinner(message: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(message.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use bai_client::Problem;
    use expect_test::expect;

    #[test]
    fn tables_align_and_trim() {
        let mut table = Table::new(&["name", "status", "slots"]);
        table.row(vec!["train-1".into(), "RUNNING".into(), "cpu=2 mem=4g".into()]);
        table.row(vec!["a".into(), "PENDING".into(), "-".into()]);
        table.row(vec!["ünïcode-name".into()]);
        expect![[r#"
            NAME          STATUS   SLOTS
            train-1       RUNNING  cpu=2 mem=4g
            a             PENDING  -
            ünïcode-name
        "#]]
        .assert_eq(&table.render());
        expect![[r#"
            NAME
        "#]]
        .assert_eq(&Table::new(&["name"]).render());
    }

    #[test]
    fn slots_show_memory_in_binary_units() {
        let map: BTreeMap<String, Value> = serde_json::from_str(
            r#"{"cpu": "1.5", "mem": "1073741824", "cuda.shares": 0.5, "cuda.mem": "268435456", "odd.mem": "lots"}"#,
        )
        .unwrap();
        expect!["cpu=1.5 cuda.mem=256m cuda.shares=0.5 mem=1g odd.mem=lots"].assert_eq(&slots(&map));
        assert_eq!(slots(&BTreeMap::new()), "-");
    }

    fn api_error(status: u16, path: &str, body: &str) -> Error {
        Error::Api {
            status,
            method: "DELETE".into(),
            path: path.into(),
            problem: Box::new(Problem::from_body(body.as_bytes())),
        }
    }

    #[test]
    fn errors_say_what_failed_and_what_to_do() {
        let not_found = api_error(
            404,
            "/session/nope",
            r#"{"type": "https://api.backend.ai/probs/object-not-found", "title": "No such session."}"#,
        );
        expect![[r#"
            error: DELETE /session/nope failed with 404: No such session
              hint: `bai session ls` lists your sessions; use the name or the id it shows
        "#]]
        .assert_eq(&describe(&not_found));
        let invalid = api_error(
            400,
            "/session",
            r#"{"type": "https://api.backend.ai/probs/invalid-api-params", "title": "Missing or invalid API parameters.", "msg": "name: must be 4 to 64 characters", "data": {"name": "must be 4 to 64 characters"}}"#,
        );
        expect![[r#"
            error: DELETE /session failed with 400: Missing or invalid API parameters: name: must be 4 to 64 characters
              details: {"name":"must be 4 to 64 characters"}
        "#]]
        .assert_eq(&describe(&invalid));
        let auth = api_error(
            401,
            "/folders",
            r#"{"type": "https://api.backend.ai/probs/auth-failed", "title": "Credential/signature mismatch."}"#,
        );
        expect![[r#"
            error: DELETE /folders failed with 401: Credential/signature mismatch
              hint: check BACKEND_ACCESS_KEY and BACKEND_SECRET_KEY, and that this machine's clock is within 15 minutes of the manager's
        "#]]
        .assert_eq(&describe(&auth));
        let html = api_error(502, "/folders", "<html>Bad Gateway</html>");
        expect![[r#"
            error: DELETE /folders failed with 502: <html>Bad Gateway</html>
        "#]]
        .assert_eq(&describe(&html));
        let offline =
            Error::Unreachable { url: "http://127.0.0.1:9/folders".into(), reason: "connection refused".into() };
        expect![[r#"
            error: cannot reach the manager at http://127.0.0.1:9/folders: connection refused
              hint: check that the manager is running and that BACKEND_ENDPOINT points at it
        "#]]
        .assert_eq(&describe(&offline));
        expect![[r#"{"error":"DELETE /session/nope failed with 404: No such session","hint":"`bai session ls` lists your sessions; use the name or the id it shows","problem":{"title":"No such session.","type":"https://api.backend.ai/probs/object-not-found"},"status":404}"#]]
        .assert_eq(&serde_json::to_string(&sort(describe_json(&not_found))).unwrap());
    }

    /// Sorts object keys so the snapshot does not depend on insertion order.
    fn sort(value: Value) -> Value {
        match value {
            Value::Object(map) => {
                let sorted: BTreeMap<String, Value> = map.into_iter().map(|(k, v)| (k, sort(v))).collect();
                Value::Object(sorted.into_iter().collect())
            }
            other => other,
        }
    }
}
