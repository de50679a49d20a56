//! PRELOGIN ([MS-TDS] 2.2.6.5) with the encryption negotiation, and LOGIN7 ([MS-TDS] 2.2.6.4)
//! with the server's answer: LOGINACK and the environment, or a login error.

use std::io;

use super::packet::{Link, Out, packet_type};
use super::reader::{DecodeError, Reader, utf16_string};
use super::tokens::{self, done_status, env};
use super::types::default_collation_bytes;
use super::{LoginRecord, TlsMode};
use crate::model::ServerError;

// [MS-TDS] 2.2.6.5 PL_OPTION_TOKEN values.
const PL_VERSION: u8 = 0x00;
const PL_ENCRYPTION: u8 = 0x01;
const PL_INSTOPT: u8 = 0x02;
const PL_THREADID: u8 = 0x03;
const PL_MARS: u8 = 0x04;
const PL_TERMINATOR: u8 = 0xFF;

// B_FENCRYPTION values.
const ENCRYPT_OFF: u8 = 0x00;
const ENCRYPT_ON: u8 = 0x01;
const ENCRYPT_NOT_SUP: u8 = 0x02;
const ENCRYPT_REQ: u8 = 0x03;

/// What the encryption negotiation decided ([MS-TDS] 2.2.6.5, the ENCRYPTION table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encryption {
    None,
    /// Both sides said ENCRYPT_OFF: only the LOGIN7 packet travels inside TLS.
    LoginOnly,
    Full,
}

/// What the client's PRELOGIN said.
pub(crate) struct ClientPrelogin {
    pub(crate) encryption: u8,
    /// Option tokens in the order sent.
    pub(crate) options: Vec<u8>,
}

pub(crate) fn read_prelogin(payload: &[u8]) -> Result<ClientPrelogin, DecodeError> {
    let mut r = Reader::new(payload);
    let mut prelogin = ClientPrelogin {
        encryption: ENCRYPT_NOT_SUP,
        options: Vec::new(),
    };
    loop {
        let token = r.u8()?;
        if token == PL_TERMINATOR {
            return Ok(prelogin);
        }
        // PL_OFFSET and PL_OPTION_LENGTH are big-endian.
        let [o1, o2, l1, l2] = r.array::<4>()?;
        let (offset, len) = (
            usize::from(u16::from_be_bytes([o1, o2])),
            u16::from_be_bytes([l1, l2]),
        );
        prelogin.options.push(token);
        if token == PL_ENCRYPTION && len >= 1 {
            prelogin.encryption = *payload
                .get(offset)
                .ok_or_else(|| DecodeError::new("PRELOGIN ENCRYPTION offset is past the end"))?;
        }
    }
}

/// The server's side of the negotiation: the value it answers and what follows. `None` when
/// the server refuses the client (TLS required, client cannot encrypt).
pub(crate) fn negotiate(mode: TlsMode, client: u8) -> Option<(u8, Encryption)> {
    // The high bit asks for a client certificate; the level is in the low bits.
    let client = client & 0x0F;
    match (mode, client) {
        (TlsMode::Off, _) => Some((ENCRYPT_NOT_SUP, Encryption::None)),
        (_, ENCRYPT_NOT_SUP) if mode == TlsMode::Required => None,
        (_, ENCRYPT_NOT_SUP) => Some((ENCRYPT_NOT_SUP, Encryption::None)),
        (TlsMode::Optional, ENCRYPT_OFF) => Some((ENCRYPT_OFF, Encryption::LoginOnly)),
        (TlsMode::Optional, _) => Some((ENCRYPT_ON, Encryption::Full)),
        (TlsMode::Required, _) => Some((ENCRYPT_REQ, Encryption::Full)),
    }
}

/// The server's PRELOGIN: VERSION (SQL Server 16.0.4135), ENCRYPTION, INSTOPT, THREADID, MARS.
pub(crate) fn write_prelogin(link: &mut Link, encryption: u8) -> io::Result<()> {
    let options: [(u8, Vec<u8>); 5] = [
        (PL_VERSION, vec![16, 0, 0x10, 0x27, 0, 0]),
        (PL_ENCRYPTION, vec![encryption]),
        (PL_INSTOPT, vec![0]),
        (PL_THREADID, vec![]),
        (PL_MARS, vec![0]),
    ];
    let mut header: Vec<u8> = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    let mut offset = options.len() * 5 + 1;
    for (token, value) in &options {
        header.push(*token);
        header.extend((offset as u16).to_be_bytes());
        header.extend((value.len() as u16).to_be_bytes());
        data.extend(value);
        offset += value.len();
    }
    header.push(PL_TERMINATOR);
    header.extend(data);
    let mut out = Out::new(link, packet_type::TABULAR_RESULT);
    out.put(&header)?;
    out.finish()
}

/// A decoded LOGIN7.
pub(crate) struct Login7 {
    pub(crate) tds_version: u32,
    pub(crate) packet_size: u32,
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) app_name: String,
    pub(crate) server_name: String,
    pub(crate) library: String,
    pub(crate) language: String,
    pub(crate) database: String,
    /// FeatureIds of the FeatureExt block, in order.
    pub(crate) features: Vec<u8>,
    pub(crate) option_flags: [u8; 4],
}

/// [MS-TDS] 2.2.6.4 LOGIN7: a fixed part, then (offset, length) pairs into the variable part;
/// lengths count UTF-16 characters.
pub(crate) fn read_login7(payload: &[u8]) -> Result<Login7, DecodeError> {
    let mut r = Reader::new(payload);
    let _length = r.u32()?;
    let tds_version = r.u32()?;
    let packet_size = r.u32()?;
    let _client_prog_ver = r.u32()?;
    let _client_pid = r.u32()?;
    let _connection_id = r.u32()?;
    let option_flags: [u8; 4] = r.array()?;
    let _time_zone = r.u32()?;
    let _lcid = r.u32()?;
    let field = |r: &mut Reader<'_>| -> Result<(usize, usize), DecodeError> {
        Ok((usize::from(r.u16()?), usize::from(r.u16()?)))
    };
    let host = field(&mut r)?;
    let user = field(&mut r)?;
    let password = field(&mut r)?;
    let app = field(&mut r)?;
    let server = field(&mut r)?;
    let extension = field(&mut r)?;
    let library = field(&mut r)?;
    let language = field(&mut r)?;
    let database = field(&mut r)?;
    let text = |(offset, chars): (usize, usize)| -> Result<String, DecodeError> {
        let bytes = payload
            .get(offset..offset + chars * 2)
            .ok_or_else(|| DecodeError::new("LOGIN7 field is past the end"))?;
        utf16_string(bytes)
    };
    let _ = host;
    // OptionFlags3 fExtension: ibExtension points at a DWORD, the offset of FeatureExt.
    let mut features = Vec::new();
    if option_flags[3] & 0x10 != 0 && extension.1 >= 4 {
        let at = extension.0;
        let offset = payload
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| DecodeError::new("LOGIN7 ibExtension is past the end"))?;
        let mut f = Reader::new(
            payload
                .get(offset..)
                .ok_or_else(|| DecodeError::new("LOGIN7 FeatureExt is past the end"))?,
        );
        loop {
            let id = f.u8()?;
            if id == 0xFF {
                break;
            }
            let len = f.u32()? as usize;
            f.bytes(len)?;
            features.push(id);
        }
    }
    Ok(Login7 {
        tds_version,
        packet_size,
        user: text(user)?,
        password: deobfuscate(payload, password)?,
        app_name: text(app)?,
        server_name: text(server)?,
        library: text(library)?,
        language: text(language)?,
        database: text(database)?,
        features,
        option_flags,
    })
}

/// The password is sent with each byte's nibbles swapped and XORed with 0xA5
/// ([MS-TDS] 2.2.6.4, ibPassword): XOR again, then swap back.
fn deobfuscate(payload: &[u8], (offset, chars): (usize, usize)) -> Result<String, DecodeError> {
    let bytes = payload
        .get(offset..offset + chars * 2)
        .ok_or_else(|| DecodeError::new("LOGIN7 password is past the end"))?;
    let plain: Vec<u8> = bytes.iter().map(|b| (b ^ 0xA5).rotate_left(4)).collect();
    utf16_string(&plain)
}

impl Login7 {
    pub(crate) fn record(&self, prelogin: &ClientPrelogin) -> LoginRecord {
        LoginRecord {
            user: self.user.clone(),
            database: self.database.clone(),
            app_name: self.app_name.clone(),
            server_name: self.server_name.clone(),
            library: self.library.clone(),
            language: self.language.clone(),
            tds_version: self.tds_version,
            packet_size: self.packet_size,
            features: self.features.clone(),
            option_flags: self.option_flags,
            prelogin_options: prelogin.options.clone(),
            prelogin_encryption: prelogin.encryption,
        }
    }
}

/// Msg 18456, as SQL Server sends it (state 1: the real reason is only in the server's log).
pub(crate) fn login_failed(user: &str) -> ServerError {
    ServerError::new(18456, 1, 14, format!("Login failed for user '{user}'."))
}

/// Refuses a login: the errors, then DONE with the error bit. The caller closes the link.
pub(crate) fn refuse(link: &mut Link, errors: &[ServerError], server: &str) -> io::Result<()> {
    let mut out = Out::new(link, packet_type::TABULAR_RESULT);
    for e in errors {
        tokens::error(&mut out, e, server)?;
    }
    tokens::done(&mut out, tokens::DONE, done_status::ERROR, 0, 0)?;
    out.finish()
}

/// Accepts a login: the environment SQL Server reports, LOGINACK, FEATUREEXTACK when the
/// client sent features (none acknowledged: session recovery, Always Encrypted, UTF-8 and the
/// rest are then off for the client), DONE. Returns the packet size now in force.
pub(crate) fn accept(
    link: &mut Link,
    login: &Login7,
    database: &str,
    server: &str,
) -> io::Result<usize> {
    // Clients ask for 512..=32767 bytes; anything else gets the default.
    let packet_size = match login.packet_size {
        512..=32767 => login.packet_size as usize,
        _ => super::packet::DEFAULT_PACKET_SIZE,
    };
    let mut out = Out::new(link, packet_type::TABULAR_RESULT);
    tokens::envchange(&mut out, env::DATABASE, database, "master")?;
    let info = |number, state, message: String| ServerError::new(number, state, 0, message);
    tokens::info(
        &mut out,
        &info(
            5701,
            2,
            format!("Changed database context to '{database}'."),
        ),
        server,
    )?;
    tokens::envchange_collation(&mut out, default_collation_bytes())?;
    tokens::envchange(&mut out, env::LANGUAGE, "us_english", "")?;
    tokens::info(
        &mut out,
        &info(
            5703,
            1,
            "Changed language setting to us_english.".to_owned(),
        ),
        server,
    )?;
    tokens::loginack(&mut out)?;
    if !login.features.is_empty() {
        tokens::featureextack(&mut out, &[])?;
    }
    tokens::envchange(
        &mut out,
        env::PACKET_SIZE,
        &packet_size.to_string(),
        &super::packet::DEFAULT_PACKET_SIZE.to_string(),
    )?;
    tokens::done(&mut out, tokens::DONE, done_status::FINAL, 0, 0)?;
    out.finish()?;
    Ok(packet_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_obfuscation_is_undone() {
        // 'a' = 0x61 0x00 → swapped 0x16 0x00 → XOR 0xA5: 0xB3 0xA5.
        let payload = [0xB3, 0xA5];
        assert_eq!(deobfuscate(&payload, (0, 1)).expect("decodes"), "a");
    }

    #[test]
    fn negotiation_follows_the_encryption_table() {
        assert_eq!(
            negotiate(TlsMode::Off, ENCRYPT_ON),
            Some((ENCRYPT_NOT_SUP, Encryption::None))
        );
        assert_eq!(
            negotiate(TlsMode::Optional, ENCRYPT_OFF),
            Some((ENCRYPT_OFF, Encryption::LoginOnly))
        );
        assert_eq!(
            negotiate(TlsMode::Optional, ENCRYPT_ON),
            Some((ENCRYPT_ON, Encryption::Full))
        );
        assert_eq!(
            negotiate(TlsMode::Required, ENCRYPT_OFF),
            Some((ENCRYPT_REQ, Encryption::Full))
        );
        assert_eq!(negotiate(TlsMode::Required, ENCRYPT_NOT_SUP), None);
    }
}
