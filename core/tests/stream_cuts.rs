//! Calls arrive whole and in order however the byte stream is cut: small
//! frames read together are cut from one shared block, larger ones and the
//! ones split across reads go through the frame decoder, and the two meet at
//! every boundary.

// The sans-IO rule (core/clippy.toml) is for core/src; tests may read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use common::*;
use proptest::prelude::*;
use rigwire_core::{Codec, Event, Payload};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn calls_arrive_whole_however_the_stream_is_cut(
        sizes in prop::collection::vec(prop_oneof![0usize..64, 900usize..1100, 3000usize..5000], 1..40),
        cuts in prop::collection::vec(1usize..3000, 1..50),
    ) {
        let mut p = connected();
        let now = p.now;
        let sent: Vec<Payload> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Payload::new(Codec::Postcard, vec![i as u8; n]))
            .collect();
        for args in &sent {
            p.client.call("echo", args.clone(), None, now).unwrap();
        }
        let mut stream = Vec::new();
        while let Some(chunk) = p.client.poll_transmit() {
            stream.extend_from_slice(&chunk);
        }
        let mut rest = &stream[..];
        let mut cuts = cuts.into_iter().cycle();
        while !rest.is_empty() {
            let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            p.server.handle_input(chunk, now);
            rest = tail;
        }
        let got: Vec<Payload> = std::iter::from_fn(|| p.server.poll_event())
            .filter_map(|e| match e {
                Event::Call(call) => Some(call.args),
                _ => None,
            })
            .collect();
        prop_assert_eq!(got, sent);
        prop_assert_eq!(p.server.buffered_input(), 0);
        prop_assert!(!p.server.is_closed());
    }
}
