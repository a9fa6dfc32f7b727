//! Sharing virtual folders against an all-in-one manager: `share`/`unshare`, invitations
//! (`invite`, `invitations/list`, `accept`, `delete`), `leave`, project folders seen by the
//! project's members, name resolution when names collide, and bad input that changes nothing.
//! The access rules themselves (`repo::resolve_vfolder`) also run on both database backends.

mod common;

use std::net::SocketAddr;

use bai_core::MountPermission;
use bai_manager::db::entities::{vfolder, vfolder_invitation, vfolder_permission};
use bai_manager::db::repo::{self, AccessVia, Viewer};
use bai_manager::db::types::{UserRole, VFolderInvitationState, VFolderOwnershipType, Wire};
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::backends::{on_postgres, on_sqlite};
use common::{Reply, ADMIN, USER};

const USER_EMAIL: &str = "user@lablup.com";
const ADMIN_EMAIL: &str = "admin@lablup.com";
const THIRD_EMAIL: &str = "third@lablup.com";
const DEFAULT_PROJECT: &str = "2de2b969-1d04-48a6-af16-0bc8adb3c831";

async fn call(addr: SocketAddr, key: (&str, &str), method: &str, path: &str, body: Option<Value>) -> Reply {
    common::request(addr, Some(key), method, path, body.as_ref()).await
}

async fn create_folder(addr: SocketAddr, key: (&str, &str), name: &str, group: Option<&str>) -> Value {
    let body = json!({"name": name, "host": "local:volume1", "unmanaged_path": null, "group": group,
                      "usage_mode": "general", "permission": "rw", "quota": "0", "cloneable": false});
    let r = call(addr, key, "POST", "/folders", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

const CREATE_USER: &str = "mutation($email: String!, $input: UserInput!) {\n    create_user(email: $email, props: \
                           $input) {\n        ok msg user {domain_name email username uuid}\n    }\n}\n";

/// A second regular user (`third@lablup.com`, in no project) created through the GraphQL
/// mutation the official client sends; answers their keypair.
async fn third_user(addr: SocketAddr, db: &DatabaseConnection) -> (String, String) {
    let input = json!({"password": "s3cret!", "role": "user", "status": "active", "need_password_change": false,
        "description": "", "domain_name": "default", "totp_activated": false, "sudo_session_enabled": false,
        "username": "third", "full_name": "", "allowed_client_ip": null, "group_ids": []});
    let body = json!({"query": CREATE_USER, "variables": {"email": THIRD_EMAIL, "input": input}});
    let reply = call(addr, ADMIN, "POST", "/admin/gql", Some(body)).await;
    assert_eq!(reply.json()["data"]["create_user"]["ok"], true, "{}", reply.body);
    let user = repo::find_user_by_email(db, THIRD_EMAIL).await.unwrap().unwrap();
    let keypair = repo::list_keypairs(db, Some(user.uuid)).await.unwrap().remove(0);
    (keypair.access_key, keypair.secret_key)
}

/// Uploads `data` as `path` through request-upload and one TUS PATCH.
async fn upload(addr: SocketAddr, key: (&str, &str), folder: &str, path: &str, data: &[u8]) -> Reply {
    let r = call(
        addr,
        key,
        "POST",
        &format!("/folders/{folder}/request-upload"),
        Some(json!({"path": path, "size": data.len()})),
    )
    .await;
    if r.status != 200 {
        return r;
    }
    let target = side_channel(&r);
    let head = format!(
        "PATCH {target} HTTP/1.1\r\nHost: {addr}\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: \
         application/offset+octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    );
    let (status, body) = raw(addr, head.as_bytes(), data).await;
    Reply { status, headers: Vec::new(), body: String::from_utf8_lossy(&body).into_owned() }
}

/// Downloads `path` through request-download and a plain GET: the status and the bytes.
async fn download(addr: SocketAddr, key: (&str, &str), folder: &str, path: &str) -> (u16, Vec<u8>) {
    let r = call(addr, key, "POST", &format!("/folders/{folder}/request-download"), Some(json!({"path": path}))).await;
    if r.status != 200 {
        return (r.status, r.body.into_bytes());
    }
    let head = format!("GET {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n", side_channel(&r));
    raw(addr, head.as_bytes(), &[]).await
}

fn side_channel(reply: &Reply) -> String {
    let v = reply.json();
    let url = v["url"].as_str().unwrap_or_else(|| panic!("no url: {}", reply.body));
    let path = url.strip_prefix("http://").and_then(|rest| rest.find('/').map(|i| &rest[i..])).unwrap();
    format!("{path}?token={}", v["token"].as_str().unwrap())
}

async fn raw(addr: SocketAddr, head: &[u8], body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&raw[..split]).split(' ').nth(1).unwrap().parse().unwrap();
    (status, raw[split + 4..].to_vec())
}

/// The error type's last segment (`invalid-api-params`, …).
fn kind(reply: &Reply) -> String {
    reply.json()["type"].as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_string()
}

fn names(list: &Reply) -> Vec<String> {
    list.json().as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_string()).collect()
}

/// Every row of the sharing tables, to check that a refused request changed nothing.
async fn sharing_state(db: &DatabaseConnection) -> (Vec<vfolder_permission::Model>, Vec<vfolder_invitation::Model>) {
    let mut shares = vfolder_permission::Entity::find().all(db).await.unwrap();
    shares.sort_by_key(|s| (s.vfolder, s.user));
    let mut invitations = vfolder_invitation::Entity::find().all(db).await.unwrap();
    invitations.sort_by_key(|i| i.id);
    (shares, invitations)
}

/// A request that must be refused: key, method, path, body, status, error kind, a word the
/// answer must contain.
type Refusal<'a> = ((&'a str, &'a str), &'a str, &'a str, Option<Value>, u16, &'a str, &'a str);

/// Sends each request, expects `status` and the error `kind`, and checks the sharing tables
/// are as before.
async fn refused(addr: SocketAddr, db: &DatabaseConnection, cases: &[Refusal<'_>]) {
    for (key, method, path, body, status, error, needle) in cases {
        let before = sharing_state(db).await;
        let r = call(addr, *key, method, path, body.clone()).await;
        assert_eq!(r.status, *status, "{method} {path} {body:?}: {}", r.body);
        assert_eq!(kind(&r), *error, "{method} {path} {body:?}: {}", r.body);
        assert!(r.body.contains(needle), "{method} {path} {body:?}: {} lacks {needle:?}", r.body);
        assert_eq!(sharing_state(db).await, before, "{method} {path} {body:?} changed the database");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_read_only_then_unshare() {
    let dir = tempfile::tempdir().unwrap();
    let m = common::all_in_one(dir.path()).await;
    let (addr, db) = (m.api_addr, m.manager.db().clone());
    let third = third_user(addr, &db).await;
    let third = (third.0.as_str(), third.1.as_str());

    create_folder(addr, USER, "data", None).await;
    assert_eq!(upload(addr, USER, "data", "hello.txt", b"hi there").await.status, 204);

    let share = "/folders/data/share";
    refused(
        addr,
        &db,
        &[
            (USER, "POST", share, Some(json!({"emails": [THIRD_EMAIL]})), 400, "invalid-api-params", "permission"),
            (
                USER,
                "POST",
                share,
                Some(json!({"permission": "rx", "emails": [THIRD_EMAIL]})),
                400,
                "invalid-api-params",
                "permission",
            ),
            (USER, "POST", share, Some(json!({"permission": "ro"})), 400, "invalid-api-params", "emails"),
            (USER, "POST", share, Some(json!({"permission": "ro", "emails": []})), 400, "invalid-api-params", "emails"),
            (
                USER,
                "POST",
                share,
                Some(json!({"permission": "ro", "emails": THIRD_EMAIL})),
                400,
                "invalid-api-params",
                "emails",
            ),
            (
                USER,
                "POST",
                share,
                Some(json!({"permission": "ro", "emails": [7]})),
                400,
                "invalid-api-params",
                "emails[0]",
            ),
            (
                USER,
                "POST",
                share,
                Some(json!({"permission": "ro", "emails": [THIRD_EMAIL, "nobody@lablup.com"]})),
                404,
                "object-not-found",
                "nobody@lablup.com",
            ),
            (
                USER,
                "POST",
                share,
                Some(json!({"permission": "ro", "emails": [USER_EMAIL]})),
                400,
                "invalid-api-params",
                "yourself",
            ),
            // Someone who cannot see the folder, and a folder that does not exist.
            (
                third,
                "POST",
                share,
                Some(json!({"permission": "ro", "emails": [ADMIN_EMAIL]})),
                404,
                "object-not-found",
                "vfolder",
            ),
            (
                USER,
                "POST",
                "/folders/nothing/share",
                Some(json!({"permission": "ro", "emails": [THIRD_EMAIL]})),
                404,
                "object-not-found",
                "vfolder",
            ),
        ],
    )
    .await;
    // The unknown address is listed in `data` too.
    let r = call(addr, USER, "POST", share, Some(json!({"permission": "ro", "emails": ["a@x.org", "b@x.org"]}))).await;
    assert_eq!(r.json()["data"]["emails"], json!(["a@x.org", "b@x.org"]), "{}", r.body);
    assert_eq!(call(addr, third, "GET", "/folders/data", None).await.status, 404);

    // Shared read-only: listed, readable, downloadable, but not writable nor manageable.
    let r =
        call(addr, USER, "POST", share, Some(json!({"permission": "ro", "emails": [THIRD_EMAIL, THIRD_EMAIL]}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"shared_emails": [THIRD_EMAIL]}));
    let list = call(addr, third, "GET", "/folders", None).await;
    assert_eq!(names(&list), ["data"]);
    assert_eq!(list.json()[0]["is_owner"], false);
    assert_eq!(list.json()[0]["permission"], "ro");
    let info = call(addr, third, "GET", "/folders/data", None).await.json();
    assert_eq!((info["is_owner"].clone(), info["permission"].clone()), (json!(false), json!("ro")));
    assert_eq!(info["numFiles"], 1);
    let owner_info = call(addr, USER, "GET", "/folders/data", None).await.json();
    assert_eq!((owner_info["is_owner"].clone(), owner_info["permission"].clone()), (json!(true), json!("rw")));
    let files = call(addr, third, "GET", "/folders/data/files", Some(json!({"path": "."}))).await;
    assert!(files.json()["files"].as_str().unwrap().contains("hello.txt"), "{}", files.body);
    assert_eq!(download(addr, third, "data", "hello.txt").await, (200, b"hi there".to_vec()));
    for (method, path, body) in [
        ("POST", "/folders/data/request-upload", Some(json!({"path": "x.txt", "size": 1}))),
        ("POST", "/folders/data/mkdir", Some(json!({"path": "sub"}))),
        ("DELETE", "/folders/data/delete-files", Some(json!({"files": ["hello.txt"]}))),
        ("POST", "/folders/data/rename", Some(json!({"new_name": "mine-now"}))),
        ("DELETE", "/folders/data", None),
        ("POST", share, Some(json!({"permission": "rw", "emails": [ADMIN_EMAIL]}))),
        ("DELETE", "/folders/data/unshare", Some(json!({"emails": [THIRD_EMAIL]}))),
        ("POST", "/folders/data/invite", Some(json!({"perm": "rw", "user_ids": [ADMIN_EMAIL]}))),
    ] {
        let before = sharing_state(&db).await;
        let r = call(addr, third, method, path, body).await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
        assert_eq!(kind(&r), "generic-forbidden");
        assert_eq!(sharing_state(&db).await, before);
    }
    assert_eq!(download(addr, USER, "data", "hello.txt").await.0, 200, "the folder is intact");

    // Sharing again replaces the permission: now the user may write.
    let r = call(addr, USER, "POST", share, Some(json!({"permission": "rw", "emails": [THIRD_EMAIL]}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(sharing_state(&db).await.0.len(), 1);
    assert_eq!(call(addr, third, "POST", "/folders/data/mkdir", Some(json!({"path": "sub"}))).await.status, 201);
    assert_eq!(upload(addr, third, "data", "sub/from-third.txt", b"3").await.status, 204);

    // Unshare: bad input first, then the real thing.
    let unshare = "/folders/data/unshare";
    refused(
        addr,
        &db,
        &[
            (USER, "DELETE", unshare, None, 400, "invalid-api-params", "emails"),
            (USER, "DELETE", unshare, Some(json!({"emails": [""]})), 400, "invalid-api-params", "emails[0]"),
            (
                USER,
                "DELETE",
                unshare,
                Some(json!({"emails": [THIRD_EMAIL, "ghost@lablup.com"]})),
                404,
                "object-not-found",
                "ghost@lablup.com",
            ),
        ],
    )
    .await;
    let r = call(addr, USER, "DELETE", unshare, Some(json!({"emails": [THIRD_EMAIL, ADMIN_EMAIL]}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"unshared_emails": [THIRD_EMAIL]}));
    assert!(sharing_state(&db).await.0.is_empty());
    let gone = call(addr, third, "GET", "/folders/data", None).await;
    assert_eq!((gone.status, kind(&gone)), (404, "object-not-found".to_string()), "{}", gone.body);
    assert_eq!(download(addr, third, "data", "hello.txt").await.0, 404);
    assert!(names(&call(addr, third, "GET", "/folders", None).await).is_empty());
    let again = call(addr, USER, "DELETE", unshare, Some(json!({"emails": [THIRD_EMAIL]}))).await;
    assert_eq!(again.json(), json!({"unshared_emails": []}));

    // Deleting a shared folder deletes its shares.
    call(addr, USER, "POST", share, Some(json!({"permission": "ro", "emails": [THIRD_EMAIL]}))).await;
    assert_eq!(call(addr, USER, "DELETE", "/folders/data", None).await.status, 204);
    assert!(sharing_state(&db).await.0.is_empty());
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_accept_reject_cancel_and_leave() {
    let dir = tempfile::tempdir().unwrap();
    let m = common::all_in_one(dir.path()).await;
    let (addr, db) = (m.api_addr, m.manager.db().clone());
    let third = third_user(addr, &db).await;
    let third = (third.0.as_str(), third.1.as_str());
    create_folder(addr, USER, "offered", None).await;

    let invite = "/folders/offered/invite";
    refused(
        addr,
        &db,
        &[
            (USER, "POST", invite, Some(json!({"user_ids": [THIRD_EMAIL]})), 400, "invalid-api-params", "perm"),
            (
                USER,
                "POST",
                invite,
                Some(json!({"perm": "all", "user_ids": [THIRD_EMAIL]})),
                400,
                "invalid-api-params",
                "perm",
            ),
            (USER, "POST", invite, Some(json!({"perm": "rw"})), 400, "invalid-api-params", "user_ids"),
            (
                USER,
                "POST",
                invite,
                Some(json!({"perm": "rw", "user_ids": [USER_EMAIL]})),
                400,
                "invalid-api-params",
                "yourself",
            ),
            (
                USER,
                "POST",
                invite,
                Some(json!({"perm": "rw", "user_ids": ["nobody@lablup.com"]})),
                404,
                "object-not-found",
                "nobody@lablup.com",
            ),
            (
                third,
                "POST",
                invite,
                Some(json!({"perm": "rw", "user_ids": [ADMIN_EMAIL]})),
                404,
                "object-not-found",
                "vfolder",
            ),
        ],
    )
    .await;

    let r = call(addr, USER, "POST", invite, Some(json!({"perm": "rw", "user_ids": [THIRD_EMAIL]}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"invited_ids": [THIRD_EMAIL]}));
    // A second invitation while one is pending sends nothing.
    let r = call(addr, USER, "POST", invite, Some(json!({"perm": "ro", "user_ids": [THIRD_EMAIL]}))).await;
    assert_eq!(r.json(), json!({"invited_ids": []}));
    assert_eq!(sharing_state(&db).await.1.len(), 1);

    let list = call(addr, third, "GET", "/folders/invitations/list", None).await;
    assert_eq!(list.status, 200, "{}", list.body);
    let invitations = list.json()["invitations"].as_array().unwrap().clone();
    assert_eq!(invitations.len(), 1, "{}", list.body);
    let inv = &invitations[0];
    assert_eq!(inv["inviter"], USER_EMAIL);
    assert_eq!(inv["invitee"], THIRD_EMAIL);
    assert_eq!(inv["perm"], "rw");
    assert_eq!(inv["state"], "pending");
    assert_eq!(inv["vfolder_name"], "offered");
    for key in ["id", "created_at", "vfolder_id"] {
        assert!(inv[key].is_string(), "{key}: {inv}");
    }
    let inv_id = inv["id"].as_str().unwrap().to_string();
    // Invitations are listed for their invitee only.
    let mine = call(addr, USER, "GET", "/folders/invitations/list", None).await.json();
    assert_eq!(mine, json!({"invitations": []}));
    assert_eq!(call(addr, third, "GET", "/folders/offered", None).await.status, 404, "not before accepting");

    let accept = "/folders/invitations/accept";
    refused(
        addr,
        &db,
        &[
            (third, "POST", accept, None, 400, "invalid-api-params", "inv_id"),
            (third, "POST", accept, Some(json!({"inv_id": "nope"})), 400, "invalid-api-params", "inv_id"),
            (
                third,
                "POST",
                accept,
                Some(json!({"inv_id": uuid::Uuid::new_v4().to_string()})),
                404,
                "object-not-found",
                "invitation",
            ),
            // The inviter cannot accept in the invitee's place, nor can a stranger.
            (USER, "POST", accept, Some(json!({"inv_id": inv_id})), 404, "object-not-found", "invitation"),
            (ADMIN, "POST", accept, Some(json!({"inv_id": inv_id})), 404, "object-not-found", "invitation"),
        ],
    )
    .await;
    let r = call(addr, third, "POST", accept, Some(json!({"inv_id": inv_id}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (shares, invitations) = sharing_state(&db).await;
    assert_eq!(shares.len(), 1);
    assert_eq!(shares[0].permission, Wire(MountPermission::ReadWrite));
    assert_eq!(invitations[0].state, Wire(VFolderInvitationState::Accepted));
    let info = call(addr, third, "GET", "/folders/offered", None).await.json();
    assert_eq!((info["is_owner"].clone(), info["permission"].clone()), (json!(false), json!("rw")));
    assert_eq!(upload(addr, third, "offered", "by-third.txt", b"x").await.status, 204);
    assert!(call(addr, third, "GET", "/folders/invitations/list", None).await.json()["invitations"]
        .as_array()
        .unwrap()
        .is_empty());
    refused(
        addr,
        &db,
        &[
            (third, "POST", accept, Some(json!({"inv_id": inv_id})), 400, "invalid-api-params", "already accepted"),
            (
                third,
                "POST",
                "/folders/invitations/delete",
                Some(json!({"inv_id": inv_id})),
                400,
                "invalid-api-params",
                "accepted",
            ),
        ],
    )
    .await;
    // Someone who already has the folder is not invited again.
    let r = call(addr, USER, "POST", invite, Some(json!({"perm": "ro", "user_ids": [THIRD_EMAIL]}))).await;
    assert_eq!(r.json(), json!({"invited_ids": []}));

    // Rejected by the invitee (DELETE, as the official client sends it), canceled by the inviter.
    let r = call(addr, USER, "POST", invite, Some(json!({"perm": "ro", "user_ids": [ADMIN_EMAIL]}))).await;
    assert_eq!(r.json(), json!({"invited_ids": [ADMIN_EMAIL]}));
    let id = call(addr, ADMIN, "GET", "/folders/invitations/list", None).await.json()["invitations"][0]["id"].clone();
    let r = call(addr, ADMIN, "DELETE", "/folders/invitations/delete", Some(json!({"inv_id": id}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let row = repo::get_vfolder_invitation(&db, id.as_str().unwrap().parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(row.state, Wire(VFolderInvitationState::Rejected));
    let r = call(addr, USER, "POST", invite, Some(json!({"perm": "ro", "user_ids": [ADMIN_EMAIL]}))).await;
    assert_eq!(r.json(), json!({"invited_ids": [ADMIN_EMAIL]}), "a rejected invitation may be sent again");
    let id = call(addr, ADMIN, "GET", "/folders/invitations/list", None).await.json()["invitations"][0]["id"].clone();
    refused(
        addr,
        &db,
        &[(
            third,
            "POST",
            "/folders/invitations/delete",
            Some(json!({"inv_id": id})),
            404,
            "object-not-found",
            "invitation",
        )],
    )
    .await;
    let r = call(addr, USER, "POST", "/folders/invitations/delete", Some(json!({"inv_id": id}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let row = repo::get_vfolder_invitation(&db, id.as_str().unwrap().parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(row.state, Wire(VFolderInvitationState::Canceled));
    assert_eq!(call(addr, ADMIN, "GET", "/folders/offered", None).await.json()["is_owner"], false, "superadmin view");

    // Name collision: the user's own folder wins in name resolution; both are listed.
    create_folder(addr, third, "offered", None).await;
    let info = call(addr, third, "GET", "/folders/offered", None).await.json();
    assert_eq!(info["is_owner"], true, "{info}");
    assert_eq!(names(&call(addr, third, "GET", "/folders", None).await), ["offered", "offered"]);

    // Leave: bad input and refusals first.
    refused(
        addr,
        &db,
        &[
            (third, "POST", "/folders/nothing/leave", None, 404, "object-not-found", "vfolder"),
            (
                third,
                "POST",
                "/folders/offered/leave",
                Some(json!({"shared_user_uuid": "me"})),
                400,
                "invalid-api-params",
                "shared_user_uuid",
            ),
            (USER, "POST", "/folders/offered/leave", None, 400, "invalid-api-params", "you own it"),
        ],
    )
    .await;
    // `leave` acts on the shared folder even though an own folder has the same name.
    let r = call(addr, third, "POST", "/folders/offered/leave", Some(json!({"shared_user_uuid": null}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(sharing_state(&db).await.0.is_empty());
    assert_eq!(names(&call(addr, third, "GET", "/folders", None).await), ["offered"]);
    assert_eq!(call(addr, third, "GET", "/folders/offered", None).await.json()["is_owner"], true);
    let r = call(addr, third, "POST", "/folders/offered/leave", None).await;
    assert_eq!((r.status, kind(&r)), (400, "invalid-api-params".to_string()), "{}", r.body);

    // The owner may remove a user with `shared_user_uuid`.
    call(addr, USER, "POST", "/folders/offered/share", Some(json!({"permission": "ro", "emails": [THIRD_EMAIL]})))
        .await;
    let third_id = repo::find_user_by_email(&db, THIRD_EMAIL).await.unwrap().unwrap().uuid;
    let r = call(addr, USER, "POST", "/folders/offered/leave", Some(json!({"shared_user_uuid": third_id.to_string()})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(sharing_state(&db).await.0.is_empty());
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_folders_are_visible_to_members() {
    let dir = tempfile::tempdir().unwrap();
    let m = common::all_in_one(dir.path()).await;
    let (addr, db) = (m.api_addr, m.manager.db().clone());
    let third = third_user(addr, &db).await;
    let third = (third.0.as_str(), third.1.as_str());

    // Only admins create project folders; by name or by id.
    let body = json!({"name": "team", "host": "local:volume1", "group": "default", "quota": "0"});
    let r = call(addr, USER, "POST", "/folders", Some(body)).await;
    assert_eq!((r.status, kind(&r)), (403, "generic-forbidden".to_string()), "{}", r.body);
    let r = call(addr, ADMIN, "POST", "/folders", Some(json!({"name": "team", "group": "no-such-project"}))).await;
    assert_eq!((r.status, kind(&r)), (400, "invalid-api-params".to_string()), "{}", r.body);
    let created = create_folder(addr, ADMIN, "team", Some("default")).await;
    assert_eq!(created["type"], "group");
    assert_eq!(created["group"], DEFAULT_PROJECT);
    assert_eq!(created["user"], Value::Null);
    let r = call(addr, ADMIN, "POST", "/folders", Some(json!({"name": "team", "group": DEFAULT_PROJECT}))).await;
    assert_eq!((r.status, kind(&r)), (400, "vfolder-already-exists".to_string()), "{}", r.body);
    create_folder(addr, USER, "mine", None).await;

    // A member sees it with the folder's permission, may write, may not manage it.
    let list = call(addr, USER, "GET", "/folders", None).await;
    assert_eq!(names(&list), ["team", "mine"]);
    let team = &list.json()[0];
    assert_eq!(
        (team["is_owner"].clone(), team["permission"].clone(), team["type"].clone()),
        (json!(false), json!("rw"), json!("group"))
    );
    assert_eq!(upload(addr, USER, "team", "notes.txt", b"team notes").await.status, 204);
    assert_eq!(download(addr, ADMIN, "team", "notes.txt").await, (200, b"team notes".to_vec()));
    for (method, path, body) in [
        ("DELETE", "/folders/team", None),
        ("POST", "/folders/team/rename", Some(json!({"new_name": "x"}))),
        ("POST", "/folders/team/share", Some(json!({"permission": "ro", "emails": [ADMIN_EMAIL]}))),
    ] {
        let r = call(addr, USER, method, path, body).await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
    }
    let r = call(addr, USER, "POST", "/folders/team/leave", None).await;
    assert_eq!((r.status, kind(&r)), (400, "invalid-api-params".to_string()), "{}", r.body);
    assert!(r.body.contains("project"), "{}", r.body);
    // Invitations are for user folders.
    let r =
        call(addr, ADMIN, "POST", "/folders/team/invite", Some(json!({"perm": "ro", "user_ids": [THIRD_EMAIL]}))).await;
    assert_eq!((r.status, kind(&r)), (400, "invalid-api-params".to_string()), "{}", r.body);

    // Someone outside the project does not see it, and it cannot be shared with them.
    assert_eq!(call(addr, third, "GET", "/folders/team", None).await.status, 404);
    assert!(names(&call(addr, third, "GET", "/folders", None).await).is_empty());
    refused(
        addr,
        &db,
        &[(
            ADMIN,
            "POST",
            "/folders/team/share",
            Some(json!({"permission": "ro", "emails": [THIRD_EMAIL]})),
            400,
            "invalid-api-params",
            THIRD_EMAIL,
        )],
    )
    .await;

    // A share on a project folder overrides a member's permission.
    let r = call(addr, ADMIN, "POST", "/folders/team/share", Some(json!({"permission": "ro", "emails": [USER_EMAIL]})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(call(addr, USER, "GET", "/folders/team", None).await.json()["permission"], "ro");
    assert_eq!(call(addr, USER, "POST", "/folders/team/mkdir", Some(json!({"path": "d"}))).await.status, 403);
    assert_eq!(call(addr, ADMIN, "GET", "/folders/team", None).await.json()["is_owner"], true);

    // GraphQL `vfolder_list` lists the same folders with the caller's permission.
    let query = "query($limit:Int!, $offset:Int!, $filter: String, $order: String, $group_id: UUID) {\n  vfolder_list(\n      limit:$limit, offset:$offset, filter:$filter, order:$order, group_id:$group_id) {\n    items { name group permission ownership_type }\n    total_count\n  }\n}";
    let vars = json!({"limit": 10, "offset": 0, "filter": null, "order": null, "group_id": null});
    let reply = call(addr, USER, "POST", "/admin/gql", Some(json!({"query": query, "variables": vars}))).await;
    let page = &reply.json()["data"]["vfolder_list"];
    assert_eq!(page["total_count"], 2, "{}", reply.body);
    assert_eq!(
        page["items"][0],
        json!({"name": "team", "group": DEFAULT_PROJECT, "permission": "ro", "ownership_type": "group"})
    );
    assert_eq!(page["items"][1]["name"], "mine");
    let vars = json!({"limit": 10, "offset": 0, "filter": null, "order": null, "group_id": DEFAULT_PROJECT});
    let reply = call(addr, USER, "POST", "/admin/gql", Some(json!({"query": query, "variables": vars}))).await;
    assert_eq!(reply.json()["data"]["vfolder_list"]["total_count"], 1, "{}", reply.body);

    // A superadmin lists everything with `all`, and reaches anyone's folder by name.
    assert_eq!(names(&call(addr, ADMIN, "GET", "/folders", None).await), ["team"]);
    assert_eq!(names(&call(addr, ADMIN, "GET", "/folders", Some(json!({"all": true}))).await), ["team", "mine"]);
    let info = call(addr, ADMIN, "GET", "/folders/mine", None).await.json();
    assert_eq!((info["is_owner"].clone(), info["permission"].clone()), (json!(false), json!("rw")));

    // The folder's manager deletes it, and its shares go with it.
    assert_eq!(call(addr, ADMIN, "DELETE", "/folders/team", None).await.status, 204);
    assert!(sharing_state(&db).await.0.is_empty());
    assert_eq!(call(addr, USER, "GET", "/folders/team", None).await.status, 404);
    m.shutdown().await;
}

/// The access rules on the repository layer, on both backends.
async fn access_rules_on_every_backend(db: DatabaseConnection) {
    let fixture: Value = serde_json::from_str(common::FIXTURE).unwrap();
    repo::populate_fixture(&db, &fixture).await.unwrap();
    let admin = repo::find_user_by_email(&db, ADMIN_EMAIL).await.unwrap().unwrap();
    let user = repo::find_user_by_email(&db, USER_EMAIL).await.unwrap().unwrap();
    let project: uuid::Uuid = DEFAULT_PROJECT.parse().unwrap();
    let folder = |name: &str, user: Option<uuid::Uuid>, group: Option<uuid::Uuid>, age: i64| vfolder::ActiveModel {
        name: Set(name.to_string()),
        host: Set("local:volume1".into()),
        user: Set(user),
        group: Set(group),
        ownership_type: Set(Wire(if group.is_some() {
            VFolderOwnershipType::Group
        } else {
            VFolderOwnershipType::User
        })),
        created_at: Set(chrono::Utc::now() - chrono::Duration::seconds(age)),
        ..Default::default()
    };
    // `shared` of the admin's, shared with the user; `dup` three times: the user's own, the
    // admin's shared with the user, the project's.
    let shared = repo::create_vfolder(&db, folder("shared", Some(admin.uuid), None, 50)).await.unwrap();
    let own_dup = repo::create_vfolder(&db, folder("dup", Some(user.uuid), None, 10)).await.unwrap();
    let shared_dup = repo::create_vfolder(&db, folder("dup", Some(admin.uuid), None, 40)).await.unwrap();
    let project_dup = repo::create_vfolder(&db, folder("dup", None, Some(project), 30)).await.unwrap();
    let private = repo::create_vfolder(&db, folder("private", Some(admin.uuid), None, 20)).await.unwrap();
    repo::share_vfolder(&db, shared.id, &[(user.uuid, MountPermission::ReadOnly)]).await.unwrap();
    repo::share_vfolder(&db, shared_dup.id, &[(user.uuid, MountPermission::ReadWriteDelete)]).await.unwrap();
    let viewer = Viewer { user: user.uuid, role: UserRole::User, domain: "default".into() };

    let list = repo::accessible_vfolders(&db, &viewer, true).await.unwrap();
    let seen: Vec<(&str, AccessVia)> = list.iter().map(|a| (a.folder.name.as_str(), a.via)).collect();
    assert_eq!(
        seen,
        [
            ("shared", AccessVia::Shared),
            ("dup", AccessVia::Shared),
            ("dup", AccessVia::Project),
            ("dup", AccessVia::Owner)
        ]
    );
    let dup = repo::resolve_vfolder(&db, &viewer, "dup").await.unwrap().unwrap();
    assert_eq!((dup.folder.id, dup.via, dup.is_owner), (own_dup.id, AccessVia::Owner, true));
    let s = repo::resolve_vfolder(&db, &viewer, "shared").await.unwrap().unwrap();
    assert_eq!(
        (s.permission, s.is_owner, s.can_manage, s.can_write()),
        (MountPermission::ReadOnly, false, false, false)
    );
    assert!(repo::resolve_vfolder(&db, &viewer, "private").await.unwrap().is_none());
    // Without the own folder, the shared one wins over the project's.
    repo::delete_vfolder(&db, own_dup.id).await.unwrap();
    let dup = repo::resolve_vfolder(&db, &viewer, "dup").await.unwrap().unwrap();
    assert_eq!((dup.folder.id, dup.permission), (shared_dup.id, MountPermission::ReadWriteDelete));
    repo::unshare_vfolder(&db, shared_dup.id, &[user.uuid]).await.unwrap();
    let dup = repo::resolve_vfolder(&db, &viewer, "dup").await.unwrap().unwrap();
    assert_eq!((dup.folder.id, dup.via, dup.can_manage), (project_dup.id, AccessVia::Project, false));
    assert_eq!(repo::find_shared_vfolder(&db, user.uuid, "shared").await.unwrap().map(|f| f.id), Some(shared.id));
    // The superadmin reaches everything, manages everything and owns the project's folders.
    let root = Viewer { user: admin.uuid, role: UserRole::Superadmin, domain: "default".into() };
    assert_eq!(repo::accessible_vfolders(&db, &root, true).await.unwrap().len(), 4);
    assert_eq!(repo::accessible_vfolders(&db, &root, false).await.unwrap().len(), 4, "own and project folders");
    let p = repo::resolve_vfolder(&db, &root, "dup").await.unwrap().unwrap();
    assert_eq!(p.folder.id, shared_dup.id, "own first");
    let v = repo::resolve_vfolder(&db, &viewer, "dup").await.unwrap().unwrap();
    assert_eq!(v.folder.id, project_dup.id);
    repo::delete_vfolder(&db, shared_dup.id).await.unwrap();
    let p = repo::resolve_vfolder(&db, &root, "dup").await.unwrap().unwrap();
    assert_eq!((p.via, p.is_owner, p.can_manage), (AccessVia::Project, true, true));

    // Invitations: accept creates the share; a closed invitation cannot be closed again.
    let inv = repo::create_vfolder_invitations(
        &db,
        private.id,
        ADMIN_EMAIL,
        &[USER_EMAIL.into()],
        MountPermission::ReadWrite,
    )
    .await
    .unwrap()
    .remove(0);
    assert_eq!(repo::pending_invitations_for(&db, USER_EMAIL).await.unwrap().len(), 1);
    repo::close_vfolder_invitation(&db, inv.id, VFolderInvitationState::Accepted, Some(user.uuid)).await.unwrap();
    let err = repo::close_vfolder_invitation(&db, inv.id, VFolderInvitationState::Rejected, None).await.unwrap_err();
    assert!(err.to_string().contains("already accepted"), "{err}");
    let p = repo::resolve_vfolder(&db, &viewer, "private").await.unwrap().unwrap();
    assert_eq!((p.via, p.permission), (AccessVia::Shared, MountPermission::ReadWrite));
    assert!(repo::pending_invitations_for(&db, USER_EMAIL).await.unwrap().is_empty());
    // Deleting a folder deletes its shares and invitations (foreign keys cascade).
    repo::delete_vfolder(&db, private.id).await.unwrap();
    assert!(repo::get_vfolder_invitation(&db, inv.id).await.unwrap().is_none());
    assert!(repo::vfolder_shares(&db, private.id).await.unwrap().is_empty());
}

common::backends::db_test!(access_rules_on_every_backend);
