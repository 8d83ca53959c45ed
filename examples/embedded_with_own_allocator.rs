//! A program with a global allocator of its own that embeds the server: it links only because
//! the library sets none (the binary chooses mimalloc in `main.rs`). `cargo test` builds it;
//! `cargo run --example embedded_with_own_allocator` runs it.

use std::io::{Read, Write};
use std::net::TcpStream;
use unisender_local::server::{ServeConfig, Server};
use unisender_local::store::db::Durability;

#[global_allocator]
static ALLOCATOR: std::alloc::System = std::alloc::System;

fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(ServeConfig {
        db: dir.path().join("embedded.db"),
        accounts: vec![("demo".into(), "demo-key".into())],
        durability: Durability::Relaxed,
        ..ServeConfig::default()
    })
    .expect("the server starts");
    let mut stream = TcpStream::connect(server.address()).expect("connects");
    stream
        .write_all(b"GET /_local/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("sends");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("reads");
    println!("{}", answer.lines().last().unwrap_or_default());
    // Dropping the server stops it and closes its database.
}
