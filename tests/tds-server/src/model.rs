//! The interface between the wire ([`crate::wire`]) and the database behind it
//! ([`crate::backend`]): SQL Server types, values, parameters, errors and a streaming sink for
//! result sets.

use std::fmt;

/// A character collation as TDS carries it (COLLATION rule, [MS-TDS] 2.2.5.1.2), by name.
/// Only the names the wire knows how to encode are valid: `SQL_Latin1_General_CP1_CI_AS`
/// (code page 1252, the default), `Latin1_General_100_CI_AS_SC_UTF8` (UTF-8),
/// `Latin1_General_BIN2`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Collation(pub String);

impl Collation {
    pub const DEFAULT: &'static str = "SQL_Latin1_General_CP1_CI_AS";

    pub fn default_collation() -> Collation {
        Collation(Self::DEFAULT.to_owned())
    }
}

/// A SQL Server data type, as in COLMETADATA and in RPC parameters. Lengths of character types
/// are in characters; `None` means `(max)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlType {
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Bit,
    /// `decimal` and `numeric` (the same on the wire).
    Decimal { precision: u8, scale: u8 },
    Money,
    SmallMoney,
    /// `float` (8 bytes).
    Float,
    /// `real` (4 bytes).
    Real,
    Date,
    Time { scale: u8 },
    DateTime,
    SmallDateTime,
    DateTime2 { scale: u8 },
    DateTimeOffset { scale: u8 },
    Char { length: u16, collation: Collation },
    VarChar { length: Option<u16>, collation: Collation },
    NChar { length: u16 },
    NVarChar { length: Option<u16> },
    Text { collation: Collation },
    NText,
    Image,
    Binary { length: u16 },
    VarBinary { length: Option<u16> },
    UniqueIdentifier,
    Xml,
    SqlVariant,
    /// `rowversion` / `timestamp`: binary(8) on the wire.
    RowVersion,
}

/// A value in its canonical form. The wire encodes it according to the column's or parameter's
/// [`SqlType`] and decodes RPC parameters into the same forms:
///
/// | type | form |
/// |---|---|
/// | integer types, bit | `Int` (bit: 0 or 1) |
/// | float, real | `Float` |
/// | decimal, numeric, money, smallmoney | `Text`, exact: `-123.4500` (no exponent) |
/// | date | `Text` `YYYY-MM-DD` |
/// | time | `Text` `hh:mm:ss[.fffffff]` |
/// | datetime, smalldatetime, datetime2 | `Text` `YYYY-MM-DD hh:mm:ss[.fffffff]` |
/// | datetimeoffset | `Text` `YYYY-MM-DD hh:mm:ss[.fffffff] +hh:mm` |
/// | char, varchar, nchar, nvarchar, text, ntext, xml | `Text` (UTF-8 here; the wire converts) |
/// | uniqueidentifier | `Text` `6F9619FF-8B86-D011-B42D-00C04FC964FF` (upper case) |
/// | binary, varbinary, image, rowversion | `Bytes` |
/// | sql_variant | `Variant` (base type and value) or `Null` |
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    Variant(Box<SqlType>, Box<Value>),
}

/// A result column: name and type (COLMETADATA).
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMeta {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
}

/// A parameter of an RPC request (`sp_executesql`, `sp_prepexec`, `sp_execute`), decoded.
/// `name` is as sent (`@P1`), the type as the client declared it on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub ty: SqlType,
    pub value: Value,
}

/// An error as SQL Server reports it (ERROR token, [MS-TDS] 2.2.7.10): number, state, class
/// (severity) and message, e.g. 1205 / 51 / 13 for a deadlock victim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub number: i32,
    pub state: u8,
    pub class: u8,
    pub message: String,
}

impl ServerError {
    pub fn new(number: i32, state: u8, class: u8, message: impl Into<String>) -> ServerError {
        ServerError {
            number,
            state,
            class,
            message: message.into(),
        }
    }

    /// Msg 208: what SQL Server says for an unknown table.
    pub fn invalid_object(name: &str) -> ServerError {
        ServerError::new(208, 1, 16, format!("Invalid object name '{name}'."))
    }

    /// Msg 207: an unknown column.
    pub fn invalid_column(name: &str) -> ServerError {
        ServerError::new(207, 1, 16, format!("Invalid column name '{name}'."))
    }

    /// Msg 102: a statement the test server cannot translate.
    pub fn syntax(detail: impl fmt::Display) -> ServerError {
        ServerError::new(102, 1, 15, format!("Incorrect syntax: {detail}"))
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Msg {}, Level {}, State {}: {}",
            self.number, self.class, self.state, self.message
        )
    }
}

/// Why a result stream stopped early, as the wire's sink reports it to the backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Interrupt {
    /// Send this error to the client and end the statement (DONE with the error bit).
    Error(ServerError),
    /// The client sent ATTENTION: stop, the wire answers with DONE_ATTN.
    Attention,
    /// The link is gone (client closed it, or a fault cut it): stop silently.
    Disconnected,
}

impl From<ServerError> for Interrupt {
    fn from(error: ServerError) -> Interrupt {
        Interrupt::Error(error)
    }
}

/// Where the backend streams a statement's results; the wire implements it (COLMETADATA,
/// ROW/NBCROW, DONE tokens). Rows are sent as they come: a 10M-row result never sits in memory.
pub trait ResultSink {
    /// Starts a result set with these columns.
    fn columns(&mut self, columns: &[ColumnMeta]) -> Result<(), Interrupt>;
    /// One row of the current result set, one value per column.
    fn row(&mut self, values: &[Value]) -> Result<(), Interrupt>;
    /// Ends the current statement: `rows` is the row count reported in DONE (rows returned or
    /// affected), `None` for statements without one (SET, DDL).
    fn done(&mut self, rows: Option<u64>) -> Result<(), Interrupt>;
}

/// One client connection's view of the database. A batch may hold several statements, each
/// ended with [`ResultSink::done`]; an error ends the request.
pub trait Backend: Send {
    /// Runs a SQL batch (no parameters) or the statement of an RPC with its parameters.
    fn execute(
        &mut self,
        sql: &str,
        params: &[Param],
        sink: &mut dyn ResultSink,
    ) -> Result<(), Interrupt>;
}

/// Opens a backend for each login (LOGIN7's database name; an unknown one is Msg 4060).
pub trait BackendFactory: Send + Sync {
    fn open(&self, database: &str) -> Result<Box<dyn Backend>, ServerError>;
}
