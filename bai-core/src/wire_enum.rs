//! The one macro behind every enumeration that travels by name (statuses, session types, …).

/// Implements `ALL`, `as_str`, `Display`, `FromStr` (through a normaliser, accepting aliases),
/// `Serialize` and `Deserialize` for a fieldless enum whose variants have wire names.
macro_rules! wire_names {
    ($name:ident, $kind:literal, $normalize:expr, [$($variant:ident => $text:literal $(| $alias:literal)*),+ $(,)?]) => {
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Case-insensitive; also accepts the original's alternative spellings.
        impl std::str::FromStr for $name {
            type Err = $crate::error::Error;
            fn from_str(s: &str) -> $crate::error::Result<Self> {
                let normalize: fn(&str) -> String = $normalize;
                match normalize(s.trim()).as_str() {
                    $($text $(| $alias)* => Ok($name::$variant),)+
                    _ => Err($crate::error::Error::UnknownVariant {
                        kind: $kind,
                        input: s.to_string(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                <String as serde::Deserialize>::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
