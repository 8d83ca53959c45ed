//! The integration tests: each drives the real binary over loopback (see `support`).

mod it;
mod support;
