//! Which tunnel sessions carry which endpoints: per worker, the sessions it owns and
//! the endpoints they bound; process-wide, the [`Directory`] of which workers hold a
//! session for each endpoint, from which every worker receives a copy (so that the
//! request path looks up a thread-local map, never a lock).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use smallvec::SmallVec;

use super::mux::Mux;
use super::online;
pub(crate) use super::online::DirectoryCopy;
use crate::fast_map::FastMap;

/// A session's hold on one endpoint.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) mux: Mux,
    /// The scheme of the endpoint's URL, as proxy headers name it.
    pub(crate) proto: &'static str,
}

/// What a session is, for the worker that owns it.
#[derive(Debug)]
pub(crate) struct SessionInfo {
    pub(crate) id: u64,
    pub(crate) mux: Mux,
    /// The agent's address.
    pub(crate) peer: std::net::SocketAddr,
    /// The id the agent was given when it authenticated (empty before).
    pub(crate) client_id: RefCell<String>,
    /// The authtoken it authenticated with (its id), once it did.
    pub(crate) authtoken: RefCell<Option<(Rc<str>, Rc<str>)>>,
    /// The endpoints it bound.
    pub(crate) bound: RefCell<Vec<Rc<str>>>,
}

/// The sessions of one worker that hold each endpoint.
type LocalHolds = FastMap<Rc<str>, SmallVec<[Rc<Held>; 1]>>;
/// endpoint → (worker, session) holding it.
type Holds = HashMap<Box<str>, Vec<(usize, u64)>>;

/// One worker's tunnel state. Owned by the worker's thread.
#[derive(Debug, Default)]
pub(crate) struct Tunnels {
    local: RefCell<LocalHolds>,
    sessions: RefCell<FastMap<u64, Rc<SessionInfo>>>,
    next: Cell<usize>,
}

impl Tunnels {
    pub(crate) fn add_session(&self, info: Rc<SessionInfo>) {
        self.sessions.borrow_mut().insert(info.id, info);
    }

    pub(crate) fn remove_session(&self, id: u64) {
        self.sessions.borrow_mut().remove(&id);
    }

    /// This worker's session number `id`.
    pub(crate) fn session(&self, id: u64) -> Option<Rc<SessionInfo>> {
        self.sessions.borrow().get(&id).cloned()
    }

    /// Every session on this worker.
    pub(crate) fn sessions(&self) -> Vec<Rc<SessionInfo>> {
        self.sessions.borrow().values().cloned().collect()
    }

    pub(crate) fn hold(&self, endpoint: &Rc<str>, held: Rc<Held>) {
        self.local
            .borrow_mut()
            .entry(endpoint.clone())
            .or_default()
            .push(held);
    }

    /// Drops `mux`'s hold on `endpoint`; whether this worker still holds it.
    pub(crate) fn release(&self, endpoint: &str, mux: &Mux) -> bool {
        let mut local = self.local.borrow_mut();
        let Some(list) = local.get_mut(endpoint) else {
            return false;
        };
        list.retain(|h| !h.mux.same(mux));
        if list.is_empty() {
            local.remove(endpoint);
            false
        } else {
            true
        }
    }

    /// A live session of this worker for `endpoint`, round robin.
    pub(crate) fn pick_local(&self, endpoint: &str) -> Option<Rc<Held>> {
        let local = self.local.borrow();
        let list = local.get(endpoint)?;
        let live: SmallVec<[&Rc<Held>; 4]> =
            list.iter().filter(|h| h.mux.closed().is_none()).collect();
        if live.is_empty() {
            return None;
        }
        let n = self.next.get();
        self.next.set(n.wrapping_add(1));
        Some(live[n % live.len()].clone())
    }

    /// Another worker that holds a session for `endpoint`.
    pub(crate) fn pick_remote(&self, endpoint: &str, me: usize) -> Option<usize> {
        let others: SmallVec<[usize; 4]> = online::with(|dir| {
            dir.get(endpoint)
                .map(|workers| workers.iter().copied().filter(|w| *w != me).collect())
                .unwrap_or_default()
        });
        if others.is_empty() {
            return None;
        }
        let n = self.next.get();
        self.next.set(n.wrapping_add(1));
        Some(others[n % others.len()])
    }

    pub(crate) fn set_directory(&self, copy: Arc<DirectoryCopy>) {
        online::set(copy);
    }
}

/// The process-wide record of which workers' sessions hold which endpoints. Touched
/// only when sessions bind, unbind or end (the control path).
#[derive(Debug, Default)]
pub(crate) struct Directory {
    held: Mutex<Holds>,
}

impl Directory {
    /// Records a hold; returns the copy to give every worker.
    pub(crate) fn hold(&self, endpoint: &str, worker: usize, session: u64) -> Arc<DirectoryCopy> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.entry(endpoint.into())
            .or_default()
            .push((worker, session));
        copy(&held)
    }

    /// Drops a hold; returns the new copy and whether no session holds the endpoint
    /// any more.
    pub(crate) fn release(&self, endpoint: &str, session: u64) -> (Arc<DirectoryCopy>, bool) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mut gone = false;
        if let Some(list) = held.get_mut(endpoint) {
            list.retain(|(_, s)| *s != session);
            if list.is_empty() {
                held.remove(endpoint);
                gone = true;
            }
        }
        (copy(&held), gone)
    }

    /// Every endpoint a session holds.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.keys().map(|k| k.to_string()).collect()
    }
}

fn copy(held: &Holds) -> Arc<DirectoryCopy> {
    let mut out = DirectoryCopy::default();
    for (endpoint, list) in held {
        let mut workers: SmallVec<[usize; 4]> = list.iter().map(|(w, _)| *w).collect();
        workers.sort_unstable();
        workers.dedup();
        out.insert(endpoint.clone(), workers);
    }
    Arc::new(out)
}
