//! Websocket peers that misbehave on purpose: the upgrade and the rigwire
//! handshake over a raw loopback socket, then whatever the test sends.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rigwire_core::{Connection, Framing, ProtocolConfig};
use rigwire_ws::{Handshake, WsCodec};

use crate::raw;

/// As [`raw::flood_without_reading`], over a websocket to `url`
/// (`ws://host:port/path`).
pub fn ws_flood_without_reading(
    url: &str,
    config: ProtocolConfig,
    method: &str,
    len: usize,
    max_bytes: usize,
) -> Option<raw::Flood> {
    let (mut stream, mut codec) = try_ws_upgrade(url).ok()?;
    let mut conn = raw::flooder(config, Framing::Message);
    if try_ws_handshake(&mut stream, &mut codec, &mut conn).is_err() {
        return Some(raw::Flood { sent: 0, stream });
    }
    Some(raw::flood(
        stream,
        conn,
        |chunk| {
            codec.encode(chunk).unwrap();
            codec.take_output()
        },
        method,
        len,
        max_bytes,
    ))
}

/// Upgrades a new connection to `url` (`ws://host:port/path`) to a
/// websocket and returns the socket and its codec, with nothing else sent.
pub fn try_ws_upgrade(url: &str) -> Result<(TcpStream, WsCodec), String> {
    let addr = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| format!("not a ws:// URL: {url}"))?;
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| e.to_string())?;
    let mut upgrade = Handshake::client(url, 1 << 20)?;
    let mut input: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        if Instant::now() > until {
            return Err("the upgrade did not complete".into());
        }
        if let Some(codec) = upgrade.feed(&input)? {
            return Ok((stream, codec));
        }
        stream
            .write_all(&upgrade.take_output())
            .map_err(|e| e.to_string())?;
        input.clear();
        match stream.read(&mut buf) {
            Ok(0) => return Err("the server closed during the upgrade".into()),
            Ok(n) => input.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// As [`raw::try_handshake`], over an upgraded websocket (`conn` uses
/// [`Framing::Message`]).
pub fn try_ws_handshake(
    stream: &mut TcpStream,
    codec: &mut WsCodec,
    conn: &mut Connection,
) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 64 * 1024];
    let io = |e: std::io::Error| format!("handshake: {e}");
    loop {
        while let Some(frame) = conn.poll_transmit() {
            codec.encode(frame).map_err(io)?;
        }
        stream.write_all(&codec.take_output()).map_err(io)?;
        if conn.is_established() {
            codec.open_up();
            return Ok(());
        }
        if Instant::now() > until {
            return Err("handshake did not complete".into());
        }
        if conn.is_closed() {
            return Err(format!("handshake failed: {:?}", conn.error()));
        }
        match stream.read(&mut buf) {
            Ok(0) => return Err("the peer closed during the handshake".into()),
            Ok(n) => codec.push(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(io(e)),
        }
        while let Some(frame) = codec.next_frame().map_err(io)? {
            match frame {
                Some(frame) => conn.handle_frame(frame, Instant::now()),
                None => return Err("the peer closed the websocket".into()),
            }
        }
    }
}
