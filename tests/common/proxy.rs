//! A loopback TCP proxy that injects network faults between the driver and PostgreSQL: cuts a
//! connection after a number of bytes (a dropped link mid-result), stalls it (a silent hang,
//! the sockets stay open), or cuts everything at once (a failover). Real sockets and a real
//! server, so the driver reports what it would report in production.
//!
//! std only: one accept thread plus two forwarding threads per connection. Every blocking call
//! ends when its socket is shut down, which `cut_all` and `Drop` do, so no thread outlives the
//! proxy.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Fixed seed: a failing test replays the same cut points on every run.
const SEED: u64 = 0x5EED_CAB0_0D1E;

/// How often idle loops (accept, a stalled connection) look at the flags.
const POLL: Duration = Duration::from_millis(5);

/// A fault-injecting TCP proxy on `127.0.0.1:<port>` in front of one upstream server.
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// State the accept thread, the forwarding threads and the test share.
struct Shared {
    upstream: SocketAddr,
    /// The byte-budget range and a generation bumped on every change, so live connections
    /// notice a new setting and draw their budget again.
    cut_after: Mutex<(Option<(u64, u64)>, u64)>,
    stalled: AtomicBool,
    shutdown: AtomicBool,
    rng: Mutex<u64>,
    connections: Mutex<Vec<Arc<Link>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    cuts: AtomicU64,
    /// `cut_first`: cuts still to make, and the byte-budget range new connections draw from.
    first_cuts: Mutex<(u64, Option<(u64, u64)>)>,
}

/// One proxied connection: both sockets, so any thread can shut them down.
struct Link {
    client: TcpStream,
    server: TcpStream,
    closed: AtomicBool,
    /// This connection alone has gone silent (`stall_live_connections`).
    stalled: AtomicBool,
}

impl Link {
    /// Shuts both sockets down in both directions, waking any thread blocked on them. With
    /// `cuts`, the first close of the link counts as a fault: counted before the shutdown, so
    /// a client that sees the cut also sees the count.
    fn close(&self, cuts: Option<&AtomicU64>) {
        if !self.closed.swap(true, Ordering::SeqCst)
            && let Some(cuts) = cuts
        {
            cuts.fetch_add(1, Ordering::SeqCst);
        }
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FaultProxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `upstream`, which must be a
    /// loopback address: the proxy is for tests on this host only.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        assert!(
            upstream.ip().is_loopback(),
            "FaultProxy forwards to loopback addresses only, not {upstream}"
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy on 127.0.0.1");
        // Non-blocking so the accept loop can see the shutdown flag.
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream,
            cut_after: Mutex::new((None, 0)),
            stalled: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            rng: Mutex::new(SEED),
            connections: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            cuts: AtomicU64::new(0),
            first_cuts: Mutex::new((0, None)),
        });
        let accept_shared = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("fault-proxy-accept".into())
            .spawn(move || accept_loop(&listener, &accept_shared))
            .expect("spawn the proxy accept thread");
        FaultProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every connection is cut (both directions shut down) after a random number of bytes
    /// server→client in [min, max], chosen per connection with a seeded RNG; `None` = never.
    /// Live connections draw their budget when the next bytes arrive and count from there.
    pub fn set_cut_after(&self, range: Option<(u64, u64)>) {
        if let Some((min, max)) = range {
            assert!(min <= max, "cut_after range [{min}, {max}] is empty");
        }
        let mut setting = lock(&self.shared.cut_after);
        *setting = (range, setting.1 + 1);
    }

    /// The next `count` connections that carry enough data are cut, each after a random number
    /// of bytes server→client in [min, max] drawn when it opens; connections that end before
    /// their budget do not count, and once `count` cuts are made traffic flows untouched.
    pub fn cut_first(&self, count: u64, min: u64, max: u64) {
        assert!(min <= max, "cut_first range [{min}, {max}] is empty");
        *lock(&self.shared.first_cuts) = (count, Some((min, max)));
    }

    /// Stop forwarding (hold the sockets open, silently) on every live connection / on new
    /// ones: a silent hang. Bytes read meanwhile are held and forwarded once unstalled.
    pub fn set_stalled(&self, stalled: bool) {
        self.shared.stalled.store(stalled, Ordering::SeqCst);
    }

    /// Every live connection goes silent for good (its sockets stay open, nothing moves);
    /// connections opened later work normally. A dead peer that never answers again.
    pub fn stall_live_connections(&self) {
        for link in lock(&self.shared.connections).iter() {
            link.stalled.store(true, Ordering::SeqCst);
        }
    }

    /// Cut every live connection now.
    pub fn cut_all(&self) {
        for link in lock(&self.shared.connections).drain(..) {
            link.close(Some(&self.shared.cuts));
        }
    }

    /// How many connections the proxy has cut (by `cut_after` or `cut_all`), not counting
    /// connections the client or server closed themselves.
    pub fn connections_cut(&self) -> u64 {
        self.shared.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // Closing on drop is teardown, not a fault: not counted in `connections_cut`.
        for link in lock(&self.shared.connections).drain(..) {
            link.close(None);
        }
        let threads: Vec<_> = lock(&self.shared.threads).drain(..).collect();
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.shutdown.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                if let Err(e) = open_link(client, shared) {
                    // Dropping the client socket closes it, as if the server were down.
                    eprintln!("fault proxy: cannot forward to {}: {e}", shared.upstream);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            // A client that gave up before the accept (ECONNABORTED) must not stop the proxy.
            Err(e) => {
                eprintln!("fault proxy: accept failed: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
}

/// Connects upstream and starts the two forwarding threads of one client connection.
fn open_link(client: TcpStream, shared: &Arc<Shared>) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    let server = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5))?;
    // Small protocol messages (a cancel request, a sync) must not wait for Nagle.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let link = Arc::new(Link {
        client: client.try_clone()?,
        server: server.try_clone()?,
        closed: AtomicBool::new(false),
        stalled: AtomicBool::new(false),
    });
    {
        let mut connections = lock(&shared.connections);
        connections.retain(|link| !link.is_closed());
        connections.push(Arc::clone(&link));
    }
    let first_cut_budget = match *lock(&shared.first_cuts) {
        (left, Some((min, max))) if left > 0 => Some(shared.draw(min, max)),
        _ => None,
    };
    let mut threads = lock(&shared.threads);
    threads.retain(|thread| !thread.is_finished());
    let mut spawn = |from: &TcpStream, to: &TcpStream, to_client: bool| -> std::io::Result<()> {
        let (from, to) = (from.try_clone()?, to.try_clone()?);
        let (link, shared) = (Arc::clone(&link), Arc::clone(shared));
        let first_cut_budget = first_cut_budget.filter(|_| to_client);
        let name = if to_client {
            "server→client"
        } else {
            "client→server"
        };
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy {name}"))
            .spawn(move || forward(from, to, to_client, first_cut_budget, &link, &shared))?;
        threads.push(thread);
        Ok(())
    };
    let spawned = spawn(&client, &server, false).and_then(|()| spawn(&server, &client, true));
    if spawned.is_err() {
        // A half-started link would hang its client: end it (its thread, if any, ends too).
        link.close(None);
    }
    spawned
}

/// Copies `from` → `to` until either side closes or the link is cut. Only the server→client
/// direction spends the `cut_after` budget and the `cut_first` one.
fn forward(
    mut from: TcpStream,
    mut to: TcpStream,
    to_client: bool,
    mut first_cut_budget: Option<u64>,
    link: &Link,
    shared: &Shared,
) {
    let mut buffer = [0u8; 16 * 1024];
    // (generation seen, bytes left before the cut; None = unlimited)
    let mut budget: (u64, Option<u64>) = (0, None);
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        // Hold what was read while stalled: nothing moves until unstalled or cut.
        while (shared.stalled.load(Ordering::SeqCst) || link.stalled.load(Ordering::SeqCst))
            && !link.is_closed()
        {
            std::thread::sleep(POLL);
        }
        if link.is_closed() {
            return;
        }
        let mut send = read;
        // A `cut_first` cut that lands in this read: taken only while cuts are left to make.
        let mut first_cut_here = false;
        if let Some(left) = first_cut_budget
            && left <= read as u64
        {
            first_cut_budget = None;
            let mut first_cuts = lock(&shared.first_cuts);
            if first_cuts.0 > 0 {
                first_cuts.0 -= 1;
                first_cut_here = true;
                send = usize::try_from(left).unwrap_or(usize::MAX);
            }
        } else if let Some(left) = first_cut_budget {
            first_cut_budget = Some(left - read as u64);
        }
        if to_client && !first_cut_here {
            let (range, generation) = *lock(&shared.cut_after);
            if generation != budget.0 {
                budget = (generation, range.map(|(min, max)| shared.draw(min, max)));
            }
            if let Some(left) = budget.1 {
                send = send.min(usize::try_from(left).unwrap_or(usize::MAX));
                budget.1 = Some(left - send as u64);
            }
        }
        if to.write_all(&buffer[..send]).is_err() {
            break;
        }
        if budget.1 == Some(0) {
            link.close(Some(&shared.cuts));
            return;
        }
        if first_cut_here {
            link.close(Some(&shared.cuts));
            return;
        }
    }
    // One side closed: close the whole link, as a TCP connection ends.
    link.close(None);
}

impl Shared {
    /// A uniform draw in [min, max] from splitmix64 (no RNG crate needed for test jitter).
    fn draw(&self, min: u64, max: u64) -> u64 {
        let mut state = lock(&self.rng);
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        match (max - min).checked_add(1) {
            Some(span) => min + z % span,
            None => z,
        }
    }
}
