//! Agent mode (`innergate http|tcp|tls`): an endpoint held by this process, which
//! renews its lease while it runs and deletes it when told to stop (SPEC §1, §6).
//!
//! SIGINT and SIGTERM are listened for from before the endpoint is created until it
//! is gone, and every wait races them: a signal during the create deletes the
//! endpoint as soon as the create returns, and a signal during a renewal wins over the
//! renewal. Without that a signal would be lost between two waits, or wait out a slow
//! API call.

use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::task::JoinHandle;

use crate::client::ApiClient;
use crate::endpoint::{CreateEndpoint, EndpointView};
use crate::error::ApiError;

/// Creates `endpoint` (which should be held by an agent), keeps it alive until SIGINT
/// or SIGTERM, then deletes it. `announce` runs once it exists.
///
/// Ends with `Ok` once the endpoint was removed after a signal, with an error when it
/// could not be created or removed, or when it vanished (deleted through the API, or
/// its lease ran out).
pub fn run(
    api: ApiClient,
    endpoint: CreateEndpoint,
    announce: impl FnOnce(&EndpointView),
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let outcome = runtime.block_on(hold(api, endpoint, announce));
    // A create or renewal a signal overtook may still block a thread of the pool
    // (up to the client's timeout): dropping the runtime would wait for it.
    runtime.shutdown_background();
    outcome
}

async fn hold(
    api: ApiClient,
    endpoint: CreateEndpoint,
    announce: impl FnOnce(&EndpointView),
) -> Result<(), String> {
    let mut stop = StopSignals::install()?;
    let mut create = blocking(api.clone(), move |api| api.create(&endpoint));
    let (created, stopped) = tokio::select! {
        created = &mut create => (created, false),
        () = stop.recv() => (create.await, true),
    };
    let endpoint = created
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    announce(&endpoint);
    if !stopped {
        keep_alive(&api, &endpoint.id, &mut stop).await?;
    }
    remove(api, endpoint.id).await
}

/// Renews the lease until a signal arrives. Fails when the endpoint is gone.
async fn keep_alive(api: &ApiClient, id: &str, stop: &mut StopSignals) -> Result<(), String> {
    // The first renewal comes soon; its answer says how long leases last.
    let mut every = Duration::from_secs(1);
    loop {
        tokio::select! {
            () = stop.recv() => return Ok(()),
            () = tokio::time::sleep(every) => {}
        }
        let mut renewal = blocking(api.clone(), {
            let id = id.to_string();
            move |api| api.renew_lease(&id)
        });
        let renewed = tokio::select! {
            () = stop.recv() => return Ok(()),
            renewed = &mut renewal => renewed.map_err(|e| e.to_string())?,
        };
        match renewed {
            Ok(lease) => {
                every = Duration::from_secs((lease.expires_in_secs / 3).clamp(1, 10));
            }
            Err(e) if e.status_code == 404 => return Err(format!("endpoint {id} is gone: {e}")),
            Err(e) => log::warn!("lease renewal failed: {e}"),
        }
    }
}

/// Deletes the endpoint; one that is already gone counts as removed.
async fn remove(api: ApiClient, id: String) -> Result<(), String> {
    let deleted = blocking(api, {
        let id = id.clone();
        move |api| api.delete(&id)
    })
    .await
    .map_err(|e| e.to_string())?;
    match deleted {
        Ok(()) => eprintln!("removed {id}"),
        Err(e) if e.status_code == 404 => eprintln!("{id} was already gone"),
        Err(e) => return Err(format!("could not remove {id}: {e}")),
    }
    Ok(())
}

/// Runs a blocking API call on the runtime's blocking pool.
fn blocking<T: Send + 'static>(
    api: ApiClient,
    call: impl FnOnce(ApiClient) -> Result<T, ApiError> + Send + 'static,
) -> JoinHandle<Result<T, ApiError>> {
    tokio::task::spawn_blocking(move || call(api))
}

// === impl StopSignals ===

/// SIGINT and SIGTERM, registered once: a signal that arrives while nobody waits is
/// kept for the next [`StopSignals::recv`].
pub(crate) struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    /// Starts listening; from now on neither signal ends the process by itself.
    /// Must run inside the runtime.
    pub(crate) fn install() -> Result<Self, String> {
        let listen = |kind| signal(kind).map_err(|e| format!("cannot listen for signals: {e}"));
        Ok(StopSignals {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
        })
    }

    /// Completes on the next SIGINT or SIGTERM (or one that came since the last call).
    pub(crate) async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
