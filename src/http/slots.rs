//! The connections being served, so that no client can hold them all. Each connection is
//! either waiting (for its next request, or for the rest of one being read) or busy (its
//! request being answered). When the table is full, or one peer holds its share, a new
//! connection takes the place of the connection that has been waiting longest: a slow or
//! stalled client (slowloris) is the one that goes, never a request being answered.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How many connections may be open, in all and from one peer address, and how long a
/// connection may wait before it can be closed to make room.
#[derive(Clone, Copy, Debug)]
pub struct SlotLimits {
    pub total: usize,
    pub per_peer: usize,
    /// A connection just accepted has not had the time to send its request (its thread may
    /// not have run yet): in a burst of connections it would otherwise be closed by the next
    /// ones before it was ever read. Stalled clients are older than this.
    pub grace: Duration,
}

/// The table of open connections, shared by the accept loop and the connection threads.
#[derive(Clone, Default)]
pub struct Slots {
    table: Arc<Mutex<Table>>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Slot>,
}

struct Slot {
    peer: IpAddr,
    /// A handle on the socket, to close it from the accept thread.
    socket: TcpStream,
    /// Since when the connection has waited for bytes; None while its request is answered.
    waiting_since: Option<Instant>,
}

/// What the accept loop does with a new connection.
pub enum Admission {
    /// Serve it under this id (another connection may have been closed to make room).
    Admitted(SlotId),
    /// Every connection is busy answering a request: refuse this one.
    Full,
}

/// A connection's place in the table; leaving it frees the place.
pub struct SlotId {
    id: u64,
    slots: Slots,
}

impl Slots {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding this lock cannot leave the table inconsistent (every change is
        // one map operation), so a poisoned lock is still usable.
        self.table
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Admits a connection from `peer`, closing the longest-waiting connection of that peer (at
    /// its share) or of anyone (when the table is full) to make room.
    pub fn admit(&self, peer: IpAddr, socket: &TcpStream, limits: SlotLimits) -> Admission {
        let Ok(handle) = socket.try_clone() else {
            return Admission::Full;
        };
        let mut table = self.lock();
        let from_peer = table.open.values().filter(|s| s.peer == peer).count();
        if from_peer >= limits.per_peer && !table.evict_longest_waiting(Some(peer), limits.grace) {
            return Admission::Full;
        }
        if table.open.len() >= limits.total && !table.evict_longest_waiting(None, limits.grace) {
            return Admission::Full;
        }
        let id = table.next_id;
        table.next_id += 1;
        table.open.insert(
            id,
            Slot {
                peer,
                socket: handle,
                waiting_since: Some(Instant::now()),
            },
        );
        Admission::Admitted(SlotId {
            id,
            slots: self.clone(),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().open.len()
    }

    /// Closes every waiting connection (the server is stopping; busy ones finish their answer).
    pub fn close_waiting(&self) {
        let mut table = self.lock();
        table.open.retain(|_, slot| {
            if slot.waiting_since.is_some() {
                let _ = slot.socket.shutdown(Shutdown::Both);
                return false;
            }
            true
        });
    }
}

impl Table {
    /// Closes the connection (of `peer`, or of anyone) that has been waiting longest, at least
    /// `grace`, with nothing sent that it has not read yet; false when there is none (every
    /// connection busy, just accepted, or about to read a request that has arrived).
    fn evict_longest_waiting(&mut self, peer: Option<IpAddr>, grace: Duration) -> bool {
        let now = Instant::now();
        let mut candidates: Vec<(Instant, u64)> = self
            .open
            .iter()
            .filter(|(_, slot)| peer.is_none_or(|p| slot.peer == p))
            .filter_map(|(id, slot)| slot.waiting_since.map(|since| (since, *id)))
            .filter(|(since, _)| now.duration_since(*since) >= grace)
            .collect();
        candidates.sort_unstable();
        // A connection whose thread has not yet run to read the request waiting in its socket
        // is not stalled, only late.
        let stalled = candidates
            .into_iter()
            .map(|(_, id)| id)
            .find(|id| !has_unread_bytes(&self.open[id].socket));
        let Some(id) = stalled else {
            return false;
        };
        if let Some(slot) = self.open.remove(&id) {
            // Its thread is blocked in a read, which now fails: it ends on its own.
            let _ = slot.socket.shutdown(Shutdown::Both);
        }
        true
    }
}

/// Whether bytes have arrived on the socket that nobody has read yet (a peek that never waits
/// and leaves the socket as it was).
fn has_unread_bytes(socket: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: recv into a one-byte buffer this function owns, on a descriptor it borrows.
    let peeked = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    peeked > 0
}

impl SlotId {
    /// The connection waits for bytes from now on (it may be evicted).
    pub fn waiting(&self) {
        self.set(Some(Instant::now()));
    }

    /// The connection is answering a request (it is not evicted).
    pub fn busy(&self) {
        self.set(None);
    }

    fn set(&self, waiting_since: Option<Instant>) {
        if let Some(slot) = self.slots.lock().open.get_mut(&self.id) {
            slot.waiting_since = waiting_since;
        }
    }
}

impl Drop for SlotId {
    fn drop(&mut self) {
        self.slots.lock().open.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair(listener: &TcpListener) -> TcpStream {
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        listener.accept().unwrap().0
    }

    #[test]
    fn the_longest_waiting_connection_makes_room_and_busy_ones_never_do() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let slots = Slots::default();
        let limits = SlotLimits {
            total: 2,
            per_peer: 2,
            grace: Duration::ZERO,
        };
        let (a, b, c, d) = (
            pair(&listener),
            pair(&listener),
            pair(&listener),
            pair(&listener),
        );
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let Admission::Admitted(first) = slots.admit(peer, &a, limits) else {
            panic!("room for the first")
        };
        let Admission::Admitted(second) = slots.admit(peer, &b, limits) else {
            panic!("room for the second")
        };
        second.busy();
        // Full: the first (waiting) goes, the busy second stays.
        let Admission::Admitted(third) = slots.admit(peer, &c, limits) else {
            panic!("the waiting one made room")
        };
        assert_eq!(slots.open(), 2);
        let mut byte = [0u8; 1];
        use std::io::Read;
        assert_eq!((&a).read(&mut byte).unwrap_or(0), 0, "the first was closed");
        third.busy();
        assert!(matches!(slots.admit(peer, &d, limits), Admission::Full));
        drop((first, second, third));
        assert_eq!(slots.open(), 0);
        // Within the grace, a waiting connection is not closed either.
        let patient = SlotLimits {
            grace: Duration::from_secs(60),
            ..limits
        };
        let (e, f, g) = (pair(&listener), pair(&listener), pair(&listener));
        let _kept = [
            slots.admit(peer, &e, patient),
            slots.admit(peer, &f, patient),
        ];
        assert!(matches!(slots.admit(peer, &g, patient), Admission::Full));
    }
}
