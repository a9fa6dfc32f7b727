//! Virtual folders against an all-in-one manager: the `/folders` routes, the storage side
//! channel (TUS upload, download), path traversal, quotas, visibility between users and the
//! transfer tokens.

mod common;

use std::net::SocketAddr;

use bai_manager::config::StorageSection;
use bai_manager::storage::{Grant, Operation, Storage};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{Reply, ADMIN, USER};

async fn call(addr: SocketAddr, key: (&str, &str), method: &str, path: &str, body: Option<Value>) -> Reply {
    common::request(addr, Some(key), method, path, body.as_ref()).await
}

async fn create_folder(addr: SocketAddr, key: (&str, &str), name: &str, quota: &str) -> Value {
    let body = json!({"name": name, "host": "local:volume1", "unmanaged_path": null, "group": null,
                      "usage_mode": "general", "permission": "rw", "quota": quota, "cloneable": false});
    let r = call(addr, key, "POST", "/folders", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

/// The path and query of a storage URL plus its token.
fn side_channel(reply: &Reply) -> String {
    let v = reply.json();
    let url = v["url"].as_str().unwrap_or_else(|| panic!("no url: {}", reply.body));
    let path = url.strip_prefix("http://").and_then(|rest| rest.find('/').map(|i| &rest[i..])).unwrap();
    format!("{path}?token={}", v["token"].as_str().unwrap())
}

/// A raw unsigned request whose body is `len` bytes produced by `fill(offset, buf)`; the
/// answer's status, headers and body (kept only up to 64 KiB).
async fn raw(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    len: u64,
    mut fill: impl FnMut(u64, &mut [u8]),
) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {len}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut sent = 0;
    while sent < len {
        let n = (len - sent).min(buf.len() as u64) as usize;
        fill(sent, &mut buf[..n]);
        if stream.write_all(&buf[..n]).await.is_err() {
            break; // the server answered early
        }
        sent += n as u64;
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = String::from_utf8_lossy(raw.get(split + 4..).unwrap_or_default()).into_owned();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply { status, headers, body }
}

/// Uploads `data` through the TUS side channel in `chunk`-byte PATCHes; the last reply.
async fn tus_upload(
    addr: SocketAddr,
    target: &str,
    len: u64,
    chunk: u64,
    fill: impl Fn(u64, &mut [u8]) + Copy,
) -> Reply {
    let mut offset = 0;
    loop {
        let n = chunk.min(len - offset);
        let headers = [
            ("Tus-Resumable", "1.0.0".to_string()),
            ("Upload-Offset", offset.to_string()),
            ("Content-Type", "application/offset+octet-stream".to_string()),
        ];
        let r = raw(addr, "PATCH", target, &headers, n, |at, buf| fill(offset + at, buf)).await;
        if r.status != 204 {
            return r;
        }
        offset = r.header("upload-offset").expect("Upload-Offset").parse().unwrap();
        if offset >= len {
            return r;
        }
    }
}

/// Downloads into memory (small files only).
async fn download(addr: SocketAddr, target: &str, range: Option<&str>) -> (Reply, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(r) = range {
        head.push_str(&format!("Range: {r}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (parse_reply(&raw[..split + 4]), raw[split + 4..].to_vec())
}

fn pattern(offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let p = offset + i as u64;
        *b = ((p / 7) ^ (p >> 13)) as u8;
    }
}

fn folder_root(dir: &std::path::Path, id: &str) -> std::path::PathBuf {
    dir.join("vfolders").join(id)
}

fn msg(reply: &Reply) -> String {
    reply.json()["msg"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let m = common::all_in_one(dir.path()).await;
    let addr = m.api_addr;

    let hosts = call(addr, USER, "GET", "/folders/_/hosts", None).await;
    assert_eq!(hosts.status, 200, "{}", hosts.body);
    assert_eq!(hosts.json()["default"], "local:volume1");
    assert_eq!(hosts.json()["allowed"], json!(["local:volume1"]));

    let created = create_folder(addr, USER, "mydata", "10g").await;
    assert_eq!(created["name"], "mydata");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert!(folder_root(dir.path(), &id).is_dir());
    let dup = call(addr, USER, "POST", "/folders", Some(json!({"name": "mydata", "host": "local:volume1"}))).await;
    assert_eq!(dup.status, 400, "{}", dup.body);
    assert!(dup.json()["type"].as_str().unwrap().ends_with("/vfolder-already-exists"));
    let bad_host = call(addr, USER, "POST", "/folders", Some(json!({"name": "x1", "host": "nfs:vol"}))).await;
    assert_eq!(bad_host.status, 400);
    assert!(msg(&bad_host).contains("nfs:vol"), "{}", bad_host.body);

    let list = call(addr, USER, "GET", "/folders", Some(json!({"all": false}))).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.json().as_array().unwrap().len(), 1);

    let info = call(addr, USER, "GET", "/folders/mydata", None).await;
    assert_eq!(info.status, 200, "{}", info.body);
    assert!(info.header("content-type").unwrap().starts_with("application/json"));
    let v = info.json();
    for key in ["name", "id", "is_owner", "permission", "status", "numFiles", "type", "group", "user", "cloneable"] {
        assert!(v.get(key).is_some(), "info lacks {key}: {v}");
    }
    assert_eq!(v["numFiles"], 0);
    assert_eq!(v["max_size"], 10 * 1024 * 1024 * 1024i64);
    assert_eq!(v["permission"], "rw");
    assert_eq!(v["type"], "user");

    let mk = call(
        addr,
        USER,
        "POST",
        "/folders/mydata/mkdir",
        Some(json!({"path": "a/b", "parents": true, "exist_ok": false})),
    )
    .await;
    assert_eq!(mk.status, 201, "{}", mk.body);
    let again = call(
        addr,
        USER,
        "POST",
        "/folders/mydata/mkdir",
        Some(json!({"path": "a/b", "parents": false, "exist_ok": false})),
    )
    .await;
    assert_eq!(again.status, 400, "{}", again.body);
    let ok = call(
        addr,
        USER,
        "POST",
        "/folders/mydata/mkdir",
        Some(json!({"path": "a/b", "parents": false, "exist_ok": true})),
    )
    .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    std::fs::write(folder_root(dir.path(), &id).join("a/f.txt"), b"hello").unwrap();

    let ls = call(addr, USER, "GET", "/folders/mydata/files", Some(json!({"path": "a"}))).await;
    assert_eq!(ls.status, 200, "{}", ls.body);
    let files: Value = serde_json::from_str(ls.json()["files"].as_str().expect("files is a JSON string")).unwrap();
    let names: Vec<_> = files.as_array().unwrap().iter().map(|f| f["filename"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["b", "f.txt"]);
    assert_eq!(files[0]["mode"].as_str().unwrap().chars().next(), Some('d'));
    assert_eq!(files[1]["size"], 5);
    assert!(files[1]["mtime"].as_f64().unwrap() > 1.0e9);
    let root_ls = call(addr, USER, "GET", "/folders/mydata/files", Some(json!({"path": "."}))).await;
    assert_eq!(root_ls.status, 200, "{}", root_ls.body);

    let mv = call(addr, USER, "POST", "/folders/mydata/move-file", Some(json!({"src": "a/f.txt", "dst": "."}))).await;
    assert_eq!((mv.status, mv.json()), (200, json!({})), "{}", mv.body);
    assert_eq!(std::fs::read(folder_root(dir.path(), &id).join("f.txt")).unwrap(), b"hello");
    let rn = call(
        addr,
        USER,
        "POST",
        "/folders/mydata/rename-file",
        Some(json!({"target_path": "f.txt", "new_name": "g.txt"})),
    )
    .await;
    assert_eq!(rn.status, 200, "{}", rn.body);
    let onto_dir =
        call(addr, USER, "POST", "/folders/mydata/rename-file", Some(json!({"target_path": "g.txt", "new_name": "a"})))
            .await;
    assert_eq!(onto_dir.status, 400, "an existing name is never replaced: {}", onto_dir.body);
    let missing = call(addr, USER, "POST", "/folders/mydata/move-file", Some(json!({"src": "g.txt"}))).await;
    assert_eq!(missing.status, 400, "{}", missing.body);
    assert!(missing.body.contains("dst"), "{}", missing.body);
    let mv =
        call(addr, USER, "POST", "/folders/mydata/move-file", Some(json!({"src": "g.txt", "dst": "a/f.txt"}))).await;
    assert_eq!(mv.status, 200, "{}", mv.body);

    let rm = call(
        addr,
        USER,
        "DELETE",
        "/folders/mydata/delete-files",
        Some(json!({"files": ["a/f.txt"], "recursive": false})),
    )
    .await;
    assert!(rm.status / 100 == 2, "{}", rm.body);
    assert!(!folder_root(dir.path(), &id).join("a/f.txt").exists());
    let rm_dir =
        call(addr, USER, "DELETE", "/folders/mydata/delete-files", Some(json!({"files": ["a"], "recursive": false})))
            .await;
    assert_eq!(rm_dir.status, 400, "{}", rm_dir.body);
    let rm_dir =
        call(addr, USER, "DELETE", "/folders/mydata/delete-files", Some(json!({"files": ["a"], "recursive": true})))
            .await;
    assert!(rm_dir.status / 100 == 2, "{}", rm_dir.body);

    let ren = call(addr, USER, "POST", "/folders/mydata/rename", Some(json!({"new_name": "renamed"}))).await;
    assert_eq!(ren.status, 201, "{}", ren.body);
    assert_eq!(call(addr, USER, "GET", "/folders/mydata", None).await.status, 404);
    let info = call(addr, USER, "GET", "/folders/renamed", None).await;
    assert_eq!(info.json()["id"], id.as_str());

    let del = call(addr, USER, "DELETE", "/folders/renamed", None).await;
    assert_eq!(del.status, 204, "{}", del.body);
    assert_eq!(call(addr, USER, "GET", "/folders/renamed", None).await.status, 404);
    assert!(!folder_root(dir.path(), &id).exists());
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_and_download_through_the_side_channel() {
    let dir = tempfile::tempdir().unwrap();
    let m = common::all_in_one(dir.path()).await;
    let addr = m.api_addr;
    let id = create_folder(addr, USER, "files", "0").await["id"].as_str().unwrap().to_string();

    let len = 3 * 1024 * 1024 + 17;
    let req = call(
        addr,
        USER,
        "POST",
        "/folders/files/request-upload",
        Some(json!({"path": "dir/sub/data.bin", "size": len})),
    )
    .await;
    assert_eq!(req.status, 200, "{}", req.body);
    let url = req.json()["url"].as_str().unwrap().to_string();
    assert_eq!(url, format!("http://{addr}/storage/upload"));
    let target = side_channel(&req);
    // HEAD tells where the upload stands.
    let head = raw(addr, "HEAD", &target, &[], 0, pattern).await;
    assert_eq!(head.status, 200, "{}", head.body);
    assert_eq!(head.header("upload-offset"), Some("0"));
    // A chunk at the wrong offset is refused.
    let wrong = raw(addr, "PATCH", &target, &[("Upload-Offset", "5".into())], 10, pattern).await;
    assert_eq!(wrong.status, 409, "{}", wrong.body);
    let done = tus_upload(addr, &target, len, 1024 * 1024, pattern).await;
    assert_eq!(done.status, 204, "{}", done.body);
    assert_eq!(done.header("upload-offset"), Some(len.to_string().as_str()));
    let on_disk = std::fs::read(folder_root(dir.path(), &id).join("dir/sub/data.bin")).unwrap();
    let mut expected = vec![0u8; len as usize];
    pattern(0, &mut expected);
    assert!(on_disk == expected, "the stored file differs");

    let req =
        call(addr, USER, "POST", "/folders/files/request-download", Some(json!({"path": "dir/sub/data.bin"}))).await;
    assert_eq!(req.status, 200, "{}", req.body);
    let target = side_channel(&req);
    let (reply, body) = download(addr, &target, None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), Some(len.to_string().as_str()));
    assert!(reply.header("transfer-encoding").is_none());
    assert!(body == expected, "the downloaded bytes differ");
    let (reply, body) = download(addr, &target, Some("bytes=1000-")).await;
    assert_eq!(reply.status, 206);
    assert_eq!(reply.header("content-length"), Some((len - 1000).to_string().as_str()));
    assert!(body == expected[1000..], "the ranged bytes differ");

    // An empty file needs no PATCH at all.
    let req =
        call(addr, USER, "POST", "/folders/files/request-upload", Some(json!({"path": "empty.txt", "size": 0}))).await;
    assert_eq!(req.status, 200, "{}", req.body);
    assert_eq!(std::fs::metadata(folder_root(dir.path(), &id).join("empty.txt")).unwrap().len(), 0);
    let info = call(addr, USER, "GET", "/folders/files", None).await;
    assert_eq!(info.json()["numFiles"], 2);

    // A missing file fails at request time.
    let missing = call(addr, USER, "POST", "/folders/files/request-download", Some(json!({"path": "nope.bin"}))).await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    m.shutdown().await;
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_transfer_keeps_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let m = common::all_in_one(dir.path()).await;
    let addr = m.api_addr;
    let id = create_folder(addr, USER, "big", "1t").await["id"].as_str().unwrap().to_string();
    let before = rss_kib("VmRSS:");

    let len: u64 = 200 * 1024 * 1024;
    let req =
        call(addr, USER, "POST", "/folders/big/request-upload", Some(json!({"path": "big.bin", "size": len}))).await;
    assert_eq!(req.status, 200, "{}", req.body);
    let done = tus_upload(addr, &side_channel(&req), len, 16 * 1024 * 1024, pattern).await;
    assert_eq!(done.status, 204, "{}", done.body);
    assert_eq!(std::fs::metadata(folder_root(dir.path(), &id).join("big.bin")).unwrap().len(), len);

    let req = call(addr, USER, "POST", "/folders/big/request-download", Some(json!({"path": "big.bin"}))).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n", side_channel(&req));
    stream.write_all(head.as_bytes()).await.unwrap();
    // Read the head, then compare the body against the pattern as it streams in.
    let mut buf = vec![0u8; 1 << 20];
    let mut pending = Vec::new();
    let header_end = loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed before the head");
        pending.extend_from_slice(&buf[..n]);
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&pending[..header_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains(&format!("content-length: {len}")), "{head}");
    let mut expected = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    let mut check = |data: &[u8], offset: &mut u64| {
        pattern(*offset, &mut expected[..data.len()]);
        assert!(data == &expected[..data.len()], "the downloaded bytes differ near offset {offset}");
        *offset += data.len() as u64;
    };
    check(&pending[header_end..], &mut offset);
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        check(&buf[..n], &mut offset);
    }
    assert_eq!(offset, len);
    let peak = rss_kib("VmHWM:");
    let growth_mib = peak.saturating_sub(before) / 1024;
    eprintln!("resident set growth during the 200 MiB transfer: {growth_mib} MiB");
    assert!(growth_mib < 150, "the resident set grew by {growth_mib} MiB during a 200 MiB transfer");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_cannot_leave_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let m = common::all_in_one(dir.path()).await;
    let addr = m.api_addr;
    let id = create_folder(addr, USER, "safe", "0").await["id"].as_str().unwrap().to_string();
    let root = folder_root(dir.path(), &id);
    std::os::unix::fs::symlink("/etc", root.join("esc")).unwrap();
    std::os::unix::fs::symlink("../..", root.join("up")).unwrap();
    std::fs::create_dir(root.join("inside")).unwrap();
    std::fs::write(root.join("inside/ok.txt"), b"ok").unwrap();
    std::os::unix::fs::symlink("inside", root.join("alias")).unwrap();

    let attempts: Vec<(&str, Value, &str)> = vec![
        ("request-upload", json!({"path": "../x", "size": 1}), "../x"),
        ("request-upload", json!({"path": "/etc/passwd", "size": 1}), "/etc/passwd"),
        ("request-upload", json!({"path": "esc/passwd", "size": 1}), "esc/passwd"),
        ("request-upload", json!({"path": "up/evil", "size": 1}), "up/evil"),
        ("request-download", json!({"path": "../../manager.db"}), "../../manager.db"),
        ("request-download", json!({"path": "/etc/passwd"}), "/etc/passwd"),
        ("request-download", json!({"path": "esc/passwd"}), "esc/passwd"),
        ("mkdir", json!({"path": "../x", "parents": true}), "../x"),
        ("mkdir", json!({"path": "esc/x", "parents": true}), "esc/x"),
        ("files", json!({"path": "esc"}), "esc"),
        ("files", json!({"path": ".."}), ".."),
        ("delete-files", json!({"files": ["../safe"], "recursive": true}), "../safe"),
        ("move-file", json!({"src": "inside/ok.txt", "dst": "../ok.txt"}), "../ok.txt"),
        ("move-file", json!({"src": "inside/ok.txt", "dst": "esc/ok.txt"}), "esc/ok.txt"),
        ("move-file", json!({"src": "inside/ok.txt", "dst": "/tmp/ok.txt"}), "/tmp/ok.txt"),
        ("move-file", json!({"src": "../safe", "dst": "x"}), "../safe"),
        ("rename-file", json!({"target_path": "inside/ok.txt", "new_name": "../ok.txt"}), "../ok.txt"),
        ("rename-file", json!({"target_path": "esc/passwd", "new_name": "p"}), "esc/passwd"),
    ];
    for (route, body, path) in attempts {
        let method = match route {
            "files" => "GET",
            "delete-files" => "DELETE",
            _ => "POST",
        };
        let r = call(addr, USER, method, &format!("/folders/safe/{route}"), Some(body)).await;
        assert_eq!(r.status, 400, "{route} {path}: {}", r.body);
        assert!(msg(&r).contains(path), "{route}: the error does not name {path}: {}", r.body);
    }
    assert!(!dir.path().join("vfolders/x").exists());
    assert!(!std::path::Path::new("/etc/x").exists());
    assert!(root.join("inside/ok.txt").exists() && !std::path::Path::new("/tmp/ok.txt").exists());

    // Uploading onto a link that points out replaces the link; the outside file is untouched.
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, b"keep me").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link-empty")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link-data")).unwrap();
    let r =
        call(addr, USER, "POST", "/folders/safe/request-upload", Some(json!({"path": "link-empty", "size": 0}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r =
        call(addr, USER, "POST", "/folders/safe/request-upload", Some(json!({"path": "link-data", "size": 3}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(tus_upload(addr, &side_channel(&r), 3, 1 << 20, pattern).await.status, 204);
    assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
    for name in ["link-empty", "link-data"] {
        assert!(root.join(name).symlink_metadata().unwrap().is_file(), "{name} is still a link");
    }

    // Links inside the folder work; deleting a link that points out removes the link only.
    let ok = call(addr, USER, "POST", "/folders/safe/request-download", Some(json!({"path": "alias/ok.txt"}))).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let rm = call(addr, USER, "DELETE", "/folders/safe/delete-files", Some(json!({"files": ["esc"]}))).await;
    assert!(rm.status / 100 == 2, "{}", rm.body);
    assert!(std::path::Path::new("/etc").is_dir());
    assert!(root.join("esc").symlink_metadata().is_err());
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_are_enforced_without_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let m = common::all_in_one(dir.path()).await;
    let addr = m.api_addr;
    let id = create_folder(addr, USER, "small", "1k").await["id"].as_str().unwrap().to_string();
    let root = folder_root(dir.path(), &id);

    let too_big =
        call(addr, USER, "POST", "/folders/small/request-upload", Some(json!({"path": "big", "size": 2000}))).await;
    assert_eq!(too_big.status, 412, "{}", too_big.body);
    assert!(too_big.json()["type"].as_str().unwrap().ends_with("/quota-exceeded"));
    assert!(msg(&too_big).contains("quota of 1024 bytes"), "{}", too_big.body);
    assert!(!root.join("big").exists());

    // Two uploads that fit one at a time but not together: the second fails on its data and
    // leaves nothing behind.
    let first =
        call(addr, USER, "POST", "/folders/small/request-upload", Some(json!({"path": "one", "size": 800}))).await;
    let second =
        call(addr, USER, "POST", "/folders/small/request-upload", Some(json!({"path": "two", "size": 800}))).await;
    assert_eq!((first.status, second.status), (200, 200), "{} {}", first.body, second.body);
    assert_eq!(tus_upload(addr, &side_channel(&first), 800, 1 << 20, pattern).await.status, 204);
    let failed = tus_upload(addr, &side_channel(&second), 800, 1 << 20, pattern).await;
    assert_eq!(failed.status, 412, "{}", failed.body);
    assert!(msg(&failed).contains("quota of 1024 bytes"), "{}", failed.body);
    assert_eq!(std::fs::read(root.join("one")).unwrap().len(), 800);
    assert!(!root.join("two").exists());
    let leftovers = std::fs::read_dir(dir.path().join("vfolders/.uploads").join(&id)).unwrap().count();
    assert_eq!(leftovers, 0, "a partial upload was left behind");

    // More bytes than announced are refused too.
    let req =
        call(addr, USER, "POST", "/folders/small/request-upload", Some(json!({"path": "three", "size": 10}))).await;
    let over = raw(addr, "PATCH", &side_channel(&req), &[("Upload-Offset", "0".into())], 20, pattern).await;
    assert_eq!(over.status, 400, "{}", over.body);
    assert!(!root.join("three").exists());
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_only_see_their_own_folders() {
    let dir = tempfile::tempdir().unwrap();
    let m = common::all_in_one(dir.path()).await;
    let addr = m.api_addr;
    create_folder(addr, ADMIN, "admins", "0").await;
    create_folder(addr, USER, "mine", "0").await;
    for (method, path, body) in [
        ("GET", "/folders/admins", None),
        ("DELETE", "/folders/admins", None),
        ("POST", "/folders/admins/rename", Some(json!({"new_name": "stolen"}))),
        ("POST", "/folders/admins/mkdir", Some(json!({"path": "x"}))),
        ("GET", "/folders/admins/files", Some(json!({"path": "."}))),
        ("POST", "/folders/admins/request-upload", Some(json!({"path": "x", "size": 1}))),
        ("POST", "/folders/admins/request-download", Some(json!({"path": "x"}))),
    ] {
        let r = call(addr, USER, method, path, body).await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
        assert!(r.json()["type"].as_str().unwrap().ends_with("/object-not-found"));
    }
    let list = call(addr, USER, "GET", "/folders", None).await.json();
    let names: Vec<_> = list.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["mine"]);
    // The same name may exist once per user.
    create_folder(addr, USER, "admins", "0").await;
    assert_eq!(call(addr, ADMIN, "GET", "/folders/admins", None).await.status, 200);
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn side_channel_tokens_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let m = common::all_in_one(dir.path()).await;
    let addr = m.api_addr;
    let id = create_folder(addr, USER, "tok", "0").await["id"].as_str().unwrap().to_string();
    std::fs::write(folder_root(dir.path(), &id).join("secret.txt"), b"secret").unwrap();
    let req = call(addr, USER, "POST", "/folders/tok/request-download", Some(json!({"path": "secret.txt"}))).await;
    let good = side_channel(&req);
    let (ok, body) = download(addr, &good, None).await;
    assert_eq!((ok.status, body.as_slice()), (200, &b"secret"[..]));

    // No token, a tampered one, one signed with another secret, an expired one.
    let (none, _) = download(addr, "/storage/download", None).await;
    assert_eq!(none.status, 401);
    let token = req.json()["token"].as_str().unwrap().to_string();
    let (payload, _) = token.split_once('.').unwrap();
    let other = Grant {
        op: Operation::Download,
        folder: id.parse().unwrap(),
        path: "../../manager.db".into(),
        size: None,
        upload: None,
        exp: i64::MAX,
    };
    let forged_payload = hex::encode(serde_json::to_vec(&other).unwrap());
    let tampered = token.replacen(payload, &forged_payload, 1);
    let (r, _) = download(addr, &format!("/storage/download?token={tampered}"), None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let stranger = Storage::new(&StorageSection { token_secret: Some("another".into()), ..StorageSection::default() });
    let (r, _) = download(addr, &format!("/storage/download?token={}", stranger.issue(&other)), None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let ours = Storage::new(&StorageSection {
        token_secret: Some(common::STORAGE_SECRET.into()),
        ..StorageSection::default()
    });
    let expired = Grant {
        op: Operation::Download,
        folder: id.parse().unwrap(),
        path: "secret.txt".into(),
        size: None,
        upload: None,
        exp: 1,
    };
    let (r, body) = download(addr, &format!("/storage/download?token={}", ours.issue(&expired)), None).await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(r.status, 401, "{body}");
    assert!(body.contains("expired"), "{body}");

    // A download token does not allow uploads.
    let r = raw(addr, "PATCH", &format!("/storage/upload?token={token}"), &[("Upload-Offset", "0".into())], 3, pattern)
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // A token outlives nothing: once the folder is gone it is useless.
    assert_eq!(call(addr, USER, "DELETE", "/folders/tok", None).await.status, 204);
    let (gone, _) = download(addr, &good, None).await;
    assert_eq!(gone.status, 404, "{}", gone.body);
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_lists_the_callers_folders() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::all_in_one(dir.path()).await;
    let addr = running.api_addr;
    create_folder(addr, USER, "first-folder", "0").await;
    create_folder(addr, USER, "second-folder", "0").await;
    create_folder(addr, common::ADMIN, "admins-folder", "0").await;
    // The query `backend.ai vfolder list` sends (§7.4).
    let query = "query($limit:Int!, $offset:Int!, $filter: String, $order: String, $group_id: UUID) {\n  vfolder_list(\n      limit:$limit, offset:$offset, filter:$filter, order:$order, group_id:$group_id) {\n    items { host name created_at creator group permission ownership_type status }\n    total_count\n  }\n}";
    let body = json!({"query": query, "variables": {"limit": 1, "offset": 1, "filter": null, "order": null, "group_id": null}});
    let reply = call(addr, USER, "POST", "/admin/gql", Some(body)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let page = &reply.json()["data"]["vfolder_list"];
    assert_eq!(page["total_count"], 2, "the admin's folder is not the user's: {}", reply.body);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["name"], "second-folder");
    assert_eq!(page["items"][0]["host"], "local:volume1");
    assert!(reply.body.find("\"host\"").unwrap() < reply.body.find("\"name\"").unwrap(), "keys in query order");
    let filtered = json!({"query": query, "variables": {"limit": 10, "offset": 0, "filter": "name == \"x\"", "order": null, "group_id": null}});
    let reply = call(addr, USER, "POST", "/admin/gql", Some(filtered)).await;
    assert_eq!(reply.status, 200);
    assert!(reply.json()["errors"][0]["message"].as_str().unwrap().contains("filter"), "{}", reply.body);
    running.shutdown().await;
}
