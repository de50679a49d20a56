//! The `tds-test-server` command line: `--sqlite FILE --database NAME [--fixture SPEC]
//! [--port N] [--user U --password P] [--tls off|optional|required]`. Prints `listening on
//! 127.0.0.1:PORT` and serves until killed (for scripts/bench.sh and manual tries).
//!
//! The backend is passed in by the binary, so that this half of the crate does not depend on
//! which database serves the rows (or how `--fixture` builds them).

use std::convert::Infallible;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use super::{ServerOptions, TestServer, TlsMode};
use crate::model::BackendFactory;

pub const USAGE: &str = "usage: tds-test-server --sqlite FILE --database NAME [--fixture SPEC] \
                         [--port N] [--user U --password P] [--tls off|optional|required]
  --fixture SPEC  build FILE first (or reuse it when it already holds that fixture):
                  clarity[:ROWS], every-type, bench[:NARROW[:WIDE]], blobs[:MB,MB,...]";

/// Why the command line ended without serving, with the exit code for each case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// `--help`: the usage, on stdout, exit 0.
    Help,
    /// Bad arguments: what is wrong and the usage, exit 2.
    Usage(String),
    /// The backend or the listener could not start, exit 1.
    Failed(String),
}

impl Exit {
    pub fn code(&self) -> u8 {
        match self {
            Exit::Help => 0,
            Exit::Failed(_) => 1,
            Exit::Usage(_) => 2,
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Help => f.write_str(USAGE),
            Exit::Usage(message) => write!(f, "{message}\n{USAGE}"),
            Exit::Failed(message) => f.write_str(message),
        }
    }
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub sqlite: PathBuf,
    pub database: String,
    /// The fixture to build in `sqlite` before serving (`fixtures::from_spec` names).
    pub fixture: Option<String>,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub tls: TlsMode,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, Exit> {
    let defaults = ServerOptions::default();
    let (default_user, default_password) = defaults.users[0].clone();
    let mut sqlite = None;
    let mut database = None;
    let mut fixture = None;
    let mut port = 0u16;
    let mut user = None;
    let mut password = None;
    let mut tls = TlsMode::Optional;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| Exit::Usage(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--sqlite" => sqlite = Some(PathBuf::from(value()?)),
            "--database" => database = Some(value()?),
            "--fixture" => fixture = Some(value()?),
            "--port" => {
                let v = value()?;
                port = v.parse().map_err(|_| {
                    Exit::Usage(format!("--port {v}: not a port number (0..=65535)"))
                })?;
            }
            "--user" => user = Some(value()?),
            "--password" => password = Some(value()?),
            "--tls" => {
                tls = match value()?.as_str() {
                    "off" => TlsMode::Off,
                    "optional" => TlsMode::Optional,
                    "required" => TlsMode::Required,
                    other => {
                        return Err(Exit::Usage(format!(
                            "--tls {other}: use off, optional or required"
                        )));
                    }
                };
            }
            "--help" | "-h" => return Err(Exit::Help),
            other => return Err(Exit::Usage(format!("unknown argument {other}"))),
        }
    }
    if user.is_some() != password.is_some() {
        return Err(Exit::Usage("--user and --password go together".to_owned()));
    }
    Ok(Args {
        sqlite: sqlite.ok_or_else(|| Exit::Usage("--sqlite FILE is required".to_owned()))?,
        database: database.ok_or_else(|| Exit::Usage("--database NAME is required".to_owned()))?,
        fixture,
        port,
        user: user.unwrap_or(default_user),
        password: password.unwrap_or(default_password),
        tls,
    })
}

/// Runs the server for the command line: opens the backend with `open(&args)` (which builds
/// `args.fixture` first when one is given), prints the address, serves until the process is
/// killed. Returns only when it cannot serve ([`Exit`]: help, bad arguments, the backend
/// cannot open, the port is taken), which the binary prints.
pub fn run(
    args: impl IntoIterator<Item = String>,
    open: impl FnOnce(&Args) -> Result<Arc<dyn BackendFactory>, String>,
) -> Result<Infallible, Exit> {
    let args = parse(args)?;
    let backend = open(&args).map_err(Exit::Failed)?;
    let options = ServerOptions {
        users: vec![(args.user, args.password)],
        tls: args.tls,
        port: args.port,
        ..ServerOptions::default()
    };
    let server = TestServer::start(options, backend)
        .map_err(|e| Exit::Failed(format!("cannot listen on 127.0.0.1:{}: {e}", args.port)))?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on 127.0.0.1:{}", server.port())
        .and_then(|()| stdout.flush())
        .map_err(|e| Exit::Failed(format!("cannot write to stdout: {e}")))?;
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_every_flag() {
        let a = parse(args(
            "--sqlite db.sqlite --database Clarity --fixture bench:100:3 --port 14330 --user u \
             --password p --tls required",
        ))
        .expect("parses");
        assert_eq!(
            a,
            Args {
                sqlite: PathBuf::from("db.sqlite"),
                database: "Clarity".to_owned(),
                fixture: Some("bench:100:3".to_owned()),
                port: 14330,
                user: "u".to_owned(),
                password: "p".to_owned(),
                tls: TlsMode::Required,
            }
        );
        let defaults = parse(args("--sqlite f --database d")).expect("parses");
        assert_eq!(defaults.fixture, None);
        assert_eq!(defaults.port, 0);
        assert_eq!(defaults.tls, TlsMode::Optional);
    }

    #[test]
    fn bad_arguments_say_what_is_wrong_and_exit_2() {
        let error = |s: &str| match parse(args(s)) {
            Err(Exit::Usage(message)) => {
                assert_eq!(Exit::Usage(message.clone()).code(), 2);
                message
            }
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(error("--database d"), "--sqlite FILE is required");
        assert_eq!(error("--sqlite f"), "--database NAME is required");
        assert!(error("--sqlite f --database d --port x").starts_with("--port x: not a port"));
        assert!(error("--sqlite f --database d --tls on").starts_with("--tls on: use off"));
        assert!(error("--sqlite f --database d --user u").starts_with("--user and --password"));
        assert_eq!(error("--sqlite"), "--sqlite needs a value");
        assert_eq!(
            error("--sqlite f --database d --fixture"),
            "--fixture needs a value"
        );
        assert_eq!(
            error("--sqlite f --database d --verbose"),
            "unknown argument --verbose"
        );
        let shown = Exit::Usage("unknown argument -x".to_owned()).to_string();
        assert!(
            shown.starts_with("unknown argument -x\nusage: tds-test-server"),
            "{shown}"
        );
    }

    #[test]
    fn help_exits_0_with_the_usage() {
        let help = parse(args("--sqlite f --help")).expect_err("help is not a server");
        assert_eq!(help, Exit::Help);
        assert_eq!(help.code(), 0);
        assert!(help.to_string().contains("--fixture SPEC"));
    }

    #[test]
    fn a_backend_that_cannot_open_exits_1_with_its_message() {
        let mut seen = None;
        let Err(exit) = run(args("--sqlite f.sqlite --database d --fixture x"), |a| {
            seen = Some(a.clone());
            Err("f.sqlite: no such fixture".to_owned())
        });
        assert_eq!(exit, Exit::Failed("f.sqlite: no such fixture".to_owned()));
        assert_eq!(exit.code(), 1);
        assert_eq!(seen.and_then(|a| a.fixture), Some("x".to_owned()));
    }

    #[test]
    fn a_port_in_use_exits_1_naming_it() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let port = taken.local_addr().expect("address").port();
        let backend: Arc<dyn BackendFactory> = Arc::new(NoDatabase);
        let Err(exit) = run(
            args(&format!("--sqlite f --database d --port {port}")),
            |_| Ok(backend),
        );
        assert_eq!(exit.code(), 1);
        assert!(
            exit.to_string()
                .starts_with(&format!("cannot listen on 127.0.0.1:{port}: ")),
            "{exit}"
        );
    }

    /// A backend that is never reached (the listener fails first).
    struct NoDatabase;

    impl BackendFactory for NoDatabase {
        fn open(
            &self,
            _database: &str,
        ) -> Result<Box<dyn crate::model::Backend>, crate::model::ServerError> {
            Err(crate::model::ServerError::new(4060, 1, 11, "no database"))
        }
    }
}
