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

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// Where calls go: the subscribed connection's writer.
    outbox: Option<flume::Sender<Message>>,
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

    /// Sends a call; its answer arrives on the receiver (a failure at once when no
    /// control process is subscribed).
    pub(crate) fn call(&self, call: TunnelCall) -> flume::Receiver<TunnelAnswer> {
        let (tx, rx) = flume::bounded(1);
        let mut st = self.state();
        st.next_id += 1;
        let id = st.next_id;
        let sent = st
            .outbox
            .as_ref()
            .is_some_and(|out| out.send(Message::TunnelCall { id, call }).is_ok());
        if sent {
            st.waiting.insert(id, tx);
        } else {
            let _ = tx.send(TunnelAnswer::Failed(
                "the gateway's control process is not connected; try again".into(),
            ));
        }
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
        st.outbox = Some(outbox);
        fail_waiting(&mut st);
    }

    /// The subscribed connection ended.
    pub(crate) fn unsubscribe(&self, outbox: &flume::Sender<Message>) {
        let mut st = self.state();
        if st.outbox.as_ref().is_some_and(|o| o.same_channel(outbox)) {
            st.outbox = None;
            fail_waiting(&mut st);
        }
    }

    pub(crate) fn answer(&self, id: u64, answer: TunnelAnswer) {
        if let Some(tx) = self.state().waiting.remove(&id) {
            let _ = tx.send(answer);
        }
    }
}

fn fail_waiting(st: &mut State) {
    for (_, tx) in st.waiting.drain() {
        let _ = tx.send(TunnelAnswer::Failed(
            "the control link was lost during the call".into(),
        ));
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
