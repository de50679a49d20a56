//! The `tds-test-server` command line: `--sqlite FILE --database NAME [--port N]
//! [--user U --password P] [--tls off|optional|required]`. Prints `listening on
//! 127.0.0.1:PORT` and serves until killed (for scripts/bench.sh and manual tries).
//!
//! The backend is passed in by the binary, so that this half of the crate does not depend on
//! which database serves the rows.

use std::convert::Infallible;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ServerOptions, TestServer, TlsMode};
use crate::model::BackendFactory;

const USAGE: &str = "usage: tds-test-server --sqlite FILE --database NAME [--port N] \
                     [--user U --password P] [--tls off|optional|required]";

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub sqlite: PathBuf,
    pub database: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub tls: TlsMode,
}

/// Parses the arguments after the program name. The error says what is wrong and shows the
/// usage.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let defaults = ServerOptions::default();
    let (default_user, default_password) = defaults.users[0].clone();
    let mut sqlite = None;
    let mut database = None;
    let mut port = 0u16;
    let mut user = None;
    let mut password = None;
    let mut tls = TlsMode::Optional;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--sqlite" => sqlite = Some(PathBuf::from(value()?)),
            "--database" => database = Some(value()?),
            "--port" => {
                let v = value()?;
                port = v
                    .parse()
                    .map_err(|_| format!("--port {v}: not a port number (0..=65535)\n{USAGE}"))?;
            }
            "--user" => user = Some(value()?),
            "--password" => password = Some(value()?),
            "--tls" => {
                tls = match value()?.as_str() {
                    "off" => TlsMode::Off,
                    "optional" => TlsMode::Optional,
                    "required" => TlsMode::Required,
                    other => {
                        return Err(format!(
                            "--tls {other}: use off, optional or required\n{USAGE}"
                        ));
                    }
                };
            }
            "--help" | "-h" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if user.is_some() != password.is_some() {
        return Err(format!("--user and --password go together\n{USAGE}"));
    }
    Ok(Args {
        sqlite: sqlite.ok_or_else(|| format!("--sqlite FILE is required\n{USAGE}"))?,
        database: database.ok_or_else(|| format!("--database NAME is required\n{USAGE}"))?,
        port,
        user: user.unwrap_or(default_user),
        password: password.unwrap_or(default_password),
        tls,
    })
}

/// Runs the server for the command line: opens the backend with `open(sqlite, database)`,
/// prints the address, serves until the process is killed. Returns only on an error (bad
/// arguments, the backend cannot open, the port is taken), which the binary prints.
pub fn run(
    args: impl IntoIterator<Item = String>,
    open: impl FnOnce(&Path, &str) -> Result<Arc<dyn BackendFactory>, String>,
) -> Result<Infallible, String> {
    let args = parse(args)?;
    let backend = open(&args.sqlite, &args.database)?;
    let options = ServerOptions {
        users: vec![(args.user, args.password)],
        tls: args.tls,
        port: args.port,
        ..ServerOptions::default()
    };
    let server = TestServer::start(options, backend)
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on 127.0.0.1:{}", server.port())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
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
            "--sqlite db.sqlite --database Clarity --port 14330 --user u --password p --tls required",
        ))
        .expect("parses");
        assert_eq!(
            a,
            Args {
                sqlite: PathBuf::from("db.sqlite"),
                database: "Clarity".to_owned(),
                port: 14330,
                user: "u".to_owned(),
                password: "p".to_owned(),
                tls: TlsMode::Required,
            }
        );
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        let error = |s: &str| parse(args(s)).expect_err("refused");
        assert!(error("--database d").starts_with("--sqlite FILE is required"));
        assert!(error("--sqlite f").starts_with("--database NAME is required"));
        assert!(error("--sqlite f --database d --port x").starts_with("--port x: not a port"));
        assert!(error("--sqlite f --database d --tls on").starts_with("--tls on: use off"));
        assert!(error("--sqlite f --database d --user u").starts_with("--user and --password"));
        assert!(error("--sqlite").starts_with("--sqlite needs a value"));
    }
}
