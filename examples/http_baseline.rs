//! The baseline of `scripts/bench`: the cheapest possible HTTP/1.1 JSON handler on the same
//! stack as the manager (tokio, hyper, axum), so the manager's API throughput can be printed as a
//! ratio against what the machine does with no work at all.
//!
//! ```sh
//! cargo run --release -p bai-examples --example http_baseline -- 127.0.0.1:18090
//! ```

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;

const BODY: &str = r#"{"sessionId": "00000000-0000-0000-0000-000000000000", "status": "RUNNING"}"#;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18090".into());
    let app =
        axum::Router::new().route("/session/{id}", get(|| async { ([(CONTENT_TYPE, "application/json")], BODY) }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("http_baseline listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
