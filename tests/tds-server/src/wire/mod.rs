//! The TDS 7.4 wire: packets, PRELOGIN (with TLS), LOGIN7, SQL batches, RPC, tokens,
//! ATTENTION and faults on command. Built by the wire half; see the crate docs.
