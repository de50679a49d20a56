//! A cursor over a received message (LOGIN7, SQL batch, RPC), little-endian as TDS is.

use std::fmt;

/// A message the server cannot read: malformed or of a kind it does not support.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError(String);

impl DecodeError {
    pub(crate) fn new(message: impl Into<String>) -> DecodeError {
        DecodeError(message.into())
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::new(format!(
                "message ends early: {n} bytes wanted at offset {}, {} left",
                self.pos,
                self.remaining()
            )));
        }
        let b = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// `chars` UTF-16LE code units as a string.
    pub(crate) fn utf16(&mut self, chars: usize) -> Result<String, DecodeError> {
        utf16_string(self.bytes(chars * 2)?)
    }

    /// B_VARCHAR: a one-byte character count, then UTF-16LE.
    pub(crate) fn b_varchar(&mut self) -> Result<String, DecodeError> {
        let n = self.u8()?;
        self.utf16(usize::from(n))
    }

    /// US_VARCHAR: a two-byte character count, then UTF-16LE.
    pub(crate) fn us_varchar(&mut self) -> Result<String, DecodeError> {
        let n = self.u16()?;
        self.utf16(usize::from(n))
    }

    /// A PLP value ([MS-TDS] 2.2.5.2.3): `None` for PLP_NULL, else its chunks joined.
    pub(crate) fn plp(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        let total = self.u64()?;
        if total == u64::MAX {
            return Ok(None);
        }
        let mut data = Vec::new();
        loop {
            let chunk = self.u32()? as usize;
            if chunk == 0 {
                return Ok(Some(data));
            }
            data.extend_from_slice(self.bytes(chunk)?);
        }
    }
}

pub(crate) fn utf16_string(bytes: &[u8]) -> Result<String, DecodeError> {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).map_err(|_| DecodeError::new("text is not valid UTF-16"))
}
