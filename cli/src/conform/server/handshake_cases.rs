//! The handshake's cases (spec §5, and the limits before it completes).

use bytes::Bytes;
use rigwire_std::core::auth::proof;
use rigwire_std::core::{Codec, Message, RejectCode, Role};

use super::*;

pub(super) fn hello_first(t: &Target) -> Checked {
    let (_, hello, _) = open(t)?;
    check_hello(&hello, t.secret.as_ref())
}

pub(super) fn handshake(t: &Target) -> Checked {
    establish(t)?.alive(1, "a live connection")
}

/// Opens and sends `hello` in place of ours.
pub(super) fn open_with(t: &Target, edit: impl FnOnce(&mut Hello)) -> Result<Wire, Mismatch> {
    let (mut wire, _, _) = open(t)?;
    let mut hello = our_hello(t.secret.is_some());
    edit(&mut hello);
    send(&mut wire, &Message::Hello(hello))?;
    Ok(wire)
}

pub(super) fn version_mismatch(t: &Target) -> Checked {
    let mut wire = open_with(t, |h| {
        h.min_version = 2;
        h.max_version = 3;
    })?;
    rejects(&mut wire, RejectCode::VersionMismatch)
}

pub(super) fn wrong_magic(t: &Target) -> Checked {
    let mut wire = open_with(t, |h| h.magic = *b"XXXX")?;
    rejects(&mut wire, RejectCode::Protocol)
}

pub(super) fn long_name(t: &Target) -> Checked {
    let mut wire = open_with(t, |h| h.name = "n".repeat(256))?;
    rejects(&mut wire, RejectCode::Protocol)
}

pub(super) fn small_limits(t: &Target) -> Checked {
    let mut wire = open_with(t, |h| h.max_frame = 1024)?;
    rejects(&mut wire, RejectCode::Protocol)
}

pub(super) fn wrong_secret(t: &Target) -> Checked {
    if t.secret.is_none() {
        return Err(skip("needs --secret-file"));
    }
    let (mut wire, _, _) = open(t)?;
    send(&mut wire, &Message::Hello(our_hello(true)))?;
    send(&mut wire, &Message::Auth { proof: [0x5a; 32] })?;
    let got = wire.next(PROMPT);
    if matches!(got.message(), Some(Message::Auth { .. })) {
        return Err(fail(
            "Reject{AuthFailed} and no proof from the server",
            "the server's Auth before our proof verified",
        ));
    }
    match got.message() {
        Some(Message::Reject {
            code: RejectCode::AuthFailed,
            ..
        }) => wire
            .expect_close(PROMPT)
            .map_err(|g| fail("the connection closed after the Reject", g.describe())),
        _ => Err(fail("Reject{AuthFailed}", got.describe())),
    }
}

pub(super) fn secret_on_one_side(t: &Target) -> Checked {
    // Claim the opposite of what the server holds.
    let mut wire = open_with(t, |h| h.secret_required = t.secret.is_none())?;
    rejects(&mut wire, RejectCode::AuthRequired)
}

pub(super) fn call_before_handshake(t: &Target) -> Checked {
    let (mut wire, _, _) = open(t)?;
    send(
        &mut wire,
        &Message::Call {
            id: 1,
            method: t.method("add"),
            deadline_us: None,
            codec: Codec::Json,
            args: Bytes::from_static(b"[1,2]"),
        },
    )?;
    rejects(&mut wire, RejectCode::Protocol)
}

pub(super) fn oversized_before_handshake(t: &Target) -> Checked {
    let (mut wire, _, _) = open(t)?;
    // Only the length prefix (on websocket, the whole message): the server
    // must decide from the prefix, before any body byte is buffered.
    wire.send_oversized(5000, 0)
        .map_err(|e| fail("to send", e.to_string()))?;
    rejects(&mut wire, RejectCode::Protocol)
}

pub(super) fn pipelined_call(t: &Target) -> Checked {
    let (mut wire, _, server_body) = open(t)?;
    let ours = Message::Hello(our_hello(t.secret.is_some()));
    let mut frames = vec![ours.encode()];
    if let Some(secret) = &t.secret {
        let mine = proof(secret, Role::Client, &frames[0], &server_body);
        frames.push(Message::Auth { proof: mine }.encode());
    }
    frames.push(
        Message::Call {
            id: 1,
            method: t.method("add"),
            deadline_us: None,
            codec: Codec::Json,
            args: Bytes::from_static(b"[1,2]"),
        }
        .encode(),
    );
    wire.send_bodies(&frames)
        .map_err(|e| fail("to send", e.to_string()))?;
    loop {
        let got = wire.next(PROMPT);
        match got.message() {
            // The server's proof comes first with a secret.
            Some(Message::Auth { .. }) if t.secret.is_some() => {}
            Some(Message::Reply { id: 1, .. }) => return Ok(()),
            _ => return Err(fail("Reply{id 1}", got.describe())),
        }
    }
}

pub(super) fn graceful_close(t: &Target) -> Checked {
    let mut wire = open_with(t, |h| h.magic = *b"XXXX")?;
    // Go on sending while the server refuses and closes: it must read (and
    // drop) what comes until we end our side, within its 1 s linger.
    let until = std::time::Instant::now() + std::time::Duration::from_millis(300);
    while std::time::Instant::now() < until {
        if let Err(e) = wire.send_body(&[0x42; 1024]) {
            return Err(fail(
                "no reset while we still send, within 1 s (§6.7)",
                format!("a reset: {e}"),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    rejects(&mut wire, RejectCode::Protocol)
}
