//! Measuring a server under attack: its CPU time, memory and threads (from /proc), a
//! well-behaved client's latency meanwhile, and sockets opened from another loopback address
//! (so that an attacker is another peer than the client).
// Each test uses only part of it.
#![allow(dead_code)]

use crate::support::http_client::{Reply, read_reply};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One attack at a time: each measures a whole process, and two at once would measure each
/// other.
pub fn one_attack_at_a_time() -> MutexGuard<'static, ()> {
    static ATTACKS: Mutex<()> = Mutex::new(());
    ATTACKS.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// What /proc says of a process.
#[derive(Clone, Copy, Debug)]
pub struct ProcessStats {
    /// User and system CPU time so far.
    pub cpu: Duration,
    pub rss_mib: f64,
    /// The highest resident memory so far.
    pub peak_rss_mib: f64,
    pub threads: u64,
}

pub fn process_stats(pid: u32) -> ProcessStats {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reads /proc/PID/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("a command name") + 2..]
        .split(' ')
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reads /proc/PID/status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    ProcessStats {
        cpu: Duration::from_millis(ticks * 1000 / per_second),
        rss_mib: field("VmRSS:") as f64 / 1024.0,
        peak_rss_mib: field("VmHWM:") as f64 / 1024.0,
        threads: field("Threads:"),
    }
}

/// A TCP connection from `source` (another loopback address, such as 127.0.0.2) to `to`.
pub fn connect_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let SocketAddr::V4(to) = to else {
        panic!("an IPv4 server address")
    };
    let address = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let size = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a fresh socket is bound and connected with valid address structs; the descriptor
    // is owned by the TcpStream from then on (or closed on failure).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let local = address(source, 0);
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), size) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let remote = address(*to.ip(), to.port());
        if libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), size) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// Sends one request on a fresh connection and reads the answer, within `timeout`.
pub fn send_once(address: SocketAddr, request: &[u8], timeout: Duration) -> Option<Reply> {
    let mut stream = TcpStream::connect_timeout(&address, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    // A server that refuses early may close before reading everything: the answer still counts.
    let _ = stream.write_all(request);
    read_reply(&mut stream)
}

/// A POST of `body` to `path` with extra headers, as bytes ready to send.
pub fn post_request(path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A well-behaved client calling getLists every 20 ms on a fresh connection, until stopped.
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<ProbeReport>,
}

/// What the well-behaved client saw.
#[derive(Debug)]
pub struct ProbeReport {
    /// The time to each answer.
    pub latencies: Vec<Duration>,
    /// Calls not answered in time, or answered with anything but 200.
    pub failures: Vec<String>,
}

impl ProbeReport {
    pub fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(at).copied().unwrap_or_default()
    }

    pub fn max(&self) -> Duration {
        self.latencies.iter().copied().max().unwrap_or_default()
    }

    /// The client was answered, every time, and nine calls in ten within 100 ms (one in ten
    /// may meet the 2-core machine busy with the attack itself).
    pub fn assert_served(&self, what: &str) {
        eprintln!(
            "{what}: normal client {} calls, p50 {:?}, p90 {:?}, max {:?}, failures {}",
            self.latencies.len(),
            self.percentile(0.5),
            self.percentile(0.9),
            self.max(),
            self.failures.len()
        );
        assert!(
            self.latencies.len() >= 5,
            "{what}: the client made too few calls"
        );
        assert!(
            self.failures.is_empty(),
            "{what}: {} calls failed, the first: {:?}",
            self.failures.len(),
            &self.failures[..self.failures.len().min(3)]
        );
        assert!(
            self.percentile(0.9) <= Duration::from_millis(100),
            "{what}: p90 {:?}",
            self.percentile(0.9)
        );
    }
}

impl Probe {
    pub fn start(address: SocketAddr, key: &str) -> Probe {
        Probe::start_accepting(address, key, &[200])
    }

    /// A probe that also accepts these statuses (a prompt 503 at the descriptor limit).
    pub fn start_accepting(address: SocketAddr, key: &str, statuses: &[u16]) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let request = post_request(
            "/en/api/getLists",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            format!("api_key={key}").as_bytes(),
        );
        let statuses = statuses.to_vec();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut report = ProbeReport {
                latencies: Vec::new(),
                failures: Vec::new(),
            };
            while !stopped.load(Ordering::SeqCst) {
                let started = Instant::now();
                match send_once(address, &request, Duration::from_secs(5)) {
                    Some(reply) if statuses.contains(&reply.status) => {
                        report.latencies.push(started.elapsed())
                    }
                    Some(reply) => report.failures.push(format!(
                        "status {}: {}",
                        reply.status,
                        String::from_utf8_lossy(&reply.body)
                    )),
                    None => report
                        .failures
                        .push(format!("no answer after {:?}", started.elapsed())),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            report
        });
        Probe { stop, thread }
    }

    pub fn finish(self) -> ProbeReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the probe thread ends")
    }
}
