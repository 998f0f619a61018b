//! The bytes codec (code 2): a payload that is one byte string, as is, with
//! no length and no encoding, so that files, camera frames and arrays
//! travel without base64 or a copy into another format.
//!
//! serde sees such a payload as a byte string: it decodes into
//! `bytes::Bytes`, `serde_bytes::ByteBuf`, `Vec<u8>` (or a `String`, if the
//! bytes are UTF-8). Only a value that serializes as a byte string
//! (`Bytes`, `serde_bytes`) encodes into it: a `Vec<u8>` serializes as a
//! sequence of numbers, and an empty one could not be told from an empty
//! list of anything else.

use std::fmt;

use serde::de::value::SeqDeserializer;
use serde::de::{self, Visitor};
use serde::ser::{self, Impossible, Serialize};

/// Decodes a bytes payload into any type that accepts a byte string.
pub(super) struct ByteString<'a>(pub(super) &'a [u8]);

impl<'de> de::Deserializer<'de> for ByteString<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_bytes(self.0)
    }

    /// `Vec<u8>` asks for a sequence: its elements are the bytes.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_seq(SeqDeserializer::new(self.0.iter().copied()))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct tuple tuple_struct map struct
        enum identifier ignored_any
    }
}

/// Why a value could not be encoded in the bytes codec: it is not a byte string.
#[derive(Debug)]
pub(super) struct NotBytes;

impl fmt::Display for NotBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("only a byte string (bytes::Bytes, serde_bytes) travels in the bytes codec")
    }
}

impl std::error::Error for NotBytes {}

impl ser::Error for NotBytes {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        NotBytes
    }
}

/// Encodes a value that serializes as a byte string; anything else is
/// [`NotBytes`], at its first field, so trying costs next to nothing.
pub(super) struct ToByteString;

/// Each listed method refuses its value.
macro_rules! refuse {
    ($($method:ident($($arg:ty),*);)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<Self::Ok, NotBytes> { Err(NotBytes) })*
    };
}

impl ser::Serializer for ToByteString {
    type Ok = Vec<u8>;
    type Error = NotBytes;
    type SerializeSeq = Impossible<Vec<u8>, NotBytes>;
    type SerializeTuple = Impossible<Vec<u8>, NotBytes>;
    type SerializeTupleStruct = Impossible<Vec<u8>, NotBytes>;
    type SerializeTupleVariant = Impossible<Vec<u8>, NotBytes>;
    type SerializeMap = Impossible<Vec<u8>, NotBytes>;
    type SerializeStruct = Impossible<Vec<u8>, NotBytes>;
    type SerializeStructVariant = Impossible<Vec<u8>, NotBytes>;

    fn serialize_bytes(self, v: &[u8]) -> Result<Vec<u8>, NotBytes> {
        Ok(v.to_vec())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Vec<u8>, NotBytes> {
        value.serialize(self)
    }

    refuse! {
        serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32);
        serialize_i64(i64); serialize_u8(u8); serialize_u16(u16); serialize_u32(u32);
        serialize_u64(u64); serialize_f32(f32); serialize_f64(f64); serialize_char(char);
        serialize_str(&str); serialize_none(); serialize_unit();
        serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Vec<u8>, NotBytes> {
        Err(NotBytes)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Vec<u8>, NotBytes> {
        Err(NotBytes)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotBytes> {
        Err(NotBytes)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotBytes> {
        Err(NotBytes)
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, NotBytes> {
        Err(NotBytes)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotBytes> {
        Err(NotBytes)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotBytes> {
        Err(NotBytes)
    }

    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, NotBytes> {
        Err(NotBytes)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotBytes> {
        Err(NotBytes)
    }
}
