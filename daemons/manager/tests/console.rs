//! The web console's server side (`/console/…`, `api::console`): the embedded page and its
//! security headers, sign-in with a keypair, the session cookie standing in for a signature
//! only together with the console header and a same-host origin, forged/expired cookies and
//! deactivated keypairs refused, roles applied as for signed requests, sign-out.

mod common;

use bai_manager::config::StorageSection;
use bai_manager::storage::Storage;
use common::{request, request_with, Reply, ADMIN, USER};
use serde_json::{json, Value};

const CONSOLE: (&str, &str) = ("X-BackendAI-Console", "1");

async fn login(addr: std::net::SocketAddr, key: (&str, &str)) -> Reply {
    let body = json!({"access_key": key.0, "secret_key": key.1});
    request_with(addr, None, "POST", "/console/login", Some(&body), &[CONSOLE]).await
}

/// The `bai_console=…` pair a sign-in set.
fn cookie_of(reply: &Reply) -> String {
    let set = reply.header("set-cookie").unwrap_or_else(|| panic!("no cookie: {reply:?}"));
    set.split(';').next().unwrap().trim().to_string()
}

async fn as_console(addr: std::net::SocketAddr, cookie: &str, method: &str, path: &str, body: Option<&Value>) -> Reply {
    request_with(addr, None, method, path, body, &[CONSOLE, ("Cookie", cookie)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_in_with_a_keypair_and_its_cookie_needs_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::all_in_one(dir.path()).await;
    let addr = running.api_addr;

    // The page and its assets, with a strict policy; /console redirects to /console/.
    let page = request(addr, None, "GET", "/console/", None).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"login-form\""), "{}", page.body);
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let script = request(addr, None, "GET", "/console/app.js", None).await;
    assert_eq!(script.status, 200);
    assert!(script.header("content-type").unwrap().starts_with("text/javascript"));
    assert!(script.body.contains("X-BackendAI-Console"));
    let redirect = request(addr, None, "GET", "/console", None).await;
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.header("location"), Some("/console/"));

    // Sign-in: bad input and wrong keys are refused without a cookie.
    let no_header =
        request(addr, None, "POST", "/console/login", Some(&json!({"access_key": ADMIN.0, "secret_key": ADMIN.1})))
            .await;
    assert_eq!(no_header.status, 400, "{}", no_header.body);
    assert!(no_header.body.contains("X-BackendAI-Console"), "{}", no_header.body);
    let missing =
        request_with(addr, None, "POST", "/console/login", Some(&json!({"access_key": ADMIN.0})), &[CONSOLE]).await;
    assert_eq!(missing.status, 400, "{}", missing.body);
    assert!(missing.body.contains("secret_key"), "{}", missing.body);
    for wrong in [(ADMIN.0, "not-the-secret"), ("AKIANOSUCHKEY0000000", ADMIN.1), (ADMIN.0, USER.1)] {
        let refused = login(addr, wrong).await;
        assert_eq!(refused.status, 401, "{wrong:?}: {}", refused.body);
        assert!(refused.header("set-cookie").is_none());
    }
    let evil = request_with(
        addr,
        None,
        "POST",
        "/console/login",
        Some(&json!({"access_key": ADMIN.0, "secret_key": ADMIN.1})),
        &[CONSOLE, ("Origin", "http://evil.example")],
    )
    .await;
    assert_eq!(evil.status, 403, "{}", evil.body);

    // A good sign-in: an HttpOnly, SameSite=Strict cookie and who signed in.
    let signed = login(addr, ADMIN).await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    assert_eq!(signed.json()["access_key"], ADMIN.0);
    assert_eq!(signed.json()["role"], "superadmin");
    let set = signed.header("set-cookie").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    assert!(!set.contains("Secure"), "a plain-HTTP manager must not mark the cookie Secure: {set}");
    assert!(!signed.body.contains(ADMIN.1), "the answer repeats the secret key");
    let admin = cookie_of(&signed);

    // The cookie with the header acts as the keypair, on REST and GraphQL, and changes state.
    let whoami = as_console(addr, &admin, "GET", "/bai/whoami", None).await;
    assert_eq!(whoami.status, 200, "{}", whoami.body);
    assert_eq!(whoami.json()["access_key"], ADMIN.0);
    let created = as_console(addr, &admin, "POST", "/folders", Some(&json!({"name": "console-made"}))).await;
    assert!(created.status == 200 || created.status == 201, "{}", created.body);
    let listed = request(addr, Some(ADMIN), "GET", "/folders", None).await;
    assert!(listed.body.contains("console-made"), "{}", listed.body);
    let gql = as_console(
        addr,
        &admin,
        "POST",
        "/admin/gql",
        Some(&json!({"query": "{ agent_list(limit: 5, offset: 0) { items { id status last_heartbeat } } }"})),
    )
    .await;
    let agents = &gql.json()["data"]["agent_list"]["items"];
    assert_eq!(agents.as_array().map(Vec::len), Some(1), "{}", gql.body);
    assert!(agents[0]["last_heartbeat"].is_string(), "the embedded agent has heartbeated: {}", gql.body);
    // The scaling groups' utilisation plot has the manager's samples (one at start, then every
    // 10 s) of the ALIVE agents.
    let mut samples = Value::Null;
    for _ in 0..100 {
        let groups = as_console(
            addr,
            &admin,
            "POST",
            "/admin/gql",
            Some(&json!({"query": "{ scaling_groups(name: \"default\") { name utilisation_history } }"})),
        )
        .await;
        let text =
            groups.json()["data"]["scaling_groups"][0]["utilisation_history"].as_str().unwrap_or("[]").to_string();
        samples = serde_json::from_str(&text).unwrap();
        if samples.as_array().is_some_and(|s| s.iter().any(|x| x["alive_agents"] == 1)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let sample = samples.as_array().and_then(|s| s.iter().find(|x| x["alive_agents"] == 1)).cloned();
    let sample = sample.unwrap_or_else(|| panic!("no sample with the embedded agent ALIVE: {samples}"));
    assert!(sample["capacity"]["cpu"].as_f64().unwrap() > 0.0, "{sample}");
    assert!(sample["at"].is_string(), "{sample}");

    // Without the header the cookie is nothing: the request is an unsigned one.
    let bare = request_with(addr, None, "GET", "/folders", None, &[("Cookie", &admin)]).await;
    assert!(bare.status == 400 || bare.status == 401, "{}", bare.body);
    // A foreign or sandboxed (null) origin is refused; the manager's own host is fine.
    for origin in ["http://evil.example", "null"] {
        let refused =
            request_with(addr, None, "GET", "/folders", None, &[CONSOLE, ("Cookie", &admin), ("Origin", origin)]).await;
        assert_eq!(refused.status, 403, "{origin}: {}", refused.body);
    }
    let own = format!("http://{addr}");
    let same =
        request_with(addr, None, "GET", "/folders", None, &[CONSOLE, ("Cookie", &admin), ("Origin", &own)]).await;
    assert_eq!(same.status, 200, "{}", same.body);
    // A bad header value names the header.
    let odd =
        request_with(addr, None, "GET", "/folders", None, &[("X-BackendAI-Console", "yes"), ("Cookie", &admin)]).await;
    assert_eq!(odd.status, 400, "{}", odd.body);

    // Forged, foreign-secret and expired cookies: 401 "sign in again".
    let value = admin.split_once('=').unwrap().1;
    let (payload, tag) = value.split_once('.').unwrap();
    let claims: Value = serde_json::from_slice(&hex::decode(payload).unwrap()).unwrap();
    let mut raised = claims.clone();
    raised["console_access_key"] = json!(USER.0);
    let forged = format!("bai_console={}.{tag}", hex::encode(serde_json::to_vec(&raised).unwrap()));
    let sealer = |secret: &str| {
        Storage::new(&StorageSection {
            root: dir.path().join("unused"),
            token_secret: Some(secret.into()),
            ..Default::default()
        })
    };
    let other_secret = format!("bai_console={}", sealer("another-secret").seal(&claims));
    let expired = format!(
        "bai_console={}",
        sealer(common::STORAGE_SECRET)
            .seal(&json!({"console_access_key": ADMIN.0, "exp": chrono::Utc::now().timestamp() - 1}))
    );
    let storage_grant = format!(
        "bai_console={}",
        sealer(common::STORAGE_SECRET).seal(&json!({"op": "download", "exp": chrono::Utc::now().timestamp() + 60}))
    );
    for bad in [forged, other_secret, expired, storage_grant, "bai_console=".into()] {
        let refused = as_console(addr, &bad, "GET", "/bai/whoami", None).await;
        assert_eq!(refused.status, 401, "{bad}: {}", refused.body);
        assert!(refused.body.contains("sign in again"), "{}", refused.body);
    }
    // The same secret, a fresh deadline: accepted (what the manager seals is what it opens).
    let resealed = format!(
        "bai_console={}",
        sealer(common::STORAGE_SECRET)
            .seal(&json!({"console_access_key": ADMIN.0, "exp": chrono::Utc::now().timestamp() + 60}))
    );
    assert_eq!(as_console(addr, &resealed, "GET", "/bai/whoami", None).await.status, 200);

    // A user's cookie has the user's rights: their own folders, no superadmin routes.
    let user = cookie_of(&login(addr, USER).await);
    let theirs = as_console(addr, &user, "GET", "/folders", None).await;
    assert_eq!(theirs.status, 200, "{}", theirs.body);
    assert!(!theirs.body.contains("console-made"), "{}", theirs.body);
    let watcher = as_console(addr, &user, "GET", "/resource/watcher?agent_id=x", None).await;
    assert_eq!(watcher.status, 401, "{}", watcher.body);
    let agents = as_console(
        addr,
        &user,
        "POST",
        "/admin/gql",
        Some(&json!({"query": "{ agent_list(limit: 5, offset: 0) { items { id } } }"})),
    )
    .await;
    assert!(agents.json()["errors"].is_array(), "{}", agents.body);

    // Deactivating the keypair ends its console session at once.
    let off = request(
        addr,
        Some(ADMIN),
        "POST",
        "/admin/gql",
        Some(&json!({"query": format!(
            "mutation {{ modify_keypair(access_key: \"{}\", props: {{is_active: false}}) {{ ok msg }} }}",
            USER.0
        )})),
    )
    .await;
    assert_eq!(off.json()["data"]["modify_keypair"]["ok"], true, "{}", off.body);
    assert_eq!(as_console(addr, &user, "GET", "/folders", None).await.status, 401);
    assert_eq!(login(addr, USER).await.status, 401);

    // Sign-out clears the cookie.
    let out = request_with(addr, None, "POST", "/console/logout", None, &[CONSOLE, ("Cookie", &admin)]).await;
    assert_eq!(out.status, 204, "{}", out.body);
    let cleared = out.header("set-cookie").unwrap();
    assert!(cleared.starts_with("bai_console=;") && cleared.contains("Max-Age=0"), "{cleared}");
}
