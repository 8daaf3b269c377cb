//! The process-wide index of authenticated tunnel sessions: what control lists in its
//! `tunnel_sessions` API, and which worker owns each session, so that a command for
//! one reaches the thread that can open a stream on it. Touched when sessions
//! authenticate, bind, unbind and end: never on the request path.

use std::collections::BTreeMap;
use std::sync::Mutex;

use innergate_table::tunnel_sessions::SessionRecord;

/// Every authenticated session, by the id its agent was given.
#[derive(Debug, Default)]
pub(crate) struct SessionIndex {
    sessions: Mutex<BTreeMap<String, Indexed>>,
}

#[derive(Debug)]
struct Indexed {
    worker: usize,
    /// The session's number on its worker.
    local: u64,
    record: SessionRecord,
}

impl SessionIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Indexed>> {
        // Every holder replaces whole entries: a panic leaves nothing half-written.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A session authenticated on `worker` as its session number `local`.
    pub(crate) fn insert(&self, worker: usize, local: u64, record: SessionRecord) {
        let id = record.id.clone();
        self.lock().insert(
            id,
            Indexed {
                worker,
                local,
                record,
            },
        );
    }

    /// The endpoints a session binds now.
    pub(crate) fn set_endpoints(&self, id: &str, endpoint_ids: Vec<String>) {
        if let Some(entry) = self.lock().get_mut(id) {
            entry.record.endpoint_ids = endpoint_ids;
        }
    }

    pub(crate) fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Every session, in id order.
    pub(crate) fn list(&self) -> Vec<SessionRecord> {
        self.lock().values().map(|e| e.record.clone()).collect()
    }

    /// The worker that owns session `id`, and the session's number there.
    pub(crate) fn locate(&self, id: &str) -> Option<(usize, u64)> {
        self.lock().get(id).map(|e| (e.worker, e.local))
    }
}
