//! Container image references: `registry/project/name:tag[@arch]`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// The registry assumed when a reference names none.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// A parsed container image reference.
///
/// The accepted form is `[registry/][project/…/]name[:tag][@architecture]`. The first component is
/// a registry when it contains a `.` or a `:` or is `localhost`; otherwise the registry is
/// [`DEFAULT_REGISTRY`]. The tag defaults to `latest`. Architectures are normalised
/// (`amd64` → `x86_64`, `arm64` → `aarch64`); a digest (`@sha256:…`) is kept as given.
///
/// ```
/// use bai_core::ImageRef;
///
/// let img: ImageRef = "cr.backend.ai/stable/python:3.11-ubuntu22.04@arm64".parse()?;
/// assert_eq!(img.registry(), "cr.backend.ai");
/// assert_eq!(img.project(), Some("stable"));
/// assert_eq!(img.name(), "python");
/// assert_eq!(img.tag(), "3.11-ubuntu22.04");
/// assert_eq!(img.architecture(), Some("aarch64"));
/// assert_eq!(img.canonical(), "cr.backend.ai/stable/python:3.11-ubuntu22.04");
/// # Ok::<(), bai_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    project: Option<String>,
    name: String,
    tag: String,
    architecture: Option<String>,
    digest: Option<String>,
}

impl ImageRef {
    /// The registry host (and port), e.g. `cr.backend.ai` or `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }
    /// The path between registry and name, e.g. `stable`; `None` when there is none.
    pub fn project(&self) -> Option<&str> {
        self.project.as_deref()
    }
    /// The last path component, e.g. `python`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The tag, `latest` when none was given.
    pub fn tag(&self) -> &str {
        &self.tag
    }
    /// The normalised architecture, when one was given with `@arch`.
    pub fn architecture(&self) -> Option<&str> {
        self.architecture.as_deref()
    }
    /// The content digest (`sha256:…`), when one was given.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }
    /// The same image for another architecture.
    pub fn with_architecture(mut self, arch: &str) -> Result<Self> {
        self.architecture = Some(
            normalize_architecture(arch)
                .map_err(|reason| Error::InvalidImageRef { input: arch.to_string(), reason })?,
        );
        Ok(self)
    }
    /// `registry/project/name:tag` (or `…@sha256:…` with a digest), without the architecture:
    /// the form a container engine pulls.
    pub fn canonical(&self) -> String {
        let mut s = self.registry.clone();
        if let Some(project) = &self.project {
            s.push('/');
            s.push_str(project);
        }
        s.push('/');
        s.push_str(&self.name);
        s.push(':');
        s.push_str(&self.tag);
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(digest);
        }
        s
    }
}

/// Maps the common spellings of an architecture to the names Backend.AI uses.
pub fn normalize_architecture(arch: &str) -> std::result::Result<String, String> {
    let normalized = match arch.to_ascii_lowercase().as_str() {
        "x86_64" | "amd64" | "x64" => "x86_64",
        "aarch64" | "arm64" => "aarch64",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        _ => return Err(format!("unknown architecture {arch:?}: expected x86_64, aarch64, ppc64le, s390x or riscv64")),
    };
    Ok(normalized.to_string())
}

fn is_path_component(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

impl FromStr for ImageRef {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        let err = |reason: String| Error::InvalidImageRef { input: input.to_string(), reason };
        let text = input.trim();
        if text.is_empty() {
            return Err(err("empty image reference".into()));
        }
        let (rest, architecture, digest) = match text.split_once('@') {
            Some((rest, suffix)) if suffix.starts_with("sha256:") => {
                let hex = &suffix["sha256:".len()..];
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(err("a sha256 digest needs 64 hexadecimal digits".into()));
                }
                (rest, None, Some(suffix.to_ascii_lowercase()))
            }
            Some((rest, arch)) => (rest, Some(normalize_architecture(arch).map_err(err)?), None),
            None => (text, None, None),
        };
        let mut parts: Vec<&str> = rest.split('/').collect();
        let registry =
            if parts.len() > 1 && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost") {
                let reg = parts.remove(0);
                if !reg.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':')) {
                    return Err(err(format!("invalid registry {reg:?}")));
                }
                reg.to_string()
            } else {
                DEFAULT_REGISTRY.to_string()
            };
        let last = parts.pop().unwrap_or_default();
        let (name, tag) = match last.split_once(':') {
            Some((name, tag)) => (name, tag),
            None => (last, "latest"),
        };
        if !is_path_component(name) {
            return Err(err(format!(
                "invalid image name {name:?}: expected lowercase letters, digits, '.', '_' or '-'"
            )));
        }
        for component in &parts {
            if !is_path_component(component) {
                return Err(err(format!(
                    "invalid path component {component:?}: expected lowercase letters, digits, '.', '_' or '-'"
                )));
            }
        }
        if tag.is_empty()
            || tag.len() > 128
            || !tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(err(format!("invalid tag {tag:?}: expected 1 to 128 letters, digits, '.', '_' or '-'")));
        }
        Ok(Self {
            registry,
            project: if parts.is_empty() { None } else { Some(parts.join("/")) },
            name: name.to_string(),
            tag: tag.to_string(),
            architecture,
            digest,
        })
    }
}

/// `canonical()` followed by `@arch` when an architecture is set.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())?;
        if let Some(arch) = &self.architecture {
            write!(f, "@{arch}")?;
        }
        Ok(())
    }
}

impl Serialize for ImageRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        let img: ImageRef = "python".parse().unwrap();
        assert_eq!(img.to_string(), "docker.io/python:latest");
        let img: ImageRef = "library/python:3.11".parse().unwrap();
        assert_eq!((img.registry(), img.project(), img.tag()), ("docker.io", Some("library"), "3.11"));
        let img: ImageRef = "localhost:5000/bai/kernel-python:3.11@amd64".parse().unwrap();
        assert_eq!(img.registry(), "localhost:5000");
        assert_eq!(img.to_string(), "localhost:5000/bai/kernel-python:3.11@x86_64");
        let img: ImageRef = "cr.backend.ai/multiarch/a/b/name:1".parse().unwrap();
        assert_eq!(img.project(), Some("multiarch/a/b"));
        let digest = format!("sha256:{}", "a".repeat(64));
        let img: ImageRef = format!("python:3@{digest}").parse().unwrap();
        assert_eq!(img.digest(), Some(digest.as_str()));
        let json = serde_json::to_string(&img).unwrap();
        assert_eq!(serde_json::from_str::<ImageRef>(&json).unwrap(), img);
    }

    #[test]
    fn rejects_malformed_references() {
        for (input, needle) in [
            ("", "empty"),
            ("Python", "invalid image name"),
            ("python:", "invalid tag"),
            ("a/Python:1", "invalid image name"),
            ("python:t!g", "invalid tag"),
            ("python@sparc", "unknown architecture"),
            ("python@sha256:abc", "64 hexadecimal"),
            ("cr.io//python", "invalid path component"),
            ("cr.io/a b/python", "invalid path component"),
        ] {
            let err = input.parse::<ImageRef>().unwrap_err().to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
            assert!(err.contains(&format!("{input:?}")), "{err}");
        }
    }
}
