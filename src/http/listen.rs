//! The accept loop: admits each connection into the table of slots and gives it a thread.
//! It must keep answering when the process runs out of file descriptors, where `accept` fails
//! at once forever: it then uses a descriptor kept spare to take the waiting connection, answer
//! it 503 and close it, and backs off instead of spinning.

use crate::http::slots::{Admission, SlotLimits, Slots};
use crate::http::wire::{Connection, Handler, Limits, Refusal, write_response};
use std::fs::File;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a new connection has to send its request before it may be closed to make room
/// (between its connect and its first write a busy client may lose the processor).
const EVICTION_GRACE: Duration = Duration::from_millis(20);

/// Descriptors kept for everything but connections: the database and its WAL for the writer
/// and each reader, export files, callbacks, the spare descriptor, standard streams.
const RESERVED_DESCRIPTORS: usize = 96;

/// Raises the soft limit on open files to the hard limit (as Go's runtime does), and returns
/// how many connections fit in what remains after the reserve, at two descriptors each.
pub fn connections_within_descriptor_limit(wanted: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return wanted;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    let descriptors = usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX);
    // Below the reserve, half of what there is still leaves room for the rest.
    let room = descriptors
        .checked_sub(RESERVED_DESCRIPTORS)
        .unwrap_or(descriptors / 2);
    // Each connection takes two: its socket, and the handle `slots` keeps to close it.
    wanted.min(room / 2).max(1)
}

/// Serves connections until `stopping` is set and the listener is woken, then waits for the
/// requests in flight to be answered.
pub fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    refusal: Arc<Refusal>,
    limits: Limits,
    stopping: Arc<AtomicBool>,
    slots: Slots,
) {
    let slot_limits = SlotLimits {
        total: limits.max_connections,
        per_peer: limits.max_connections_per_peer,
        grace: EVICTION_GRACE,
    };
    let mut spare = File::open("/dev/null").ok();
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = listener.accept();
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::ZERO;
                accepted
            }
            Err(error) => {
                if out_of_descriptors(&error) {
                    // Free the spare, take the waiting connection with it, and refuse it.
                    drop(spare.take());
                    if let Ok((stream, _)) = listener.accept() {
                        refuse(&stream, &*refusal, "too many open files; retry later");
                    }
                    spare = File::open("/dev/null").ok();
                }
                backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_millis(200));
                std::thread::sleep(backoff);
                continue;
            }
        };
        let slot = match slots.admit(peer.ip(), &stream, slot_limits) {
            Admission::Admitted(slot) => slot,
            Admission::Full => {
                refuse(&stream, &*refusal, "too many connections; retry later");
                continue;
            }
        };
        let connection = Connection::new(stream, limits.clone(), stopping.clone());
        let (handler, refusal) = (handler.clone(), refusal.clone());
        // A failed spawn drops the closure, and with it the slot and the stream.
        let _ = std::thread::Builder::new()
            .name("connection".into())
            .spawn(move || {
                crate::priority::below_writer();
                connection.serve(&*handler, &*refusal, &slot);
            });
    }
    drop(listener);
    slots.close_waiting();
    let give_up = Instant::now() + limits.request_timeout + limits.idle_timeout;
    while slots.open() > 0 && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Answers 503 and closes, without waiting on a client that does not read.
fn refuse(stream: &TcpStream, refusal: &Refusal, message: &str) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = write_response(stream, &refusal(503, message), false);
}
