//! The only part of the server that knows HTTP: accepting connections (`listen`) into a bounded
//! table (`slots`), the wire (`wire`), the memory every request byte counts against (`memory`),
//! parameters from query and body (`body`), and routing with the JSON envelope of spec §2
//! (`routes`).

pub mod body;
pub mod control;
pub mod listen;
pub mod memory;
pub mod request_log;
pub mod routes;
pub mod slots;
pub mod wire;
