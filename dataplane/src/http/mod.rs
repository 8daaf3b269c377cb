//! HTTP/1.x: heads, body framing, streaming, and the client-connection driver.

pub(crate) mod body;
pub(crate) mod buf;
pub(crate) mod conn;
pub mod framing;
pub(crate) mod head;
