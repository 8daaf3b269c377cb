//! Which tunnelled endpoints have a session somewhere, as this worker last heard: a
//! thread-local copy of the directory, so that routing (a leaf that does no I/O) can
//! skip pool members whose agents are gone without touching another thread.

use std::cell::RefCell;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::fast_map::FastMap;

/// Endpoint id → the workers that hold a session for it.
pub(crate) type DirectoryCopy = FastMap<Box<str>, SmallVec<[usize; 4]>>;

thread_local! {
    static DIRECTORY: RefCell<Arc<DirectoryCopy>> = RefCell::default();
}

/// Replaces this thread's copy.
pub(crate) fn set(copy: Arc<DirectoryCopy>) {
    DIRECTORY.with(|d| *d.borrow_mut() = copy);
}

/// Reads this thread's copy (without cloning the `Arc`, whose count every worker
/// shares).
pub(crate) fn with<R>(f: impl FnOnce(&DirectoryCopy) -> R) -> R {
    DIRECTORY.with(|d| f(&d.borrow()))
}

/// Whether a session anywhere holds `endpoint`.
pub(crate) fn online(endpoint: &str) -> bool {
    DIRECTORY.with(|d| d.borrow().contains_key(endpoint))
}
