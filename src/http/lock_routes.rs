//! HTTP endpoints of the lock service (see [`crate::engine::lock_client`] and
//! [`crate::app::lock_service`]):
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `POST /v1/sessions` | `{"ttl_ms": 10000}` (optional) | `{"session": 7, "ttl_ms": 10000}` |
//! | `POST /v1/sessions/{id}/keepalive` | none | `{"session": 7}`; 404 if expired |
//! | `DELETE /v1/sessions/{id}` | none | `{"session": 7}`; releases its locks |
//! | `POST /v1/locks/{name}/acquire` | `{"session": 7, "wait_ms": 30000}` | 200 `{"name", "token", "session"}` when granted; 202 `{"queued": true}` when `wait_ms` ran out (still in line: ask again) |
//! | `POST /v1/locks/{name}/acquire` | `{"session": 7, "timeout_ms": 500}` | a try-lock: 423 when it gave up (out of the line) |
//! | `POST /v1/locks/{name}/release` | `{"session": 7}` | 200; 409 if the session does not hold it |
//! | `GET /v1/locks`, `GET /v1/locks/{name}` | none | holder, fencing token and queue of each lock |
//!
//! Acquire is a long-poll: the wait itself is replicated state, so a client whose node
//! died asks another node with the same session and keeps its place in line.

use super::{Answer, HttpState, Reject, kind, read_json, resource};
use crate::app::lock_service::{LockInfo, SessionId};
use crate::engine::lock_client::{Acquired, Locks, OnTimeout};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};
use std::time::Duration;

const DEFAULT_TTL_MS: u64 = 10_000;
const DEFAULT_WAIT_MS: u64 = 30_000;
/// Longest a single long-poll or try-lock may wait.
const MAX_WAIT_MS: u64 = 300_000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/sessions").route(web::post().to(open_session)))
        .service(resource("/v1/sessions/{id}/keepalive").route(web::post().to(keep_alive)))
        .service(resource("/v1/sessions/{id}").route(web::delete().to(close_session)))
        .service(resource("/v1/locks").route(web::get().to(list)))
        .service(resource("/v1/locks/{name}/acquire").route(web::post().to(acquire)))
        .service(resource("/v1/locks/{name}/release").route(web::post().to(release)))
        .service(resource("/v1/locks/{name}").route(web::get().to(get)));
}

fn locks(st: &HttpState) -> Locks {
    Locks::new(st.node.clone())
}

fn lock_json(l: &LockInfo) -> Value {
    json!({"name": l.name, "holder": l.holder, "token": l.token, "queue": l.queue})
}

fn lock_name(req: &HttpRequest) -> Result<String, Reject> {
    let name = req.match_info().get("name").unwrap_or_default();
    if name.is_empty() || name.len() > 256 {
        return Err(Reject::bad("a lock name must be 1 to 256 bytes"));
    }
    Ok(name.to_string())
}

fn session_in_path(req: &HttpRequest) -> Result<SessionId, Reject> {
    let id = req.match_info().get("id").unwrap_or_default();
    id.parse()
        .map_err(|_| Reject::bad(format!("session id must be a number, not {id:?}")))
}

/// Reads an optional non-negative integer field (a JSON number or a decimal string).
fn number(m: &Map<String, Value>, field: &str) -> Result<Option<u64>, Reject> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| Reject::bad(format!("`{field}` must be a non-negative integer"))),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| Reject::bad(format!("`{field}` must be a non-negative integer"))),
        Some(v) => Err(Reject::bad(format!("`{field}` must be a number, not {}", kind(v)))),
    }
}

fn only(m: &Map<String, Value>, known: &[&str]) -> Result<(), Reject> {
    match m.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(Reject::bad(format!(
            "unknown field `{k}` (known: {})",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

fn session_in_body(m: &Map<String, Value>) -> Result<SessionId, Reject> {
    number(m, "session")?.ok_or_else(|| Reject::bad("missing `session` (open one with POST /v1/sessions)"))
}

async fn open_session(st: web::Data<HttpState>, req: HttpRequest, payload: web::Payload) -> Answer {
    let m = read_json(&req, payload, &st).await?;
    only(&m, &["ttl_ms"])?;
    let ttl_ms = number(&m, "ttl_ms")?.unwrap_or(DEFAULT_TTL_MS);
    if !(100..=3_600_000).contains(&ttl_ms) {
        return Err(Reject::bad("`ttl_ms` must be between 100 and 3600000"));
    }
    let session = locks(&st).open_session(Duration::from_millis(ttl_ms)).await?;
    Ok(HttpResponse::Ok().json(json!({"session": session, "ttl_ms": ttl_ms})))
}

async fn keep_alive(st: web::Data<HttpState>, req: HttpRequest) -> Answer {
    let session = session_in_path(&req)?;
    locks(&st).keep_alive(session).await?;
    Ok(HttpResponse::Ok().json(json!({"session": session})))
}

async fn close_session(st: web::Data<HttpState>, req: HttpRequest) -> Answer {
    let session = session_in_path(&req)?;
    locks(&st).close_session(session).await?;
    Ok(HttpResponse::Ok().json(json!({"session": session})))
}

async fn acquire(st: web::Data<HttpState>, req: HttpRequest, payload: web::Payload) -> Answer {
    let name = lock_name(&req)?;
    let m = read_json(&req, payload, &st).await?;
    only(&m, &["session", "wait_ms", "timeout_ms"])?;
    let session = session_in_body(&m)?;
    let (wait_ms, on_timeout) = match (number(&m, "wait_ms")?, number(&m, "timeout_ms")?) {
        (Some(_), Some(_)) => {
            return Err(Reject::bad(
                "give `wait_ms` (long-poll) or `timeout_ms` (try-lock), not both",
            ));
        }
        (_, Some(t)) => (t, OnTimeout::LeaveQueue),
        (w, None) => (w.unwrap_or(DEFAULT_WAIT_MS), OnTimeout::StayQueued),
    };
    if wait_ms > MAX_WAIT_MS {
        return Err(Reject::bad(format!("a wait may last at most {MAX_WAIT_MS} ms")));
    }
    let outcome = locks(&st)
        .acquire_with(&name, session, Some(Duration::from_millis(wait_ms)), on_timeout)
        .await?;
    match outcome {
        Acquired::Granted { token } => {
            Ok(HttpResponse::Ok().json(json!({"name": name, "token": token, "session": session})))
        }
        Acquired::StillWaiting => {
            Ok(HttpResponse::Accepted().json(json!({"name": name, "session": session, "queued": true})))
        }
        Acquired::TimedOut => Err(Reject::new(
            StatusCode::LOCKED,
            format!("lock {name:?} is held; gave up after {wait_ms} ms"),
        )),
    }
}

async fn release(st: web::Data<HttpState>, req: HttpRequest, payload: web::Payload) -> Answer {
    let name = lock_name(&req)?;
    let m = read_json(&req, payload, &st).await?;
    only(&m, &["session"])?;
    let session = session_in_body(&m)?;
    locks(&st).release(&name, session).await?;
    Ok(HttpResponse::Ok().json(json!({"name": name, "released": true})))
}

async fn list(st: web::Data<HttpState>) -> Answer {
    let all = locks(&st).list().await?;
    Ok(HttpResponse::Ok().json(json!({"locks": all.iter().map(lock_json).collect::<Vec<_>>()})))
}

async fn get(st: web::Data<HttpState>, req: HttpRequest) -> Answer {
    let name = lock_name(&req)?;
    Ok(HttpResponse::Ok().json(lock_json(&locks(&st).get(&name).await?)))
}
