//! [`LogLines`]: a `tracing_subscriber` writer that keeps what a layer writes, for tests that
//! check log output line by line.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Collects every byte written to it; clones share the buffer, so hand one clone to the layer
/// and read through another.
#[derive(Clone, Debug, Default)]
pub struct LogLines(Arc<Mutex<Vec<u8>>>);

impl LogLines {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Every line written so far, each parsed as one JSON value.
    ///
    /// # Panics
    /// When a line is not JSON (the test fails with the line).
    pub fn json(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}")))
            .collect()
    }
}

impl Write for LogLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for LogLines {
    type Writer = LogLines;

    fn make_writer(&'w self) -> LogLines {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_buffer_and_lines_parse_as_json() {
        let lines = LogLines::default();
        let mut writer = tracing_subscriber::fmt::MakeWriter::make_writer(&lines);
        writer.write_all(b"{\"a\": 1}\n{\"b\": [2]}\n").unwrap();
        assert_eq!(lines.json(), vec![serde_json::json!({"a": 1}), serde_json::json!({"b": [2]})]);
        assert_eq!(lines.text(), "{\"a\": 1}\n{\"b\": [2]}\n");
    }
}
