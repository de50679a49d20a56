//! The TDS 7.4 wire: packets, PRELOGIN (with TLS), LOGIN7, SQL batches, RPC, tokens,
//! ATTENTION and faults on command. Written from Microsoft's [MS-TDS] specification ("Tabular
//! Data Stream Protocol"); comments cite its sections.
//!
//! The `tds-protocol` crate (0.20) was evaluated and is not used: it is a client's codec. It
//! has packet headers and PRELOGIN encode/decode, but no LOGIN7 decoding, no RPC request
//! decoding and no encoders for COLMETADATA, ROW or RETURNVALUE; its PRELOGIN encoder writes
//! the TDS version where a server sends its product version. What a server needs from it is a
//! few dozen lines here.

pub mod cli;
mod login;
mod packet;
mod reader;
mod session;
mod tls;
mod tokens;
mod types;

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::model::{BackendFactory, Param, ServerError};

/// Whether the server offers TLS ([MS-TDS] 2.2.6.5 PRELOGIN ENCRYPTION).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// ENCRYPT_NOT_SUP: no TLS at all (a client asking for it gives up).
    Off,
    /// What the client asks for: full TLS for ENCRYPT_ON, login-only for ENCRYPT_OFF.
    Optional,
    /// ENCRYPT_REQ: everything encrypted; a client that cannot encrypt is refused.
    Required,
}

/// How a test server is set up.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// SQL logins: (login, password). Logins match case-insensitively, passwords exactly.
    pub users: Vec<(String, String)>,
    pub tls: TlsMode,
    /// The server name in ERROR and INFO tokens.
    pub server_name: String,
    /// The port on 127.0.0.1; 0 lets the OS choose a free one (what tests want).
    pub port: u16,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            users: vec![("ehi".to_owned(), "Ehi-Test-Passw0rd".to_owned())],
            tls: TlsMode::Optional,
            server_name: "tds-test-server".to_owned(),
            port: 0,
        }
    }
}

/// What a request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    /// A SQL batch (packet type 1).
    Batch,
    /// An RPC: the procedure's name (`sp_executesql`, `sp_prepexec`, `sp_execute`, ... for the
    /// ProcIDs of [MS-TDS] 2.2.6.6, or the name sent).
    Rpc(String),
    /// An ATTENTION (cancel). `sql` is the statement it stopped while its results streamed,
    /// empty when it arrived after the response had ended.
    Attention,
    /// A transaction manager request (Driver 18 with autocommit off); `sql` says what it did:
    /// `BEGIN TRANSACTION`, `COMMIT TRANSACTION`, `ROLLBACK TRANSACTION` (followed by
    /// `; BEGIN TRANSACTION` when the request begins the next one at once).
    Transaction,
}

/// A request as the server received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub kind: RequestKind,
    /// The statement text: the batch, or the statement of `sp_executesql` / `sp_prepexec` /
    /// `sp_execute` (the prepared one), or `EXEC name` for a named procedure.
    pub sql: String,
    /// The statement's parameters, decoded with the type the client declared on the wire
    /// (the system procedures' own handle / statement / declaration parameters left out).
    pub params: Vec<Param>,
    /// The parameter declarations sent with the statement (`@P1 varchar(18),@P2 bigint`).
    pub declarations: Option<String>,
}

/// What a client sent at PRELOGIN and LOGIN7, for tests that pin driver behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRecord {
    pub user: String,
    pub database: String,
    pub app_name: String,
    pub server_name: String,
    /// CltIntName: the client library (`ODBC`, `DB-Library`, ...).
    pub library: String,
    pub language: String,
    /// LOGIN7 TDSVersion as sent (little-endian DWORD, 0x74000004 for TDS 7.4).
    pub tds_version: u32,
    pub packet_size: u32,
    /// FeatureExt FeatureIds requested ([MS-TDS] 2.2.6.4), in order.
    pub features: Vec<u8>,
    /// OptionFlags1, OptionFlags2, TypeFlags, OptionFlags3.
    pub option_flags: [u8; 4],
    /// PRELOGIN option tokens in the order sent.
    pub prelogin_options: Vec<u8>,
    /// PRELOGIN ENCRYPTION as sent (0 off, 1 on, 2 not supported, 3 required).
    pub prelogin_encryption: u8,
}

/// A fault the server injects. Row faults match statements whose text contains
/// `statement_contains`; `row` counts the rows of the current result set already sent (0:
/// before the first row); each fault fires `times` times, on any connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Sends this ERROR instead of row `row` and ends the statement (DONE with DONE_ERROR);
    /// class 20 and above also closes the connection, as SQL Server does.
    ErrorAtRow {
        statement_contains: String,
        row: u64,
        error: ServerError,
        times: u32,
    },
    /// Drops the TCP connection instead of sending row `row`.
    CutAtRow {
        statement_contains: String,
        row: u64,
        times: u32,
    },
    /// Waits `duration` (sending nothing) before row `row`.
    StallAtRow {
        statement_contains: String,
        row: u64,
        duration: Duration,
        times: u32,
    },
    /// Sends one value the driver cannot convert in column `column` (0-based) of row `row`:
    /// a time / datetime2 / datetimeoffset at 24:00:00 (Driver 18: 22007 "Invalid time
    /// format"), a date after 9999-12-31 (22007 "Invalid date format"), a datetime whose time
    /// is past the day (22018). Other column types are refused with an error naming them.
    BadValueAtRow {
        statement_contains: String,
        row: u64,
        column: usize,
        times: u32,
    },
    /// Refuses the next logins with this error (e.g. 4060 cannot open database, 18456).
    LoginError { error: ServerError, times: u32 },
}

/// What a row fault does when it fires.
pub(crate) enum RowFault {
    Error(ServerError),
    Cut,
    Stall(Duration),
    BadValue(usize),
}

/// The certificate and rustls configuration of a server with TLS.
pub(crate) struct Tls {
    pub(crate) config: Arc<rustls::ServerConfig>,
    /// TDS 8 strict encryption: TLS before PRELOGIN.
    pub(crate) strict: Arc<rustls::ServerConfig>,
    pem: String,
    ca_pem: String,
}

/// State shared by the server's threads.
pub(crate) struct Shared {
    pub(crate) options: ServerOptions,
    pub(crate) backend: Arc<dyn BackendFactory>,
    pub(crate) tls: Option<Tls>,
    received: Mutex<Vec<Received>>,
    logins: Mutex<Vec<LoginRecord>>,
    faults: Mutex<Vec<Fault>>,
    connections: Mutex<HashMap<u64, TcpStream>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    stopping: AtomicBool,
}

/// A lock that a panicking thread cannot make unusable for the others.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Decrements a fault's count; `true` when it is used up.
fn fire(times: &mut u32) -> bool {
    *times = times.saturating_sub(1);
    *times == 0
}

impl Shared {
    pub(crate) fn record(&self, received: Received) {
        lock(&self.received).push(received);
    }

    pub(crate) fn record_login(&self, login: LoginRecord) {
        lock(&self.logins).push(login);
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub(crate) fn take_login_fault(&self) -> Option<ServerError> {
        let mut faults = lock(&self.faults);
        let i = faults
            .iter()
            .position(|f| matches!(f, Fault::LoginError { times, .. } if *times > 0))?;
        let Fault::LoginError { error, times } = &mut faults[i] else {
            return None;
        };
        let error = error.clone();
        if fire(times) {
            faults.remove(i);
        }
        Some(error)
    }

    pub(crate) fn take_row_fault(&self, sql: &str, rows_sent: u64) -> Option<RowFault> {
        let mut faults = lock(&self.faults);
        let i = faults.iter().position(|f| match f {
            Fault::ErrorAtRow {
                statement_contains,
                row,
                ..
            }
            | Fault::CutAtRow {
                statement_contains,
                row,
                ..
            }
            | Fault::StallAtRow {
                statement_contains,
                row,
                ..
            }
            | Fault::BadValueAtRow {
                statement_contains,
                row,
                ..
            } => *row == rows_sent && sql.contains(statement_contains.as_str()),
            Fault::LoginError { .. } => false,
        })?;
        let (action, used_up) = match &mut faults[i] {
            Fault::ErrorAtRow { error, times, .. } => (RowFault::Error(error.clone()), fire(times)),
            Fault::CutAtRow { times, .. } => (RowFault::Cut, fire(times)),
            Fault::StallAtRow {
                duration, times, ..
            } => (RowFault::Stall(*duration), fire(times)),
            Fault::BadValueAtRow { column, times, .. } => {
                (RowFault::BadValue(*column), fire(times))
            }
            Fault::LoginError { .. } => return None,
        };
        if used_up {
            faults.remove(i);
        }
        Some(action)
    }
}

/// A TDS test server on 127.0.0.1 and a port the OS chose. Dropping it stops it and closes
/// every connection.
pub struct TestServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start(
        options: ServerOptions,
        backend: Arc<dyn BackendFactory>,
    ) -> io::Result<TestServer> {
        let tls = match options.tls {
            TlsMode::Off => None,
            TlsMode::Optional | TlsMode::Required => Some(tls::generate()?),
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, options.port))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            options,
            backend,
            tls,
            received: Mutex::new(Vec::new()),
            logins: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            connections: Mutex::new(HashMap::new()),
            workers: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("tds-accept-{}", addr.port()))
                .spawn(move || accept(listener, shared))?
        };
        Ok(TestServer {
            shared,
            addr,
            acceptor: Some(acceptor),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The server's certificate (CN and SAN `localhost`) generated at start, PEM, for
    /// pinning (`ServerCertificate=`); `None` when TLS is off. It is signed by
    /// [`TestServer::ca_certificate_pem`], a CA no client trusts unless told to.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.shared.tls.as_ref().map(|tls| tls.pem.as_str())
    }

    /// The test CA that signed the server's certificate, PEM: a client given it as its trust
    /// store (OpenSSL, so Driver 18 and FreeTDS: `SSL_CERT_FILE`) validates the certificate
    /// and its host name as it would a real server's.
    pub fn ca_certificate_pem(&self) -> Option<&str> {
        self.shared.tls.as_ref().map(|tls| tls.ca_pem.as_str())
    }

    /// Every request received, in order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    /// Every login attempt's PRELOGIN and LOGIN7, in order.
    pub fn logins(&self) -> Vec<LoginRecord> {
        lock(&self.shared.logins).clone()
    }

    pub fn add_fault(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    /// Drops every live connection now.
    pub fn cut_all(&self) {
        for tcp in lock(&self.shared.connections).values() {
            let _ = tcp.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which sees `stopping` and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.cut_all();
        let workers = std::mem::take(&mut *lock(&self.shared.workers));
        for worker in workers {
            let _ = worker.join();
        }
    }
}

fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let ids = AtomicU64::new(1);
    for tcp in listener.incoming() {
        if shared.stopping() {
            return;
        }
        let Ok(tcp) = tcp else { continue };
        let id = ids.fetch_add(1, Ordering::SeqCst);
        let Ok(registered) = tcp.try_clone() else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        lock(&shared.connections).insert(id, registered);
        let worker_shared = shared.clone();
        // SPIDs of user sessions start above the system ones, as on SQL Server.
        let spid = 50 + (id % 30_000) as u16;
        let worker = std::thread::Builder::new()
            .name(format!("tds-conn-{id}"))
            .spawn(move || {
                let mut link = packet::Link::new(tcp, spid);
                // A connection ends on any error: the client left, or sent what TDS forbids.
                let _ = session::serve(&mut link, &worker_shared);
                link.shutdown();
                lock(&worker_shared.connections).remove(&id);
            });
        match worker {
            Ok(worker) => {
                let mut workers = lock(&shared.workers);
                workers.retain(|w| !w.is_finished());
                workers.push(worker);
            }
            Err(_) => {
                if let Some(tcp) = lock(&shared.connections).remove(&id) {
                    let _ = tcp.shutdown(std::net::Shutdown::Both);
                }
            }
        }
    }
}
