//! The hash map of every per-request lookup.

use std::collections::HashMap;

/// The maps looked up per request hash with foldhash, seeded per process: several
/// times faster than SipHash on short keys such as host names, and still not
/// predictable by an account that names hosts to collide.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
