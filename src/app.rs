//! What every request can reach: the store, the export worker, and the server's own address.

use crate::exports::Exporter;
use crate::store::Store;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct App {
    pub store: Arc<Store>,
    pub exporter: Exporter,
    /// The listening address, for URLs when a request names no Host.
    pub address: SocketAddr,
}
