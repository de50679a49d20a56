//! Response tokens ([MS-TDS] 2.2.7 Packet Data Token Stream Definition).

use std::io;

use super::packet::Out;
use super::types::{self, Encoded, USER_TYPE_TIMESTAMP};
use crate::model::{ColumnMeta, ServerError, SqlType};

// [MS-TDS] 2.2.4.2 token types.
const COLMETADATA: u8 = 0x81;
const ROW: u8 = 0xD1;
pub(crate) const DONE: u8 = 0xFD;
pub(crate) const DONEPROC: u8 = 0xFE;
pub(crate) const DONEINPROC: u8 = 0xFF;
const ERROR: u8 = 0xAA;
const INFO: u8 = 0xAB;
const LOGINACK: u8 = 0xAD;
const FEATUREEXTACK: u8 = 0xAE;
const ENVCHANGE: u8 = 0xE3;
const RETURNSTATUS: u8 = 0x79;
const RETURNVALUE: u8 = 0xAC;

/// DONE Status bits ([MS-TDS] 2.2.7.6).
pub(crate) mod done_status {
    pub(crate) const FINAL: u16 = 0x00;
    pub(crate) const MORE: u16 = 0x01;
    pub(crate) const ERROR: u16 = 0x02;
    pub(crate) const COUNT: u16 = 0x10;
    pub(crate) const ATTN: u16 = 0x20;
}

/// DONE CurCmd of a SELECT.
pub(crate) const CMD_SELECT: u16 = 0xC1;

/// ENVCHANGE types ([MS-TDS] 2.2.7.9).
pub(crate) mod env {
    pub(crate) const DATABASE: u8 = 1;
    pub(crate) const LANGUAGE: u8 = 2;
    pub(crate) const PACKET_SIZE: u8 = 4;
    pub(crate) const COLLATION: u8 = 7;
}

/// B_VARCHAR: one-byte character count (names over 255 UTF-16 units are cut).
fn b_varchar(s: &str) -> Vec<u8> {
    let units: Vec<u16> = s.encode_utf16().take(255).collect();
    let mut b = vec![units.len() as u8];
    b.extend(units.iter().flat_map(|u| u.to_le_bytes()));
    b
}

fn us_varchar(s: &str) -> Vec<u8> {
    let units: Vec<u16> = s.encode_utf16().take(usize::from(u16::MAX)).collect();
    let mut b = (units.len() as u16).to_le_bytes().to_vec();
    b.extend(units.iter().flat_map(|u| u.to_le_bytes()));
    b
}

/// A token whose body starts with a USHORT length.
fn with_length(out: &mut Out<'_>, token: u8, body: &[u8]) -> io::Result<()> {
    out.u8(token)?;
    out.u16(u16::try_from(body.len()).map_err(io::Error::other)?)?;
    out.put(body)
}

/// ERROR ([MS-TDS] 2.2.7.10) and INFO (2.2.7.13) share their layout.
fn message(out: &mut Out<'_>, token: u8, e: &ServerError, server: &str) -> io::Result<()> {
    let mut body = e.number.to_le_bytes().to_vec();
    body.push(e.state);
    body.push(e.class);
    body.extend(us_varchar(&e.message));
    body.extend(b_varchar(server));
    body.extend(b_varchar("")); // ProcName
    body.extend(1i32.to_le_bytes()); // LineNumber
    with_length(out, token, &body)
}

pub(crate) fn error(out: &mut Out<'_>, e: &ServerError, server: &str) -> io::Result<()> {
    message(out, ERROR, e, server)
}

pub(crate) fn info(out: &mut Out<'_>, e: &ServerError, server: &str) -> io::Result<()> {
    message(out, INFO, e, server)
}

pub(crate) fn envchange(out: &mut Out<'_>, ty: u8, new: &str, old: &str) -> io::Result<()> {
    let mut body = vec![ty];
    body.extend(b_varchar(new));
    body.extend(b_varchar(old));
    with_length(out, ENVCHANGE, &body)
}

/// ENVCHANGE with B_VARBYTE values (collation, transaction descriptors).
pub(crate) fn envchange_bytes(out: &mut Out<'_>, ty: u8, new: &[u8], old: &[u8]) -> io::Result<()> {
    let mut body = vec![ty, new.len() as u8];
    body.extend(new);
    body.push(old.len() as u8);
    body.extend(old);
    with_length(out, ENVCHANGE, &body)
}

/// ENVCHANGE SQL collation: new value as B_VARBYTE, old value empty.
pub(crate) fn envchange_collation(out: &mut Out<'_>, collation: [u8; 5]) -> io::Result<()> {
    envchange_bytes(out, env::COLLATION, &collation, &[])
}

/// LOGINACK ([MS-TDS] 2.2.7.14): SQL_TSQL, TDS 7.4, "Microsoft SQL Server" 16.0.4135.
pub(crate) fn loginack(out: &mut Out<'_>) -> io::Result<()> {
    let mut body = vec![1];
    body.extend(0x7400_0004u32.to_be_bytes());
    body.extend(b_varchar("Microsoft SQL Server"));
    body.extend([16, 0]);
    body.extend(4135u16.to_be_bytes());
    with_length(out, LOGINACK, &body)
}

/// FEATUREEXTACK ([MS-TDS] 2.2.7.11): the features acknowledged, then the terminator.
pub(crate) fn featureextack(out: &mut Out<'_>, acks: &[(u8, Vec<u8>)]) -> io::Result<()> {
    out.u8(FEATUREEXTACK)?;
    for (id, data) in acks {
        out.u8(*id)?;
        out.u32(data.len() as u32)?;
        out.put(data)?;
    }
    out.u8(0xFF)
}

pub(crate) fn done(
    out: &mut Out<'_>,
    token: u8,
    status: u16,
    cur_cmd: u16,
    rows: u64,
) -> io::Result<()> {
    out.u8(token)?;
    out.u16(status)?;
    out.u16(cur_cmd)?;
    out.u64(rows)
}

/// COLMETADATA ([MS-TDS] 2.2.7.4): per column UserType, Flags, TYPE_INFO, ColName.
pub(crate) fn colmetadata(out: &mut Out<'_>, columns: &[ColumnMeta]) -> io::Result<()> {
    out.u8(COLMETADATA)?;
    out.u16(u16::try_from(columns.len()).map_err(io::Error::other)?)?;
    for column in columns {
        let user_type = if column.ty == SqlType::RowVersion {
            USER_TYPE_TIMESTAMP
        } else {
            0
        };
        out.u32(user_type)?;
        out.u16(u16::from(column.nullable))?; // fNullable; read-only
        types::write_type_info(out, &column.ty)?;
        out.put(&b_varchar(&column.name))?;
    }
    Ok(())
}

/// ROW ([MS-TDS] 2.2.7.19): the values in column order. `inline` holds the short values back
/// to back; `values` says for each column whether its bytes are there (and where they end) or
/// it is long and streams now.
pub(crate) fn row(
    out: &mut Out<'_>,
    inline: &[u8],
    values: &[(usize, Encoded<'_>)],
) -> io::Result<()> {
    out.u8(ROW)?;
    let mut start = 0;
    for (end, value) in values {
        match value {
            Encoded::Inline => {}
            long => {
                out.put(&inline[start..*end])?;
                start = *end;
                types::write_long(out, long)?;
            }
        }
    }
    out.put(&inline[start..])
}

pub(crate) fn returnstatus(out: &mut Out<'_>, status: i32) -> io::Result<()> {
    out.u8(RETURNSTATUS)?;
    out.put(&status.to_le_bytes())
}

/// RETURNVALUE ([MS-TDS] 2.2.7.18) of an `int` output parameter, e.g. a prepared handle.
pub(crate) fn returnvalue_int(
    out: &mut Out<'_>,
    ordinal: u16,
    name: &str,
    value: i32,
) -> io::Result<()> {
    out.u8(RETURNVALUE)?;
    out.u16(ordinal)?;
    out.put(&b_varchar(name))?;
    out.u8(0x01)?; // output parameter
    out.u32(0)?; // UserType
    out.u16(1)?; // Flags: nullable
    out.put(&[0x26, 4, 4])?; // INTN(4), then the value's length
    out.put(&value.to_le_bytes())
}
