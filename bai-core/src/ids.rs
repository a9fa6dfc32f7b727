//! Identifiers: sessions and kernels (UUIDs), agents and access keys (validated strings).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new random (version 4) id.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }

            /// Wraps an existing UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Uuid::parse_str(s.trim()).map(Self).map_err(|e| Error::InvalidId {
                    kind: $kind,
                    input: s.to_string(),
                    reason: format!("expected a UUID ({e})"),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }
    };
}

uuid_id!(
    /// The id of a compute session.
    SessionId,
    "session id"
);
uuid_id!(
    /// The id of a kernel (one container of a session).
    KernelId,
    "kernel id"
);

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr, $allowed:expr, $allowed_desc:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an id.
            pub fn new(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                let reason = if value.is_empty() {
                    Some("must not be empty".to_string())
                } else if value.len() > $max {
                    Some(format!("longer than {} characters", $max))
                } else if !value.chars().all($allowed) {
                    Some(format!("expected only {}", $allowed_desc))
                } else {
                    None
                };
                match reason {
                    Some(reason) => Err(Error::InvalidId { kind: $kind, input: value, reason }),
                    None => Ok(Self(value)),
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// The id of an agent (a compute node), e.g. `i-node01`: letters, digits, `.`, `_`, `-`.
    AgentId,
    "agent id",
    64,
    |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
    "ASCII letters, digits, '.', '_' or '-'"
);
string_id!(
    /// The public half of an API keypair, e.g. `AKIAIOSFODNN7EXAMPLE`: ASCII letters and digits.
    AccessKey,
    "access key",
    64,
    |c: char| c.is_ascii_alphanumeric(),
    "ASCII letters and digits"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_ids_parse_and_print() {
        let id: SessionId = "6f1a3d8e-2b1c-4a9e-9f7a-0123456789ab".parse().unwrap();
        assert_eq!(id.to_string(), "6f1a3d8e-2b1c-4a9e-9f7a-0123456789ab");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"6f1a3d8e-2b1c-4a9e-9f7a-0123456789ab\"");
        let err = "nope".parse::<KernelId>().unwrap_err().to_string();
        assert!(err.starts_with("invalid kernel id \"nope\": expected a UUID"), "{err}");
        assert_ne!(KernelId::new_random(), KernelId::new_random());
    }

    #[test]
    fn string_ids_validate() {
        assert_eq!(AgentId::new("i-node01").unwrap().as_str(), "i-node01");
        assert!(AccessKey::new("AKIAIOSFODNN7EXAMPLE").is_ok());
        let err = AgentId::new("bad id").unwrap_err().to_string();
        assert_eq!(err, "invalid agent id \"bad id\": expected only ASCII letters, digits, '.', '_' or '-'");
        assert!(AccessKey::new("").unwrap_err().to_string().contains("must not be empty"));
        assert!(AccessKey::new("A".repeat(65)).is_err());
        let err = serde_json::from_str::<AccessKey>("\"AK/../x\"").unwrap_err();
        assert!(err.to_string().contains("invalid access key"), "{err}");
    }
}
