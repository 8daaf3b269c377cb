//! The data plane's calls to control (the control link's second direction): tunnel
//! sessions ask for Binds and report endpoints they no longer hold. Control opens a
//! connection and subscribes; calls go out on it and answers come back by id. No
//! request waits on this: only sessions binding do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use innergate_table::tunnel_calls::{TunnelAnswer, TunnelCall};
use innergate_table::wire::Message;

use crate::tunnel::registry::Directory;

/// How often the endpoints that sessions hold are reported (control's lease on them).
const HELD_EVERY: Duration = Duration::from_secs(5);

/// Calls kept while no control process is subscribed (a restart, an upgrade's
/// hand-over of the socket); more than this and the oldest are dropped.
const QUEUED_MAX: usize = 1024;

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// Where calls go: the subscribed connection's writer.
    outbox: Option<flume::Sender<Message>>,
    /// Calls made while no control was subscribed, sent when one subscribes (their
    /// callers wait with their own deadline).
    queued: std::collections::VecDeque<Message>,
    /// Calls waiting for their answer.
    waiting: HashMap<u64, flume::Sender<TunnelAnswer>>,
}

/// Calls from every worker to control.
#[derive(Debug, Default)]
pub(crate) struct ControlCalls {
    state: Mutex<State>,
}

impl ControlCalls {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a call; its answer arrives on the receiver. Without a subscribed control
    /// process the call waits for one (the caller's deadline bounds the wait).
    pub(crate) fn call(&self, call: TunnelCall) -> flume::Receiver<TunnelAnswer> {
        let (tx, rx) = flume::bounded(1);
        let mut st = self.state();
        st.next_id += 1;
        let id = st.next_id;
        let msg = Message::TunnelCall { id, call };
        let unsent = match &st.outbox {
            Some(out) => out.send(msg).err().map(|e| e.into_inner()),
            None => Some(msg),
        };
        if let Some(msg) = unsent {
            st.outbox = None;
            if st.queued.len() >= QUEUED_MAX {
                if let Some(Message::TunnelCall { id, .. }) = st.queued.pop_front() {
                    st.waiting.remove(&id);
                }
            }
            st.queued.push_back(msg);
        }
        st.waiting.insert(id, tx);
        rx
    }

    /// Sends a call whose answer does not matter.
    pub(crate) fn notify(&self, call: TunnelCall) {
        let _ = self.call(call);
    }

    /// Makes the connection behind `outbox` the one calls go to; calls waiting on a
    /// previous one fail.
    pub(crate) fn subscribe(&self, outbox: flume::Sender<Message>) {
        let mut st = self.state();
        // Calls sent on a previous subscription will get no answer from it.
        let queued: std::collections::HashSet<u64> = st
            .queued
            .iter()
            .filter_map(|m| match m {
                Message::TunnelCall { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        let lost: Vec<u64> = st
            .waiting
            .keys()
            .filter(|id| !queued.contains(id))
            .copied()
            .collect();
        for id in lost {
            if let Some(tx) = st.waiting.remove(&id) {
                let _ = tx.send(TunnelAnswer::Failed(
                    "the control link was lost during the call".into(),
                ));
            }
        }
        for msg in std::mem::take(&mut st.queued) {
            let _ = outbox.send(msg);
        }
        st.outbox = Some(outbox);
    }

    /// The subscribed connection ended: calls waiting on it fail; new ones wait for
    /// the next subscription.
    pub(crate) fn unsubscribe(&self, outbox: &flume::Sender<Message>) {
        let mut st = self.state();
        if st.outbox.as_ref().is_some_and(|o| o.same_channel(outbox)) {
            st.outbox = None;
            for (_, tx) in st.waiting.drain() {
                let _ = tx.send(TunnelAnswer::Failed(
                    "the control link was lost during the call".into(),
                ));
            }
        }
    }

    pub(crate) fn answer(&self, id: u64, answer: TunnelAnswer) {
        if let Some(tx) = self.state().waiting.remove(&id) {
            let _ = tx.send(answer);
        }
    }
}

/// Reports now and then which endpoints sessions hold, so that control keeps them
/// (and drops those of a data plane that died without saying so).
pub(crate) fn spawn_renewals(calls: Arc<ControlCalls>, directory: Arc<Directory>) {
    let spawned = std::thread::Builder::new()
        .name("ig-tunnel-held".into())
        .spawn(move || loop {
            std::thread::sleep(HELD_EVERY);
            let endpoint_ids = directory.endpoints();
            if !endpoint_ids.is_empty() {
                calls.notify(TunnelCall::Held { endpoint_ids });
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the tunnel renewal thread: {e}");
    }
}
