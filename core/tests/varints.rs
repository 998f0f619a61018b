//! Spec §2: varints. Encoders write the shortest form; decoders accept a
//! longer (overlong) one within the type's byte maximum, and refuse one
//! that is longer still or whose value does not fit the type.

use bytes::Bytes;
use rigwire_core::{DecodeError, Message, RejectCode};

fn decode(hex: &str) -> Result<Message, DecodeError> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    Message::decode(&Bytes::from(bytes))
}

#[test]
fn overlong_varints_within_the_types_maximum_are_accepted() {
    // u64: 0 in 1, 2, 3 and 10 bytes.
    for hex in ["0900", "098000", "09808000", "0980808080808080808000"] {
        assert_eq!(decode(hex).unwrap(), Message::Ping { seq: 0 }, "{hex}");
    }
    // The message type itself is a varint: 9 written in two bytes.
    assert_eq!(decode("890000").unwrap(), Message::Ping { seq: 0 });
    // u64::MAX takes all 10 bytes.
    assert_eq!(
        decode("09ffffffffffffffffff01").unwrap(),
        Message::Ping { seq: u64::MAX }
    );
    // u32 (a reject code): 1 in two bytes; u32::MAX in five.
    assert_eq!(
        decode("02810000").unwrap(),
        Message::Reject {
            code: RejectCode::AuthFailed,
            reason: String::new()
        }
    );
    assert!(decode("02ffffffff0f00").is_ok());
}

#[test]
fn varints_past_the_types_maximum_or_range_are_refused() {
    for hex in [
        "09ffffffffffffffffff02", // u64: the 10th byte carries more than 1 bit
        "0980808080808080808080", // u64: 11 bytes
        "02ffffffff1f00",         // u32: the 5th byte carries more than 4 bits
        "0280808080800100",       // u32: 6 bytes
    ] {
        assert!(
            matches!(decode(hex), Err(DecodeError::Malformed(_))),
            "{hex}: {:?}",
            decode(hex)
        );
    }
    // The encoder writes the shortest form.
    assert_eq!(Message::Ping { seq: 300 }.encode(), vec![0x09, 0xac, 0x02]);
}
