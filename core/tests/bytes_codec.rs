//! The bytes codec (2): a payload that is one byte string, as is (spec §4.1).

use bytes::Bytes;
use rigwire_core::{Codec, CodecError, ErrorKind, Payload};

#[test]
fn a_byte_string_travels_as_is_and_decodes_into_the_usual_byte_types() {
    let data = Bytes::from_static(&[0, 0xff, 0x10, b'\n']);
    let p = Payload::encode_as(Codec::Bytes, &data).unwrap();
    assert_eq!(p.codec, Codec::Bytes);
    assert_eq!(p.bytes, data, "no length, no encoding");
    assert_eq!(p.decode::<Bytes>().unwrap(), data);
    assert_eq!(p.decode::<Vec<u8>>().unwrap(), data.to_vec());
    // Text that happens to be UTF-8 decodes as a string; other text does not.
    assert_eq!(Payload::bytes("rig-1").decode::<String>().unwrap(), "rig-1");
    assert!(matches!(p.decode::<String>(), Err(CodecError::Bytes(_))));
    // Anything that is not bytes-like is refused with the type asked for.
    let err = p.decode::<(f64, f64)>().unwrap_err();
    assert!(matches!(err, CodecError::Bytes(_)), "{err}");
    assert!(p
        .decode_args::<i64>()
        .unwrap_err()
        .to_string()
        .contains("do not decode"));
}

#[test]
fn only_a_byte_string_encodes_as_bytes() {
    assert_eq!(
        Payload::encode_as(Codec::Bytes, &3.5f64),
        Err(CodecError::NotBytes)
    );
    assert_eq!(
        Payload::encode_as(Codec::Bytes, "text"),
        Err(CodecError::NotBytes)
    );
    // A Vec<u8> is a sequence of numbers to serde: an empty one could be an
    // empty list of anything, so it is not taken for bytes.
    assert_eq!(
        Payload::encode_as(Codec::Bytes, &vec![1u8, 2]),
        Err(CodecError::NotBytes)
    );
    assert_eq!(
        Payload::encode_as(Codec::Bytes, &Vec::<String>::new()),
        Err(CodecError::NotBytes)
    );
    assert!(CodecError::NotBytes.to_string().contains("byte string"));
}

#[test]
fn json_and_bytes_answer_for_each_other() {
    let blob = Bytes::from_static(b"\x00\x01frame");
    // A JSON caller is answered a byte string in bytes, anything else in JSON.
    let r = Payload::encode_result(Codec::Json, &blob).unwrap();
    assert_eq!((r.codec, r.bytes.clone()), (Codec::Bytes, blob.clone()));
    let r = Payload::encode_result(Codec::Json, &(1, 2)).unwrap();
    assert_eq!((r.codec, &r.bytes[..]), (Codec::Json, &b"[1,2]"[..]));
    // A bytes caller likewise: a length comes back in JSON.
    let r = Payload::encode_result(Codec::Bytes, &7u64).unwrap();
    assert_eq!((r.codec, &r.bytes[..]), (Codec::Json, &b"7"[..]));
    let r = Payload::encode_result(Codec::Bytes, &blob).unwrap();
    assert_eq!(r.codec, Codec::Bytes);
    // A postcard caller stays in postcard, bytes or not.
    let r = Payload::encode_result(Codec::Postcard, &blob).unwrap();
    assert_eq!(r.codec, Codec::Postcard);
    assert_eq!(r.decode::<Bytes>().unwrap(), blob);
    // An unknown codec is still refused.
    let err = Payload::encode_result(Codec::Other(9), &blob).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Internal);
}

#[test]
fn the_codec_code_is_two_on_the_wire() {
    assert_eq!(u8::from(Codec::Bytes), 2);
    assert_eq!(Codec::from(2), Codec::Bytes);
    assert_eq!(Codec::from(3), Codec::Other(3));
}
