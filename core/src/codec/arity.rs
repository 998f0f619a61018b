//! How many arguments a handler takes, read from its argument type, so that
//! a call with another number of them is told so. serde's own words for it
//! ("invalid length 1, expected a tuple of size 2", or "trailing
//! characters" for one too many) do not say what was wrong.

use serde::de::value::Error;
use serde::de::{self, Deserialize, Error as _, Visitor};

/// How many values the tuple `A` holds (a handler's arguments `(a, b)`);
/// `None` for a type that is not a tuple.
pub(super) fn tuple_len<'de, A: Deserialize<'de>>() -> Option<usize> {
    let mut len = None;
    let _ = A::deserialize(TupleLen(&mut len));
    len
}

/// A deserializer that decodes nothing: it notes the length of the tuple
/// the type asks for, then stops.
struct TupleLen<'a>(&'a mut Option<usize>);

impl<'de> de::Deserializer<'de> for TupleLen<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(Error::custom("not a tuple"))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, _: V) -> Result<V::Value, Error> {
        *self.0 = Some(len);
        Err(Error::custom("a tuple"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple_struct
        map struct enum identifier ignored_any
    }
}
