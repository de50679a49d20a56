//! TDS packets ([MS-TDS] 2.2.3 Packets) over the connection, plain or inside TLS: reading
//! whole messages, writing a response packet by packet as it is produced, and noticing an
//! ATTENTION the client sends while a response streams.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

/// [MS-TDS] 2.2.3.1.1 Type.
pub(crate) mod packet_type {
    pub(crate) const SQL_BATCH: u8 = 0x01;
    pub(crate) const RPC: u8 = 0x03;
    pub(crate) const TABULAR_RESULT: u8 = 0x04;
    pub(crate) const ATTENTION: u8 = 0x06;
    pub(crate) const TRANSACTION_MANAGER: u8 = 0x0E;
    pub(crate) const LOGIN7: u8 = 0x10;
    pub(crate) const PRELOGIN: u8 = 0x12;
}

/// [MS-TDS] 2.2.3.1.2 Status: end of message.
const STATUS_EOM: u8 = 0x01;
const HEADER_LEN: usize = 8;
/// The packet size before LOGIN7 negotiates one ([MS-TDS] 2.2.6.4: 4096 by default).
pub(crate) const DEFAULT_PACKET_SIZE: usize = 4096;

/// A message: the packet type and the payloads of its packets joined.
pub(crate) struct Message {
    pub(crate) packet_type: u8,
    pub(crate) payload: Vec<u8>,
}

/// One client connection's transport.
pub(crate) struct Link {
    tcp: TcpStream,
    tls: Option<Box<ServerConnection>>,
    /// Plaintext received and not yet consumed as packets.
    inbound: Vec<u8>,
    pub(crate) packet_size: usize,
    /// The client sent ATTENTION while a response was being written.
    pub(crate) attention: bool,
    spid: u16,
}

impl Link {
    pub(crate) fn new(tcp: TcpStream, spid: u16) -> Link {
        Link {
            tcp,
            tls: None,
            inbound: Vec::new(),
            packet_size: DEFAULT_PACKET_SIZE,
            attention: false,
            spid,
        }
    }

    /// The TLS handshake as TDS 7.x does it ([MS-TDS] 3.3.5.3, 3.2.5.2): every TLS record of the
    /// handshake travels in PRELOGIN packets; afterwards TLS runs directly on TCP.
    pub(crate) fn start_tls(&mut self, config: Arc<ServerConfig>) -> io::Result<()> {
        let mut conn = ServerConnection::new(config).map_err(io::Error::other)?;
        conn.set_buffer_limit(None);
        while conn.is_handshaking() {
            if conn.wants_write() {
                self.send_tls_records(&mut conn)?;
                continue;
            }
            let packet = self.read_packet()?;
            if packet.packet_type != packet_type::PRELOGIN {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "expected a PRELOGIN packet with TLS records, got type 0x{:02X}",
                        packet.packet_type
                    ),
                ));
            }
            let mut records = packet.payload.as_slice();
            while !records.is_empty() {
                conn.read_tls(&mut records)?;
                if let Err(error) = conn.process_new_packets() {
                    // Send the alert, so that the client says why.
                    let _ = self.send_tls_records(&mut conn);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, error));
                }
            }
        }
        if conn.wants_write() {
            self.send_tls_records(&mut conn)?;
        }
        self.tls = Some(Box::new(conn));
        Ok(())
    }

    /// Whether the client starts with a TLS record (TDS 8 strict encryption) instead of a
    /// PRELOGIN packet.
    pub(crate) fn starts_with_tls(&self) -> io::Result<bool> {
        let mut first = [0u8; 1];
        let n = self.tcp.peek(&mut first)?;
        // 0x16: a TLS handshake record; a TDS packet starts with its type (0x12 PRELOGIN).
        Ok(n == 1 && first[0] == 0x16)
    }

    /// TDS 8 strict encryption ([MS-TDS] 3.3.5.1): TLS directly on TCP before any TDS packet.
    pub(crate) fn start_strict_tls(&mut self, config: Arc<ServerConfig>) -> io::Result<()> {
        let mut conn = ServerConnection::new(config).map_err(io::Error::other)?;
        conn.set_buffer_limit(None);
        while conn.is_handshaking() {
            if conn.wants_write() {
                conn.write_tls(&mut self.tcp)?;
                continue;
            }
            if conn.read_tls(&mut self.tcp)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            conn.process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        while conn.wants_write() {
            conn.write_tls(&mut self.tcp)?;
        }
        self.tls = Some(Box::new(conn));
        Ok(())
    }

    fn send_tls_records(&mut self, conn: &mut ServerConnection) -> io::Result<()> {
        let mut records = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut records)?;
        }
        let mut out = Out::new(self, packet_type::PRELOGIN);
        out.put(&records)?;
        out.finish()
    }

    /// Login-only encryption ([MS-TDS] 2.2.6.5, both sides ENCRYPT_OFF): after LOGIN7 the
    /// connection goes on in plaintext.
    pub(crate) fn stop_tls(&mut self) {
        self.tls = None;
    }

    pub(crate) fn shutdown(&self) {
        let _ = self.tcp.shutdown(Shutdown::Both);
    }

    /// Reads whole packets until one carries end of message.
    pub(crate) fn read_message(&mut self) -> io::Result<Message> {
        let first = self.read_packet()?;
        let mut message = Message {
            packet_type: first.packet_type,
            payload: first.payload,
        };
        let mut status = first.status;
        while status & STATUS_EOM == 0 {
            let next = self.read_packet()?;
            message.payload.extend_from_slice(&next.payload);
            status = next.status;
        }
        Ok(message)
    }

    fn read_packet(&mut self) -> io::Result<Packet> {
        while self.inbound.len() < HEADER_LEN {
            self.fill()?;
        }
        let len = packet_len(&self.inbound)?;
        while self.inbound.len() < len {
            self.fill()?;
        }
        let packet: Vec<u8> = self.inbound.drain(..len).collect();
        Ok(Packet {
            packet_type: packet[0],
            status: packet[1],
            payload: packet[HEADER_LEN..].to_vec(),
        })
    }

    /// Reads what the socket has (at least one byte, blocking) into `inbound`.
    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let Some(tls) = self.tls.as_mut() else {
            let n = self.tcp.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.inbound.extend_from_slice(&chunk[..n]);
            return Ok(());
        };
        loop {
            match tls.reader().read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    self.inbound.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if tls.read_tls(&mut self.tcp)? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    tls.process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Between response packets: takes an ATTENTION packet the client has sent, without waiting.
    fn poll_attention(&mut self) -> io::Result<()> {
        self.tcp.set_nonblocking(true)?;
        let filled = self.fill();
        self.tcp.set_nonblocking(false)?;
        match filled {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => other?,
        }
        if self.inbound.len() >= HEADER_LEN && self.inbound[0] == packet_type::ATTENTION {
            let len = packet_len(&self.inbound)?;
            if self.inbound.len() >= len {
                self.inbound.drain(..len);
                self.attention = true;
            }
        }
        Ok(())
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.tls.as_mut() {
            None => self.tcp.write_all(bytes),
            Some(tls) => {
                tls.writer().write_all(bytes)?;
                while tls.wants_write() {
                    tls.write_tls(&mut self.tcp)?;
                }
                Ok(())
            }
        }
    }
}

struct Packet {
    packet_type: u8,
    status: u8,
    payload: Vec<u8>,
}

/// [MS-TDS] 2.2.3.1.3 Length: big-endian, header included.
fn packet_len(header: &[u8]) -> io::Result<usize> {
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if len < HEADER_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("packet length {len} is shorter than its header"),
        ));
    }
    Ok(len)
}

/// A response message written as it is produced: each full packet goes out at once, so a
/// result of any size needs one packet of memory.
pub(crate) struct Out<'l> {
    link: &'l mut Link,
    packet_type: u8,
    buf: Vec<u8>,
    packet_id: u8,
}

impl<'l> Out<'l> {
    pub(crate) fn new(link: &'l mut Link, packet_type: u8) -> Out<'l> {
        let mut buf = Vec::with_capacity(link.packet_size);
        buf.resize(HEADER_LEN, 0);
        Out {
            link,
            packet_type,
            buf,
            packet_id: 1,
        }
    }

    pub(crate) fn link(&mut self) -> &mut Link {
        self.link
    }

    pub(crate) fn put(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let room = self.link.packet_size - self.buf.len();
            if room == 0 {
                self.send_packet(0)?;
                continue;
            }
            let n = room.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, v: u8) -> io::Result<()> {
        self.put(&[v])
    }

    pub(crate) fn u16(&mut self, v: u16) -> io::Result<()> {
        self.put(&v.to_le_bytes())
    }

    pub(crate) fn u32(&mut self, v: u32) -> io::Result<()> {
        self.put(&v.to_le_bytes())
    }

    pub(crate) fn u64(&mut self, v: u64) -> io::Result<()> {
        self.put(&v.to_le_bytes())
    }

    /// Ends the message (the last packet carries EOM).
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.send_packet(STATUS_EOM)
    }

    fn send_packet(&mut self, status: u8) -> io::Result<()> {
        let len = self.buf.len() as u16;
        self.buf[0] = self.packet_type;
        self.buf[1] = status;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
        self.buf[4..6].copy_from_slice(&self.link.spid.to_be_bytes());
        self.buf[6] = self.packet_id;
        self.buf[7] = 0;
        self.link.send(&self.buf)?;
        self.packet_id = self.packet_id.wrapping_add(1);
        self.buf.truncate(HEADER_LEN);
        if status & STATUS_EOM == 0 && self.packet_type == packet_type::TABULAR_RESULT {
            self.link.poll_attention()?;
        }
        Ok(())
    }
}
