//! Helpers shared by the integration tests of the workspace (a dev-dependency only; never
//! published).
//!
//! Tests that need a real service read its address from a `BAI_TEST_*` variable that
//! `scripts/test` sets. [`service_env`] decides what happens when it is missing: the test
//! skips with a printed reason, unless `BAI_REQUIRE_SERVICES=1` (set by `scripts/test`), in
//! which case it fails.
//!
//! [`openmetrics`] parses `/metrics` scrapes.

pub mod openmetrics;

/// The value of `var`; `None` (with the reason on stderr) when it is unset and services are
/// optional.
///
/// # Panics
/// When `var` is unset and `BAI_REQUIRE_SERVICES=1`: the test must not pass by skipping.
pub fn service_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => Some(value),
        _ if std::env::var("BAI_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("{var} is not set, but BAI_REQUIRE_SERVICES=1 requires this service (scripts/test sets it)")
        }
        _ => {
            eprintln!("skipping: {var} is not set (scripts/test starts the service and sets it)");
            None
        }
    }
}
