//! One agent session: the TLS handshake, then muxado with typed streams — Auth first,
//! then Bind and Unbind of endpoints (each checked by control like an API create),
//! heartbeats both ways — until the agent leaves, goes silent or loses its authtoken.
//! Proxy streams are opened by [`super::open_local`], not here.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use innergate_table::tunnel_calls::{BindCall, TunnelAnswer, TunnelCall};
use innergate_table::tunnel_sessions::SessionRecord;
use innergate_table::EndpointUrl;
use monoio::net::TcpStream;
use serde_json::Value;

use super::frame::ErrorCode;
use super::mux::{Mux, MuxStream};
use super::proto::{self, BindResp, BindRespExtra, ErrResp};
use super::registry::{Held, SessionInfo};
use crate::worker::Worker;

/// How long an agent has to authenticate after its handshake.
const AUTH_DEADLINE: Duration = Duration::from_secs(10);
/// How long a stream has to say what it is, and an RPC to arrive whole.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// How long a Bind waits for control.
const BIND_DEADLINE: Duration = Duration::from_secs(30);

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Serves one connection on the tunnel port.
pub(crate) async fn serve(
    worker: Rc<Worker>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
) {
    let _ = stream.set_nodelay(true);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let acceptor = monoio_rustls::TlsAcceptor::from(tls);
    let accept = acceptor.accept(stream);
    let tls = match monoio::time::timeout(worker.config.tls_handshake_timeout, accept).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            log::debug!("tunnel: handshake with {peer}: {e}");
            return;
        }
        Err(_) => {
            log::debug!("tunnel: handshake with {peer} timed out");
            return;
        }
    };
    let mux = Mux::start(tls, fd);
    let info = Rc::new(SessionInfo {
        id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
        mux: mux.clone(),
        peer,
        client_id: RefCell::new(String::new()),
        authtoken: RefCell::new(None),
        bound: RefCell::new(Vec::new()),
    });
    worker.tunnels.add_session(info.clone());
    log::debug!(
        "tunnel session {} from {peer} on worker {}",
        info.id,
        worker.id
    );
    crate::confine::spawn(
        "tunnel heartbeats",
        keep_alive(worker.clone(), info.clone()),
    );
    while let Some(stream) = mux.accept().await {
        crate::confine::spawn(
            "a tunnel stream",
            serve_stream(worker.clone(), info.clone(), stream),
        );
    }
    let reason = mux.closed().unwrap_or_else(|| "ended".into());
    log::info!("tunnel session {} from {peer} ended: {reason}", info.id);
    end(&worker, &info);
}

/// Releases everything a finished session held.
fn end(worker: &Worker, info: &SessionInfo) {
    worker.tunnels.remove_session(info.id);
    worker.session_index.remove(&info.client_id.borrow());
    let bound = std::mem::take(&mut *info.bound.borrow_mut());
    let mut released = Vec::new();
    for endpoint in bound {
        if release(worker, info, &endpoint) {
            released.push(endpoint.to_string());
        }
    }
    // A drain ends sessions so that agents reconnect to the process taking over:
    // their endpoints stay (the new sessions rebind them).
    if !released.is_empty() && !worker.drain.is_draining() {
        worker.calls.notify(TunnelCall::Released {
            endpoint_ids: released,
        });
    }
}

/// Drops `info`'s hold on `endpoint` here and in the directory; whether no session
/// anywhere holds it now.
fn release(worker: &Worker, info: &SessionInfo, endpoint: &str) -> bool {
    worker.tunnels.release(endpoint, &info.mux);
    index_endpoints(worker, info);
    let (copy, gone) = worker.directory.release(endpoint, info.id);
    worker.publish_directory(copy);
    gone
}

/// Tells the session index which endpoints `info` binds now.
fn index_endpoints(worker: &Worker, info: &SessionInfo) {
    let bound = info.bound.borrow().iter().map(|e| e.to_string()).collect();
    worker
        .session_index
        .set_endpoints(&info.client_id.borrow(), bound);
}

/// Heartbeats towards the agent, and the liveness bound: a session that sent nothing
/// (not even a heartbeat answer) for the timeout is dead — killed, or its packets
/// dropped — and is ended so that its endpoints go offline and pool members take over.
async fn keep_alive(worker: Rc<Worker>, info: Rc<SessionInfo>) {
    let config = &worker.config;
    let every = config.tunnel_heartbeat;
    let timeout = config.tunnel_timeout;
    let started = Instant::now();
    let beat = match info.mux.open() {
        Ok(s) => Rc::new(s),
        Err(_) => return,
    };
    if beat
        .send_all(&proto::HEARTBEAT.to_be_bytes())
        .await
        .is_err()
    {
        return;
    }
    // The agent echoes each beat; reading the echoes keeps the stream's window open
    // (the session's reader notes when anything arrived).
    crate::confine::spawn("heartbeat echoes", {
        let beat = beat.clone();
        async move {
            let mut buf = Vec::with_capacity(64);
            while matches!(beat.recv_into(&mut buf).await, Ok(n) if n > 0) {}
        }
    });
    loop {
        monoio::time::sleep(every).await;
        let mux = &info.mux;
        if mux.closed().is_some() {
            return;
        }
        if info.authtoken.borrow().is_none() && started.elapsed() > AUTH_DEADLINE {
            mux.close(ErrorCode::Protocol, "no Auth within the deadline");
            return;
        }
        if mux.last_seen().elapsed() > timeout {
            log::warn!(
                "tunnel session {}: nothing heard for {timeout:?}; ending it",
                info.id
            );
            mux.close(ErrorCode::None, "the agent stopped answering heartbeats");
            return;
        }
        let id = fastrand::u32(..).to_be_bytes();
        if beat.send_all(&id).await.is_err() {
            return;
        }
    }
}

/// Reads what a stream is and serves it.
async fn serve_stream(worker: Rc<Worker>, info: Rc<SessionInfo>, stream: MuxStream) {
    let typ = match read_exact(&stream, 4).await {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => return,
    };
    match typ {
        proto::HEARTBEAT => echo(stream).await,
        proto::AUTH => rpc(&stream, |req| auth(&worker, &info, req)).await,
        proto::BIND => {
            let Some(req) = read_request(&stream).await else {
                return;
            };
            let answer = match bind(&worker, &info, &req).await {
                Ok(v) => v,
                Err(e) => error_json(&e),
            };
            respond(&stream, &answer).await;
        }
        proto::UNBIND => rpc(&stream, |req| unbind(&worker, &info, req)).await,
        proto::BIND_LABELED => {
            let _ = read_request(&stream).await;
            let e = "labeled tunnels (edges) are not supported by innergate: bind an endpoint URL";
            respond(&stream, &error_json(e)).await;
        }
        _ => stream.reset(ErrorCode::Protocol),
    }
}

/// Answers the agent's heartbeats: every 4 bytes back as they came.
async fn echo(stream: MuxStream) {
    let mut buf = Vec::with_capacity(64);
    loop {
        match stream.recv_into(&mut buf).await {
            Ok(n) if n > 0 => {
                if stream.send_all(&buf).await.is_err() {
                    return;
                }
            }
            _ => return,
        }
    }
}

async fn read_exact(stream: &MuxStream, n: usize) -> Option<Vec<u8>> {
    let read = async {
        let mut out = Vec::with_capacity(n);
        let mut buf = Vec::with_capacity(n);
        while out.len() < n {
            buf.reserve(n - out.len());
            let want = n - out.len();
            // SAFETY: `buf` has room for `want` bytes.
            let got = stream.read_into(buf.as_mut_ptr(), want).await.ok()?;
            if got == 0 {
                return None;
            }
            // SAFETY: `read_into` initialised `got` bytes.
            unsafe { buf.set_len(got) };
            out.extend_from_slice(&buf);
        }
        Some(out)
    };
    monoio::time::timeout(REQUEST_DEADLINE, read)
        .await
        .ok()
        .flatten()
}

/// Reads one JSON request (the SDKs write it and wait, without closing their side).
pub(super) async fn read_request(stream: &MuxStream) -> Option<Value> {
    let read = async {
        let mut all = Vec::new();
        let mut buf = Vec::with_capacity(4096);
        loop {
            match proto::complete_json(&all) {
                Ok(Some(v)) => return Some(v),
                Ok(None) => {}
                Err(e) => {
                    log::debug!("tunnel: bad request: {e}");
                    return None;
                }
            }
            if all.len() > proto::MAX_REQUEST {
                return None;
            }
            match stream.recv_into(&mut buf).await {
                Ok(n) if n > 0 => all.extend_from_slice(&buf),
                _ => return None,
            }
        }
    };
    let got = monoio::time::timeout(REQUEST_DEADLINE, read)
        .await
        .ok()
        .flatten();
    if got.is_none() {
        stream.reset(ErrorCode::Protocol);
    }
    got
}

/// Writes the answer and ends the stream (the SDKs read to the end).
async fn respond(stream: &MuxStream, answer: &Value) {
    let bytes = serde_json::to_vec(answer).expect("JSON values serialize");
    if stream.send_all(&bytes).await.is_ok() {
        stream.finish();
    }
}

async fn rpc(stream: &MuxStream, handle: impl FnOnce(Value) -> Result<Value, String>) {
    let Some(req) = read_request(stream).await else {
        return;
    };
    let answer = handle(req).unwrap_or_else(|e| error_json(&e));
    respond(stream, &answer).await;
}

fn error_json(message: &str) -> Value {
    serde_json::to_value(ErrResp { error: message }).expect("serializes")
}

fn auth(worker: &Worker, info: &SessionInfo, req: Value) -> Result<Value, String> {
    let req: proto::Auth =
        serde_json::from_value(req).map_err(|e| format!("invalid Auth request: {e}"))?;
    let version = proto::pick_version(&req.version)
        .ok_or("no protocol version in common (innergate speaks 3 and 2)")?;
    if info.authtoken.borrow().is_some() {
        return Err("this session is already authenticated".into());
    }
    let token = req.extra.auth_token.trim();
    if token.is_empty() {
        return Err("authentication failed: no authtoken (ERR_IG_4018)".into());
    }
    let table = worker.table();
    let Some((id, account)) = table.authtoken(token) else {
        log::info!("tunnel session {}: an authtoken that is not valid", info.id);
        return Err("authentication failed: the authtoken is not valid (ERR_IG_4018)".into());
    };
    *info.authtoken.borrow_mut() = Some((id.into(), account.into()));
    log::info!(
        "tunnel session {} authenticated ({} {} on {})",
        info.id,
        req.extra.client_type,
        req.extra.version,
        req.extra.hostname
    );
    // Which worker took the session, and of how many: innergate's agent reads it
    // back (the SDKs keep it as the session id) to open one session per worker.
    let client_id = format!(
        "ses_{}_w{}_of{}",
        info.id,
        worker.id,
        worker.config.workers.max(1)
    );
    *info.client_id.borrow_mut() = client_id.clone();
    let extra = &req.extra;
    worker.session_index.insert(
        worker.id,
        info.id,
        SessionRecord {
            id: client_id.clone(),
            account: account.to_string(),
            authtoken_id: id.to_string(),
            remote_addr: info.peer.to_string(),
            client_type: extra.client_type.clone(),
            client_version: extra.version.clone(),
            os: extra.os.clone(),
            hostname: extra.hostname.clone(),
            metadata: extra.metadata.clone(),
            started_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            endpoint_ids: Vec::new(),
        },
    );
    let resp = proto::AuthResp {
        version,
        client_id,
        extra: proto::AuthRespExtra {
            version: env!("CARGO_PKG_VERSION").into(),
            region: "innergate".into(),
            account_name: account.to_string(),
            workers: worker.config.workers.max(1),
            worker: worker.id,
        },
    };
    Ok(serde_json::to_value(resp).expect("serializes"))
}

async fn bind(worker: &Rc<Worker>, info: &SessionInfo, req: &Value) -> Result<Value, String> {
    let Some((authtoken, account)) = info.authtoken.borrow().clone() else {
        return Err("authenticate before binding".into());
    };
    let bind = proto::parse_bind(req)?;
    if !bind.id.is_empty() && info.bound.borrow().iter().any(|b| **b == *bind.id) {
        return Err(format!("this session already bound {}", bind.id));
    }
    let binding = match bind.bindings.as_slice() {
        [] => String::new(),
        [one] => one.to_ascii_lowercase(),
        _ => return Err("an endpoint has one binding".into()),
    };
    let answer = worker.calls.call(TunnelCall::Bind(BindCall {
        account: account.to_string(),
        authtoken: authtoken.to_string(),
        endpoint_id: bind.id.clone(),
        url: bind.url.clone(),
        binding,
        pooling_enabled: bind.pooling_enabled,
        traffic_policy: bind.traffic_policy.clone(),
        metadata: bind.metadata.clone(),
        forwards_to: bind.forwards_to.clone(),
    }));
    let answer = match monoio::time::timeout(BIND_DEADLINE, answer.recv_async()).await {
        Ok(Ok(a)) => a,
        Ok(Err(_)) => return Err("the control process went away during the Bind".into()),
        Err(_) => return Err("the control process did not answer the Bind in time".into()),
    };
    let (endpoint_id, url) = match answer {
        TunnelAnswer::Bound { endpoint_id, url } => (endpoint_id, url),
        TunnelAnswer::Failed(why) => return Err(why),
        other => return Err(format!("unexpected answer from control: {other:?}")),
    };
    if info.mux.closed().is_some() {
        // The session ended while control created the endpoint: give it back.
        worker.calls.notify(TunnelCall::Released {
            endpoint_ids: vec![endpoint_id],
        });
        return Err("the session ended".into());
    }
    let proto_name = match EndpointUrl::parse(&url).map(|u| u.scheme) {
        Ok(innergate_table::Scheme::Http) => "http",
        Ok(innergate_table::Scheme::Https) => "https",
        Ok(innergate_table::Scheme::Tcp) => "tcp",
        Ok(innergate_table::Scheme::Tls) => "tls",
        Err(_) => "http",
    };
    let endpoint: Rc<str> = endpoint_id.as_str().into();
    worker.tunnels.hold(
        &endpoint,
        Rc::new(Held {
            mux: info.mux.clone(),
            proto: proto_name,
        }),
    );
    info.bound.borrow_mut().push(endpoint.clone());
    index_endpoints(worker, info);
    let copy = worker.directory.hold(&endpoint, worker.id, info.id);
    worker.publish_directory(copy);
    log::info!("tunnel session {} bound {url} ({endpoint_id})", info.id);
    let resp = BindResp {
        id: endpoint_id,
        url,
        proto: bind.proto,
        opts: bind.opts,
        extra: BindRespExtra {
            token: String::new(),
        },
    };
    Ok(serde_json::to_value(resp).expect("serializes"))
}

fn unbind(worker: &Worker, info: &SessionInfo, req: Value) -> Result<Value, String> {
    let id = req
        .get("Id")
        .and_then(Value::as_str)
        .ok_or("an Unbind names the tunnel's Id")?
        .to_string();
    let held = {
        let mut bound = info.bound.borrow_mut();
        let before = bound.len();
        bound.retain(|b| **b != *id);
        bound.len() != before
    };
    if !held {
        return Err(format!("this session did not bind {id}"));
    }
    if release(worker, info, &id) {
        worker.calls.notify(TunnelCall::Released {
            endpoint_ids: vec![id],
        });
    }
    Ok(serde_json::json!({}))
}

/// Ends sessions whose authtoken was revoked, and stops tunnels whose endpoint a new
/// table no longer has (deleted through the API).
pub(crate) fn on_table(worker: &Rc<Worker>) {
    let table = worker.table();
    for info in worker.tunnels.sessions() {
        let token = info.authtoken.borrow().clone();
        if let Some((id, _)) = token {
            if !table.has_authtoken(&id) {
                log::info!(
                    "tunnel session {}: its authtoken {id} was revoked; ending it",
                    info.id
                );
                info.mux
                    .close(ErrorCode::None, "the authtoken was revoked (ERR_IG_4018)");
                continue;
            }
        }
        let gone: Vec<Rc<str>> = info
            .bound
            .borrow()
            .iter()
            .filter(|e| !table.has_endpoint(e))
            .cloned()
            .collect();
        for endpoint in gone {
            info.bound.borrow_mut().retain(|b| *b != endpoint);
            release(worker, &info, &endpoint);
            crate::confine::spawn("a StopTunnel", stop_tunnel(info.mux.clone(), endpoint));
        }
    }
}

/// Tells the agent that one of its tunnels ended (its endpoint was deleted).
async fn stop_tunnel(mux: Mux, endpoint: Rc<str>) {
    let Ok(stream) = mux.open() else {
        return;
    };
    let msg = proto::StopTunnel {
        id: &endpoint,
        message: "the endpoint was deleted",
        error_code: None,
    };
    let mut bytes = proto::STOP_TUNNEL.to_be_bytes().to_vec();
    bytes.extend(serde_json::to_vec(&msg).expect("serializes"));
    if stream.send_all(&bytes).await.is_ok() {
        stream.finish();
    }
}
