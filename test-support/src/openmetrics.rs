//! A strict parser of Prometheus/OpenMetrics text for tests that scrape `/metrics`.

use std::collections::BTreeMap;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The sample's name (with `_total`, `_bucket`, … suffixes).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// The parsed exposition: `# TYPE` lines and samples.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name → type, from the `# TYPE` lines.
    pub types: BTreeMap<String, String>,
    /// Every sample line, in order.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The samples called `name`.
    pub fn named(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// The one sample called `name` (panics unless there is exactly one).
    pub fn one(&self, name: &str) -> &Sample {
        let found = self.named(name);
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        found[0]
    }

    /// The samples called `name` whose labels include `pairs`.
    pub fn find(&self, name: &str, pairs: &[(&str, &str)]) -> Vec<&Sample> {
        self.named(name)
            .into_iter()
            .filter(|s| pairs.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .collect()
    }
}

/// Parses the label set after `{` up to and including `}`; returns it and the rest.
fn parse_labels(mut s: &str) -> (BTreeMap<String, String>, &str) {
    let mut out = BTreeMap::new();
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return (out, rest);
        }
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
            continue;
        }
        let eq = s.find("=\"").expect("label without =\"");
        let key = s[..eq].to_owned();
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad label name {key:?}"
        );
        let mut value = String::new();
        let mut chars = s[eq + 2..].char_indices();
        let end = loop {
            let (i, c) = chars.next().expect("unterminated label value");
            match c {
                '"' => break eq + 2 + i + 1,
                '\\' => match chars.next().expect("dangling escape").1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => panic!("bad escape \\{c}"),
                },
                '\n' => panic!("raw newline in label value"),
                c => value.push(c),
            }
        };
        assert!(out.insert(key.clone(), value).is_none(), "duplicate label {key}");
        s = &s[end..];
    }
}

/// Parses OpenMetrics text strictly: every line must be `# TYPE|HELP|UNIT`, a sample or
/// `# EOF` (which must end the text); label values are unescaped.
///
/// # Panics
/// On anything malformed: it is for tests.
pub fn parse(text: &str) -> Exposition {
    let mut exposition = Exposition::default();
    assert!(text.ends_with("# EOF\n"), "no # EOF at the end");
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            assert!(exposition.types.insert(name.to_owned(), kind.to_owned()).is_none(), "duplicate TYPE {name}");
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line}");
        let name_end = line.find(['{', ' ']).expect("sample line");
        let name = line[..name_end].to_owned();
        let (labels, rest) = match line[name_end..].strip_prefix('{') {
            Some(rest) => parse_labels(rest),
            None => (BTreeMap::new(), &line[name_end..]),
        };
        let value = rest.strip_prefix(' ').expect("space before value");
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value {v:?}")),
        };
        exposition.samples.push(Sample { name, labels, value });
    }
    exposition
}
