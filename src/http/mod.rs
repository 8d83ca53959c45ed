//! The only part of the server that knows HTTP: the wire (`wire`), parameters from query and
//! body (`body`), and routing with the JSON envelope of spec §2 (`routes`).

pub mod body;
pub mod routes;
pub mod wire;
