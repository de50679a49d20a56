//! One client connection from PRELOGIN to close: login, then requests (SQL batches, RPCs,
//! ATTENTION, transaction manager requests) answered through the backend, with the faults the
//! test asked for.

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use super::login::{self, Encryption};
use super::packet::{Link, Message, Out, packet_type};
use super::reader::{DecodeError, Reader, utf16_string};
use super::tokens::{self, CMD_SELECT, DONE, DONEINPROC, DONEPROC, done_status};
use super::types;
use super::{Received, RequestKind, RowFault, Shared};
use crate::model::{
    Backend, Collation, ColumnMeta, Interrupt, Param, ResultSink, ServerError, SqlType, Value,
};

/// Serves a connection until the client leaves, a fault cuts it, or the server stops.
pub(crate) fn serve(link: &mut Link, shared: &Shared) -> io::Result<()> {
    let Some(mut backend) = login(link, shared)? else {
        return Ok(());
    };
    let mut session = Session {
        link,
        shared,
        prepared: HashMap::new(),
        next_handle: 1,
        transaction: None,
        next_transaction: 1,
    };
    loop {
        let message = session.link.read_message()?;
        session.link.attention = false;
        if !session.request(message, backend.as_mut())? {
            return Ok(());
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// PRELOGIN, TLS if negotiated, LOGIN7. Returns the backend of an accepted login.
fn login(link: &mut Link, shared: &Shared) -> io::Result<Option<Box<dyn Backend>>> {
    let strict = link.starts_with_tls()?;
    if strict {
        let config = shared
            .tls
            .as_ref()
            .map(|tls| tls.strict.clone())
            .ok_or_else(|| invalid("TDS 8 strict encryption asked of a server without TLS"))?;
        link.start_strict_tls(config)?;
    }
    let first = link.read_message()?;
    if first.packet_type != packet_type::PRELOGIN {
        return Err(invalid(format!(
            "expected PRELOGIN, got packet type 0x{:02X}",
            first.packet_type
        )));
    }
    let prelogin = login::read_prelogin(&first.payload).map_err(invalid)?;
    let negotiated = if strict {
        // Already inside TLS: the PRELOGIN answer echoes the client's value.
        Some((prelogin.encryption, Encryption::None))
    } else {
        login::negotiate(shared.options.tls, prelogin.encryption)
    };
    let Some((answer, encryption)) = negotiated else {
        // [MS-TDS] 2.2.6.5: the server terminates a client that cannot encrypt.
        return Ok(None);
    };
    login::write_prelogin(link, answer)?;
    if encryption != Encryption::None {
        let config = shared
            .tls
            .as_ref()
            .map(|tls| tls.config.clone())
            .ok_or_else(|| io::Error::other("encryption negotiated without a certificate"))?;
        link.start_tls(config)?;
    }
    let message = link.read_message()?;
    if encryption == Encryption::LoginOnly {
        link.stop_tls();
    }
    if message.packet_type != packet_type::LOGIN7 {
        return Err(invalid(format!(
            "expected LOGIN7, got packet type 0x{:02X}",
            message.packet_type
        )));
    }
    let login7 = login::read_login7(&message.payload).map_err(invalid)?;
    shared.record_login(login7.record(&prelogin));
    let server = &shared.options.server_name;
    if let Some(error) = shared.take_login_fault() {
        login::refuse(link, &[error], server)?;
        return Ok(None);
    }
    let known = shared.options.users.iter().any(|(user, password)| {
        user.eq_ignore_ascii_case(&login7.user) && *password == login7.password
    });
    if !known {
        login::refuse(link, &[login::login_failed(&login7.user)], server)?;
        return Ok(None);
    }
    let database = if login7.database.is_empty() {
        "master"
    } else {
        &login7.database
    };
    match shared.backend.open(&login7.database) {
        Ok(backend) => {
            link.packet_size = login::accept(link, &login7, database, server)?;
            Ok(Some(backend))
        }
        Err(error) => {
            // As SQL Server does for an unknown database: 4060, then 18456.
            login::refuse(link, &[error, login::login_failed(&login7.user)], server)?;
            Ok(None)
        }
    }
}

/// [MS-TDS] 2.2.5.3 ALL_HEADERS: TotalLength counts itself; what it holds is not needed here.
fn skip_all_headers(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    let total = r.u32()? as usize;
    if total < 4 {
        return Err(DecodeError::new("ALL_HEADERS TotalLength is under 4"));
    }
    r.bytes(total - 4)?;
    Ok(())
}

/// The system procedures of [MS-TDS] 2.2.6.6 ProcID.
fn proc_name(id: u16) -> String {
    match id {
        1 => "sp_cursor",
        2 => "sp_cursoropen",
        3 => "sp_cursorprepare",
        4 => "sp_cursorexecute",
        5 => "sp_cursorprepexec",
        6 => "sp_cursorunprepare",
        7 => "sp_cursorfetch",
        8 => "sp_cursoroption",
        9 => "sp_cursorclose",
        10 => "sp_executesql",
        11 => "sp_prepare",
        12 => "sp_execute",
        13 => "sp_prepexec",
        14 => "sp_prepexecrpc",
        15 => "sp_unprepare",
        other => return format!("proc id {other}"),
    }
    .to_owned()
}

/// An RPC request: procedure and parameters ([MS-TDS] 2.2.6.6).
struct Rpc {
    name: String,
    params: Vec<Param>,
}

fn read_rpc(payload: &[u8]) -> Result<Rpc, DecodeError> {
    let mut r = Reader::new(payload);
    skip_all_headers(&mut r)?;
    let name_len = r.u16()?;
    let name = if name_len == 0xFFFF {
        proc_name(r.u16()?)
    } else {
        r.utf16(usize::from(name_len))?
    };
    let _option_flags = r.u16()?;
    let mut params = Vec::new();
    while r.remaining() > 0 {
        let name = r.b_varchar()?;
        let _status = r.u8()?;
        let wire = types::read_type_info(&mut r)?;
        let value = types::read_value(&mut r, &wire)?;
        params.push(Param {
            name,
            ty: wire.sql_type,
            value,
        });
        // BatchFlag / NoExecFlag: several RPCs in one message.
        if let Some(&flag) = payload.get(r.position())
            && (flag == 0x80 || flag == 0xFF)
        {
            return Err(DecodeError::new(
                "several RPCs in one request are not supported",
            ));
        }
    }
    Ok(Rpc { name, params })
}

/// Driver 18 sends parameters without names (positional), named only in the declarations
/// (`@P1 bigint,@P2 decimal(38,4)`): take the names from there.
fn name_from_declarations(params: &mut [Param], declarations: &str) {
    let names = split_declarations(declarations).into_iter().map(|item| {
        item.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    });
    for (param, name) in params.iter_mut().zip(names) {
        if param.name.is_empty() {
            param.name = name;
        }
    }
}

/// NULL parameters of the types in a declaration string, for describing a prepared statement.
fn declared_nulls(declarations: &str) -> Vec<Param> {
    let mut params: Vec<Param> = split_declarations(declarations)
        .iter()
        .map(|item| {
            let mut words = item.splitn(2, char::is_whitespace);
            let name = words.next().unwrap_or_default().to_owned();
            let ty = declared_type(words.next().unwrap_or_default().trim());
            Param {
                name,
                ty,
                value: Value::Null,
            }
        })
        .collect();
    params.retain(|p| !p.name.is_empty());
    params
}

/// A T-SQL type name as written in a declaration (`decimal(38,4)`, `nvarchar(max)`); what the
/// test server does not know is nvarchar(max).
fn declared_type(text: &str) -> SqlType {
    let lower = text.to_ascii_lowercase();
    let (name, args) = match lower.split_once('(') {
        Some((name, rest)) => (name.trim(), rest.trim_end_matches(')')),
        None => (lower.trim(), ""),
    };
    let mut numbers = args.split(',').map(|a| a.trim().parse::<u16>().ok());
    let first = numbers.next().flatten();
    let second = numbers.next().flatten();
    let length = first; // None for (max) or no length
    let scale = |default: u8| first.map_or(default, |s| s.min(7) as u8);
    let collation = Collation::default_collation;
    match name {
        "bigint" => SqlType::BigInt,
        "int" => SqlType::Int,
        "smallint" => SqlType::SmallInt,
        "tinyint" => SqlType::TinyInt,
        "bit" => SqlType::Bit,
        "float" => SqlType::Float,
        "real" => SqlType::Real,
        "money" => SqlType::Money,
        "smallmoney" => SqlType::SmallMoney,
        "decimal" | "numeric" => SqlType::Decimal {
            precision: first.map_or(18, |p| p.min(38) as u8),
            scale: second.map_or(0, |s| s.min(38) as u8),
        },
        "date" => SqlType::Date,
        "time" => SqlType::Time { scale: scale(7) },
        "datetime" => SqlType::DateTime,
        "smalldatetime" => SqlType::SmallDateTime,
        "datetime2" => SqlType::DateTime2 { scale: scale(7) },
        "datetimeoffset" => SqlType::DateTimeOffset { scale: scale(7) },
        "char" => SqlType::Char {
            length: length.unwrap_or(1),
            collation: collation(),
        },
        "varchar" => SqlType::VarChar {
            length,
            collation: collation(),
        },
        "nchar" => SqlType::NChar {
            length: length.unwrap_or(1),
        },
        "binary" => SqlType::Binary {
            length: length.unwrap_or(1),
        },
        "varbinary" => SqlType::VarBinary { length },
        "uniqueidentifier" => SqlType::UniqueIdentifier,
        "xml" => SqlType::Xml,
        "nvarchar" => SqlType::NVarChar { length },
        _ => SqlType::NVarChar { length: None },
    }
}

/// The items of a declaration string, split at the commas outside parentheses.
fn split_declarations(declarations: &str) -> Vec<String> {
    let mut depth = 0i32;
    let mut items = Vec::new();
    let mut item = String::new();
    for c in declarations.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut item).trim().to_owned());
                continue;
            }
            _ => {}
        }
        item.push(c);
    }
    if !item.trim().is_empty() {
        items.push(item.trim().to_owned());
    }
    items
}

/// A prepared statement of this connection (`sp_prepare`, `sp_prepexec`).
struct Prepared {
    sql: String,
    declarations: Option<String>,
}

struct Session<'a> {
    link: &'a mut Link,
    shared: &'a Shared,
    prepared: HashMap<i32, Prepared>,
    next_handle: i32,
    /// The descriptor of the open transaction ([MS-TDS] 2.2.5.3.2), if any.
    transaction: Option<u64>,
    next_transaction: u64,
}

/// What a statement runs as: a batch's DONE tokens, a procedure's DONEINPROC/DONEPROC, or
/// `sp_prepare`'s description of the result (COLMETADATA only, no rows).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Frame {
    Batch,
    Proc,
    Describe,
}

impl Session<'_> {
    /// Answers one request. `false`: close the connection.
    fn request(&mut self, message: Message, backend: &mut dyn Backend) -> io::Result<bool> {
        match message.packet_type {
            packet_type::SQL_BATCH => {
                let mut r = Reader::new(&message.payload);
                let sql =
                    skip_all_headers(&mut r).and_then(|()| utf16_string(r.bytes(r.remaining())?));
                match sql {
                    Ok(sql) => {
                        self.shared.record(Received {
                            kind: RequestKind::Batch,
                            sql: sql.clone(),
                            params: Vec::new(),
                            declarations: None,
                        });
                        self.run(backend, &sql, &[], Frame::Batch, None)
                    }
                    Err(e) => self.protocol_error(&e),
                }
            }
            packet_type::RPC => match read_rpc(&message.payload) {
                Ok(rpc) => self.rpc(backend, rpc),
                Err(e) => self.protocol_error(&e),
            },
            packet_type::ATTENTION => {
                // Nothing is running (the response ended before the ATTENTION arrived): SQL
                // Server still acknowledges it.
                self.shared.record(Received {
                    kind: RequestKind::Attention,
                    sql: String::new(),
                    params: Vec::new(),
                    declarations: None,
                });
                let mut out = Out::new(self.link, packet_type::TABULAR_RESULT);
                tokens::done(&mut out, DONE, done_status::ATTN, 0, 0)?;
                out.finish()?;
                Ok(true)
            }
            packet_type::TRANSACTION_MANAGER => self.transaction(&message.payload),
            other => Err(invalid(format!("unexpected packet type 0x{other:02X}"))),
        }
    }

    fn protocol_error(&mut self, e: &DecodeError) -> io::Result<bool> {
        let error = ServerError::new(
            8009,
            1,
            16,
            format!("The incoming tabular data stream (TDS) protocol stream is incorrect: {e}"),
        );
        let mut out = Out::new(self.link, packet_type::TABULAR_RESULT);
        tokens::error(&mut out, &error, &self.shared.options.server_name)?;
        tokens::done(&mut out, DONE, done_status::ERROR, 0, 0)?;
        out.finish()?;
        Ok(true)
    }

    /// [MS-TDS] 2.2.6.9 Transaction Manager Request (Driver 18 with autocommit off): begin,
    /// commit, rollback, answered with the ENVCHANGE SQL Server sends (8 begin, 9 commit,
    /// 10 rollback, [MS-TDS] 2.2.7.9) and DONE. The backend is not told.
    fn transaction(&mut self, payload: &[u8]) -> io::Result<bool> {
        const TM_BEGIN_XACT: u16 = 5;
        const TM_COMMIT_XACT: u16 = 7;
        const TM_ROLLBACK_XACT: u16 = 8;
        let mut r = Reader::new(payload);
        let request = skip_all_headers(&mut r).and_then(|()| r.u16());
        // COMMIT and ROLLBACK: XactName, then fBeginXact (1: begin a new one at once).
        let mut begin_after = || -> Result<bool, DecodeError> {
            r.b_varchar()?;
            Ok(r.remaining() > 0 && r.u8()? & 0x01 != 0)
        };
        let (ends, begins, sql) = match request {
            Ok(TM_BEGIN_XACT) => (None, true, "BEGIN TRANSACTION"),
            Ok(TM_COMMIT_XACT) => match begin_after() {
                Ok(begins) => (Some(9), begins, "COMMIT TRANSACTION"),
                Err(e) => return self.protocol_error(&e),
            },
            Ok(TM_ROLLBACK_XACT) => match begin_after() {
                Ok(begins) => (Some(10), begins, "ROLLBACK TRANSACTION"),
                Err(e) => return self.protocol_error(&e),
            },
            Ok(other) => {
                let e = DecodeError::new(format!("transaction manager request {other}"));
                return self.protocol_error(&e);
            }
            Err(e) => return self.protocol_error(&e),
        };
        self.shared.record(Received {
            kind: RequestKind::Transaction,
            sql: if begins && ends.is_some() {
                format!("{sql}; BEGIN TRANSACTION")
            } else {
                sql.to_owned()
            },
            params: Vec::new(),
            declarations: None,
        });
        let mut out = Out::new(self.link, packet_type::TABULAR_RESULT);
        if let Some(env_type) = ends {
            let old = self.transaction.take().map(u64::to_le_bytes);
            tokens::envchange_bytes(&mut out, env_type, &[], old.as_ref().map_or(&[], |d| d))?;
        }
        if begins {
            let descriptor = self.next_transaction;
            self.next_transaction += 1;
            self.transaction = Some(descriptor);
            tokens::envchange_bytes(&mut out, 8, &descriptor.to_le_bytes(), &[])?;
        }
        tokens::done(&mut out, DONE, done_status::FINAL, 0, 0)?;
        out.finish()?;
        Ok(true)
    }

    fn rpc(&mut self, backend: &mut dyn Backend, rpc: Rpc) -> io::Result<bool> {
        let text = |p: Option<&Param>| match p.map(|p| &p.value) {
            Some(Value::Text(s)) => Some(s.clone()),
            _ => None,
        };
        let int = |p: Option<&Param>| match p.map(|p| &p.value) {
            Some(Value::Int(i)) => i32::try_from(*i).ok(),
            _ => None,
        };
        let mut params = rpc.params;
        let (sql, declarations, rest, handle_out): (String, Option<String>, Vec<Param>, _) =
            match rpc.name.as_str() {
                "sp_executesql" => {
                    let Some(sql) = text(params.first()) else {
                        return self.rpc_error(&rpc.name, "the statement parameter is missing");
                    };
                    let declarations = text(params.get(1));
                    let rest = params.split_off(params.len().min(2));
                    (sql, declarations, rest, None)
                }
                "sp_prepexec" | "sp_prepare" => {
                    let Some(sql) = text(params.get(2)) else {
                        return self.rpc_error(&rpc.name, "the statement parameter is missing");
                    };
                    let declarations = text(params.get(1));
                    let handle_name = params.first().map(|p| p.name.clone()).unwrap_or_default();
                    let handle = self.next_handle;
                    self.next_handle += 1;
                    self.prepared.insert(
                        handle,
                        Prepared {
                            sql: sql.clone(),
                            declarations: declarations.clone(),
                        },
                    );
                    let rest = if rpc.name == "sp_prepexec" {
                        params.split_off(params.len().min(3))
                    } else {
                        Vec::new()
                    };
                    (sql, declarations, rest, Some((handle_name, handle)))
                }
                "sp_execute" => {
                    let Some(prepared) = int(params.first()).and_then(|h| self.prepared.get(&h))
                    else {
                        let error = ServerError::new(
                            8179,
                            2,
                            16,
                            "Could not find prepared statement with handle.",
                        );
                        return self.send_error(Frame::Proc, &error);
                    };
                    let (sql, declarations) = (prepared.sql.clone(), prepared.declarations.clone());
                    (
                        sql,
                        declarations,
                        params.split_off(params.len().min(1)),
                        None,
                    )
                }
                "sp_unprepare" => {
                    if let Some(h) = int(params.first()) {
                        self.prepared.remove(&h);
                    }
                    self.shared.record(Received {
                        kind: RequestKind::Rpc(rpc.name.clone()),
                        sql: String::new(),
                        params,
                        declarations: None,
                    });
                    let mut out = Out::new(self.link, packet_type::TABULAR_RESULT);
                    tokens::returnstatus(&mut out, 0)?;
                    tokens::done(&mut out, DONEPROC, done_status::FINAL, 0, 0)?;
                    out.finish()?;
                    return Ok(true);
                }
                name if name.starts_with("sp_cursor") || name == "sp_prepexecrpc" => {
                    return self.rpc_error(name, "server cursors are not supported");
                }
                // A named procedure reaches the backend as `EXEC name` with its parameters.
                name => (format!("EXEC {name}"), None, params, None),
            };
        let mut rest = rest;
        if let Some(declarations) = &declarations {
            name_from_declarations(&mut rest, declarations);
        }
        self.shared.record(Received {
            kind: RequestKind::Rpc(rpc.name.clone()),
            sql: sql.clone(),
            params: rest.clone(),
            declarations: declarations.clone(),
        });
        if rpc.name == "sp_prepare" {
            // Like SQL Server, describe the result (drivers ask for it before executing): the
            // statement runs with NULL parameters of the declared types until COLMETADATA.
            let nulls = declarations
                .as_deref()
                .map(declared_nulls)
                .unwrap_or_default();
            return self.run(backend, &sql, &nulls, Frame::Describe, handle_out);
        }
        self.run(backend, &sql, &rest, Frame::Proc, handle_out)
    }

    fn rpc_error(&mut self, name: &str, what: &str) -> io::Result<bool> {
        let error = ServerError::new(
            50000,
            1,
            16,
            format!("The test server cannot run {name}: {what}."),
        );
        self.send_error(Frame::Proc, &error)
    }

    fn send_error(&mut self, frame: Frame, error: &ServerError) -> io::Result<bool> {
        let mut out = Out::new(self.link, packet_type::TABULAR_RESULT);
        tokens::error(&mut out, error, &self.shared.options.server_name)?;
        let token = if frame != Frame::Batch {
            DONEPROC
        } else {
            DONE
        };
        tokens::done(&mut out, token, done_status::ERROR, 0, 0)?;
        out.finish()?;
        Ok(true)
    }

    /// Runs a statement through the backend and ends the response as SQL Server does.
    fn run(
        &mut self,
        backend: &mut dyn Backend,
        sql: &str,
        params: &[Param],
        frame: Frame,
        handle_out: Option<(String, i32)>,
    ) -> io::Result<bool> {
        let mut sink = WireSink {
            out: Out::new(self.link, packet_type::TABULAR_RESULT),
            shared: self.shared,
            sql,
            frame,
            columns: Vec::new(),
            rows_sent: 0,
            pending_done: None,
            any_done: false,
            statement_has_columns: false,
            described: false,
            inline: Vec::new(),
            io_error: None,
        };
        let result = backend.execute(sql, params, &mut sink);
        if let Some(e) = sink.io_error.take() {
            return Err(e);
        }
        let result = match result {
            Err(Interrupt::Attention) if sink.described => Ok(()),
            other => other,
        };
        let server = &self.shared.options.server_name;
        let result_was_attention = matches!(result, Err(Interrupt::Attention));
        let after = match result {
            Ok(()) => {
                sink.flush_pending(frame != Frame::Batch)?;
                let out = &mut sink.out;
                match frame {
                    Frame::Batch if !sink.any_done => {
                        tokens::done(out, DONE, done_status::FINAL, 0, 0)?;
                    }
                    Frame::Batch => {}
                    Frame::Proc | Frame::Describe => {
                        tokens::returnstatus(out, 0)?;
                        if let Some((name, handle)) = &handle_out {
                            tokens::returnvalue_int(out, 0, name, *handle)?;
                        }
                        tokens::done(out, DONEPROC, done_status::FINAL, 0, 0)?;
                    }
                }
                After::KeepOpen
            }
            Err(Interrupt::Error(error)) => {
                sink.flush_pending(true)?;
                let out = &mut sink.out;
                tokens::error(out, &error, server)?;
                let token = if frame != Frame::Batch {
                    DONEPROC
                } else {
                    DONE
                };
                tokens::done(out, token, done_status::ERROR, 0, 0)?;
                // Severity 20 and above ends the connection.
                if error.class < 20 {
                    After::KeepOpen
                } else {
                    After::Close
                }
            }
            // The statement's results so far are discarded by the client; DONE_ATTN ends them.
            Err(Interrupt::Attention) => {
                tokens::done(&mut sink.out, DONE, done_status::ATTN, 0, 0)?;
                After::KeepOpen
            }
            Err(Interrupt::Disconnected) => return Ok(false),
        };
        if sink.out.link().attention {
            self.shared.record(Received {
                kind: RequestKind::Attention,
                sql: sql.to_owned(),
                params: Vec::new(),
                declarations: None,
            });
            // An ATTENTION noticed after the backend's last row still needs its acknowledgment.
            if !result_was_attention {
                tokens::done(&mut sink.out, DONE, done_status::ATTN, 0, 0)?;
            }
        }
        sink.out.finish()?;
        Ok(after == After::KeepOpen)
    }
}

#[derive(PartialEq, Eq)]
enum After {
    KeepOpen,
    Close,
}

/// The backend's view of the response: tokens written as results come, faults applied.
struct WireSink<'a, 'l> {
    out: Out<'l>,
    shared: &'a Shared,
    sql: &'a str,
    frame: Frame,
    columns: Vec<ColumnMeta>,
    rows_sent: u64,
    /// A statement's DONE waits until it is known whether more results follow (DONE_MORE).
    pending_done: Option<(Option<u64>, bool)>,
    /// Some DONE was written (a batch without any still needs one).
    any_done: bool,
    /// The current statement sent COLMETADATA (its DONE says SELECT).
    statement_has_columns: bool,
    /// `sp_prepare` got its COLMETADATA and stopped the backend.
    described: bool,
    /// The current row's short values, encoded back to back (reused from row to row).
    inline: Vec<u8>,
    io_error: Option<io::Error>,
}

impl WireSink<'_, '_> {
    fn io(&mut self, result: io::Result<()>) -> Result<(), Interrupt> {
        result.map_err(|e| {
            self.io_error = Some(e);
            Interrupt::Disconnected
        })
    }

    /// ATTENTION is noticed between response packets; the result stops at a row boundary.
    fn check_attention(&mut self) -> Result<(), Interrupt> {
        if self.out.link().attention {
            Err(Interrupt::Attention)
        } else {
            Ok(())
        }
    }

    fn flush_pending(&mut self, more: bool) -> io::Result<()> {
        if let Some((rows, had_columns)) = self.pending_done.take() {
            self.any_done = true;
            let token = if self.frame != Frame::Batch {
                DONEINPROC
            } else {
                DONE
            };
            let mut status = if more {
                done_status::MORE
            } else {
                done_status::FINAL
            };
            if rows.is_some() {
                status |= done_status::COUNT;
            }
            let cmd = if had_columns { CMD_SELECT } else { 0 };
            tokens::done(&mut self.out, token, status, cmd, rows.unwrap_or(0))?;
        }
        Ok(())
    }

    fn stall(&self, duration: Duration) {
        let until = Instant::now() + duration;
        while Instant::now() < until && !self.shared.stopping() {
            std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
        }
    }
}

impl ResultSink for WireSink<'_, '_> {
    fn columns(&mut self, columns: &[ColumnMeta]) -> Result<(), Interrupt> {
        self.check_attention()?;
        for (i, column) in columns.iter().enumerate() {
            types::check_type(&column.ty).map_err(|why| {
                ServerError::new(
                    50000,
                    1,
                    16,
                    format!("test server: column {} ({}): {why}", i + 1, column.name),
                )
            })?;
        }
        let flushed = self.flush_pending(true);
        self.io(flushed)?;
        let written = tokens::colmetadata(&mut self.out, columns);
        self.io(written)?;
        self.columns = columns.to_vec();
        self.rows_sent = 0;
        self.statement_has_columns = true;
        if self.frame == Frame::Describe {
            // No rows: the backend is stopped here, and run() ends the response normally.
            self.described = true;
            return Err(Interrupt::Attention);
        }
        Ok(())
    }

    fn row(&mut self, values: &[Value]) -> Result<(), Interrupt> {
        self.check_attention()?;
        if values.len() != self.columns.len() {
            return Err(Interrupt::Error(ServerError::new(
                50000,
                1,
                16,
                format!(
                    "test server: a row of {} values for {} columns",
                    values.len(),
                    self.columns.len()
                ),
            )));
        }
        let mut bad_column = None;
        match self.shared.take_row_fault(self.sql, self.rows_sent) {
            None => {}
            Some(RowFault::Error(error)) => return Err(Interrupt::Error(error)),
            Some(RowFault::Cut) => {
                self.out.link().shutdown();
                return Err(Interrupt::Disconnected);
            }
            Some(RowFault::Stall(duration)) => self.stall(duration),
            Some(RowFault::BadValue(column)) => bad_column = Some(column),
        }
        let mut inline = std::mem::take(&mut self.inline);
        inline.clear();
        let mut encoded = Vec::with_capacity(values.len());
        for (i, (column, value)) in self.columns.iter().zip(values).enumerate() {
            let e = if bad_column == Some(i) {
                types::bad_value(&column.ty).map(|bytes| {
                    inline.extend(bytes);
                    types::Encoded::Inline
                })
            } else {
                types::encode(&column.ty, value, &mut inline)
            };
            match e {
                Ok(e) => encoded.push((inline.len(), e)),
                Err(why) => {
                    self.inline = inline;
                    return Err(Interrupt::Error(ServerError::new(
                        50000,
                        1,
                        16,
                        format!("test server: column {} ({}): {why}", i + 1, column.name),
                    )));
                }
            }
        }
        let written = tokens::row(&mut self.out, &inline, &encoded);
        drop(encoded);
        self.inline = inline;
        self.io(written)?;
        self.rows_sent += 1;
        Ok(())
    }

    fn done(&mut self, rows: Option<u64>) -> Result<(), Interrupt> {
        let flushed = self.flush_pending(true);
        self.io(flushed)?;
        self.pending_done = Some((rows, std::mem::take(&mut self.statement_has_columns)));
        Ok(())
    }
}
