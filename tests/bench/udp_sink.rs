//! The benchmark's Jaeger agent stand-in: receives `emitBatch` datagrams on a loopback UDP
//! port, decodes each with thrift_codec's generic compact decoder and counts datagrams,
//! bytes and spans. A datagram `STOP` makes it print `datagrams=N bytes=N spans=N
//! undecodable=N` and exit. Usage: `udp-sink PORT`.

use std::net::UdpSocket;
use thrift_codec::CompactDecode;
use thrift_codec::data::{Data, Elements};
use thrift_codec::message::Message;

/// Spans in one datagram, or `None` if it is not an `emitBatch` message.
fn spans_in(datagram: &[u8]) -> Option<usize> {
    let message = Message::compact_decode(&mut &datagram[..]).ok()?;
    let batch = message.body().fields().iter().find(|f| f.id() == 1)?;
    let Data::Struct(batch) = batch.data() else {
        return None;
    };
    match batch
        .fields()
        .iter()
        .find(|f| f.id() == 2)
        .map(|f| f.data())
    {
        Some(Data::List(list)) => match &**list {
            Elements::Struct(spans) => Some(spans.len()),
            _ => None,
        },
        _ => Some(0),
    }
}

fn main() {
    let port = std::env::args().nth(1).unwrap_or_else(|| "6831".into());
    let socket = UdpSocket::bind(("127.0.0.1", port.parse::<u16>().expect("port"))).expect("bind");
    let (mut datagrams, mut bytes, mut spans, mut undecodable) = (0u64, 0u64, 0u64, 0u64);
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = socket.recv(&mut buf).expect("recv");
        if &buf[..n] == b"STOP" {
            break;
        }
        datagrams += 1;
        bytes += n as u64;
        match spans_in(&buf[..n]) {
            Some(s) => spans += s as u64,
            None => undecodable += 1,
        }
    }
    println!("datagrams={datagrams} bytes={bytes} spans={spans} undecodable={undecodable}");
}
