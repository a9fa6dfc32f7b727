//! Just enough multipart: encoding `multipart/form-data` uploads and decoding the
//! `multipart/mixed` answer of session downloads.

use bytes::Bytes;

/// One part.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Part {
    /// The form field name.
    pub name: String,
    /// The file name (percent-encoded on the wire, as the official client sends it).
    pub filename: Option<String>,
    /// The content.
    pub data: Bytes,
}

/// Encodes `multipart/form-data`: the content type (with its boundary) and the body.
pub(crate) fn encode(parts: &[Part]) -> (String, Bytes) {
    let boundary = format!("bai-{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", part.name);
        if let Some(filename) = &part.filename {
            let encoded = percent_encoding::utf8_percent_encode(filename, crate::client::SEGMENT);
            disposition.push_str(&format!("; filename=\"{encoded}\""));
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\nContent-Type: application/octet-stream\r\n\r\n");
        body.extend_from_slice(&part.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), Bytes::from(body))
}

/// Decodes a multipart body given its content type; returns the parts' bodies (names are
/// left empty).
pub(crate) fn decode(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"').to_string())
        .ok_or_else(|| format!("content type {content_type:?} has no boundary"))?;
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    let Some(start) = find(rest, delimiter.as_bytes()) else { return Err("no multipart delimiter".into()) };
    rest = &rest[start + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        let rest_after_crlf = rest.strip_prefix(b"\r\n").ok_or("malformed multipart delimiter")?;
        let head_end = find(rest_after_crlf, b"\r\n\r\n").ok_or("a part has no header end")?;
        let headers = String::from_utf8_lossy(&rest_after_crlf[..head_end]).to_ascii_lowercase();
        for line in headers.lines() {
            if let Some(v) = line.strip_prefix("content-encoding:").map(str::trim) {
                if v != "identity" {
                    return Err(format!("unsupported part encoding {v:?}"));
                }
            }
        }
        let content = &rest_after_crlf[head_end + 4..];
        let next = find(content, format!("\r\n{delimiter}").as_bytes()).ok_or("a part is not terminated")?;
        parts.push(Part { name: String::new(), filename: None, data: Bytes::copy_from_slice(&content[..next]) });
        rest = &content[next + 2 + delimiter.len()..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_escapes_file_names() {
        let parts = vec![
            Part { name: "src".into(), filename: Some("sub/a b.txt".into()), data: Bytes::from_static(b"one\r\n--x") },
            Part { name: "src".into(), filename: Some("b".into()), data: Bytes::new() },
        ];
        let (content_type, body) = encode(&parts);
        assert!(String::from_utf8_lossy(&body).contains("filename=\"sub%2Fa%20b.txt\""));
        let decoded = decode(&content_type, &body).unwrap();
        assert_eq!(decoded.iter().map(|p| p.data.clone()).collect::<Vec<_>>(), [parts[0].data.clone(), Bytes::new()]);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(decode("multipart/mixed", b"").unwrap_err().contains("boundary"));
        assert!(decode("multipart/mixed; boundary=x", b"--x\r\nno end").is_err());
    }
}
