//! An iblutil TCP rig that many peers leave keeps no more than a bounded
//! memory of them: the reasons kept for departed peers (to tell a later send
//! why it failed) are capped, and their tasks are pruned.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rigwire_smol::core::ibl::IblError;
use rigwire_smol::{Error, IblMessage, IblPeer};
use serde_json::json;

#[test]
fn a_rig_remembers_a_bounded_number_of_departed_peers() {
    smol::block_on(async {
        let rig = IblPeer::bind("tcp://127.0.0.1:0")
            .await
            .unwrap()
            .with_echo_timeout(Duration::from_millis(20));
        let addr = rig.url().trim_start_matches("tcp://").to_owned();
        let mut departed = Vec::new();
        for _ in 0..100 {
            let mut peer = TcpStream::connect(&addr).unwrap();
            departed.push(peer.local_addr().unwrap());
            // One message, so the rig has surely seen it, then gone.
            peer.write_all(br#"[64, null, null]"#).unwrap();
            let until = Instant::now() + Duration::from_secs(5);
            while rig.default_peer() != departed.last().copied() {
                assert!(Instant::now() < until, "the rig never heard the peer");
                smol::Timer::after(Duration::from_millis(2)).await;
            }
            drop(peer);
        }
        smol::Timer::after(Duration::from_millis(200)).await;
        let mut remembered = 0;
        for to in departed {
            match rig
                .confirmed_send(Some(to), &IblMessage::status(json!(0)))
                .await
            {
                Err(Error::Ibl(IblError::Disconnected { .. })) => remembered += 1,
                Err(_) => {}
                Ok(()) => panic!("a send to a departed peer succeeded"),
            }
        }
        assert!(remembered > 0, "no departed peer is remembered at all");
        assert!(remembered <= 64, "{remembered} departed peers remembered");
        rig.close();
    });
}

/// A UDP client whose rig is not running learns it from the port's ICMP
/// "unreachable", at once, as a connected socket hears it (iblutil's client
/// is one too); it waited out the echo timeout as for a silent rig.
#[test]
fn a_udp_message_to_a_port_nobody_listens_on_fails_at_once_saying_so() {
    smol::block_on(async {
        // A port just freed: nothing listens there.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let peer = IblPeer::connect(&format!("udp://127.0.0.1:{port}"))
            .await
            .unwrap()
            .with_echo_timeout(Duration::from_secs(30));
        let asked = Instant::now();
        let err = peer
            .confirmed_send(None, &IblMessage::status(json!(null)))
            .await
            .unwrap_err();
        assert!(
            asked.elapsed() < Duration::from_secs(30),
            "waited out the echo timeout"
        );
        assert!(err.to_string().contains("nothing listens there"), "{err}");
        // A rig started there later is reached by the next send.
        let rig = IblPeer::bind(&format!("udp://127.0.0.1:{port}"))
            .await
            .unwrap();
        peer.confirmed_send(None, &IblMessage::status(json!(null)))
            .await
            .expect("the rig, up now, echoes");
        drop(rig);
    });
}
