//! Payloads: opaque bytes tagged with the codec that encoded them.
//!
//! Typed code encodes and decodes through serde with any codec; a handler
//! answers in the codec the caller used, except that JSON and bytes answer
//! for each other ([`Payload::encode_result`]).

mod arity;
mod bytes;

use ::bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

use crate::message::Codec;

/// Encoded arguments or results with their codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// How `bytes` is encoded.
    pub codec: Codec,
    /// The encoded value; shared, never copied by the core.
    pub bytes: Bytes,
}

/// A value that could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// postcard could not encode or decode the value.
    #[error("postcard: {0}")]
    Postcard(String),
    /// serde_json could not encode or decode the value.
    #[error("json: {0}")]
    Json(String),
    /// The value is not a byte string, so the bytes codec cannot carry it.
    #[error("{}", bytes::NotBytes)]
    NotBytes,
    /// A bytes payload did not decode as the type asked for.
    #[error("bytes: {0}")]
    Bytes(String),
    /// The codec is not one this version knows.
    #[error("unsupported codec {0}")]
    Unsupported(u8),
}

impl Payload {
    /// Decodes a handler's arguments: as [`decode`](Self::decode), with a
    /// failure as the `BadArguments` error the caller is sent.
    ///
    /// # Errors
    /// `BadArguments`, saying why the arguments do not decode.
    pub fn decode_args<A: DeserializeOwned>(&self) -> Result<A, crate::HandlerError> {
        self.decode().map_err(|e| {
            let why = self
                .arguments_counted_wrong::<A>()
                .unwrap_or_else(|| format!("arguments do not decode: {e}"));
            crate::HandlerError::with_kind(crate::ErrorKind::BadArguments, why)
        })
    }

    /// Says so when JSON arguments are not as many as the tuple `A` holds:
    /// a JSON array of another length, or one value that is not an array.
    fn arguments_counted_wrong<A: DeserializeOwned>(&self) -> Option<String> {
        let wanted = arity::tuple_len::<A>()?;
        if self.codec != Codec::Json {
            return None;
        }
        let plural = |n: usize, one: &'static str, many: &'static str| match n {
            1 => one,
            _ => many,
        };
        let sent = match serde_json::from_slice(&self.bytes).ok()? {
            serde_json::Value::Array(values) if values.len() == wanted => return None,
            serde_json::Value::Array(values) => {
                let n = values.len();
                format!("{n} {} sent", plural(n, "was", "were"))
            }
            serde_json::Value::Object(_) => "named arguments (a JSON object) were sent".into(),
            serde_json::Value::Null => "none were sent".into(),
            _ => "1 was sent".into(),
        };
        Some(format!(
            "this method takes {wanted} {} (a JSON array of {wanted} {}); {sent}",
            plural(wanted, "argument", "arguments"),
            plural(wanted, "value", "values"),
        ))
    }

    /// Encodes a handler's result for a caller that used `codec`, with a
    /// failure as the `Internal` error the caller is sent. A postcard caller
    /// is answered in postcard. JSON and bytes are partners (spec §4.1): for
    /// a caller in either, a byte string (`Bytes`, `serde_bytes`) is answered
    /// in bytes and anything else in JSON.
    ///
    /// # Errors
    /// `Internal`, saying why the result does not encode.
    pub fn encode_result<R: Serialize + ?Sized>(
        codec: Codec,
        value: &R,
    ) -> Result<Self, crate::HandlerError> {
        let encoded = match codec {
            Codec::Json | Codec::Bytes => Self::encode_as(Codec::Bytes, value)
                .or_else(|_| Self::encode_as(Codec::Json, value)),
            other => Self::encode_as(other, value),
        };
        encoded.map_err(|e| {
            crate::HandlerError::with_kind(
                crate::ErrorKind::Internal,
                format!("result does not encode: {e}"),
            )
        })
    }

    /// Wraps already-encoded bytes.
    pub fn new(codec: Codec, bytes: impl Into<Bytes>) -> Self {
        Payload {
            codec,
            bytes: bytes.into(),
        }
    }

    /// Encodes `value` with `codec`.
    ///
    /// # Errors
    /// [`CodecError`] if serde fails or the codec is unknown;
    /// [`CodecError::NotBytes`] for the bytes codec and a value that is not
    /// a byte string.
    pub fn encode_as<T: Serialize + ?Sized>(codec: Codec, value: &T) -> Result<Self, CodecError> {
        let bytes = match codec {
            Codec::Postcard => {
                postcard::to_allocvec(value).map_err(|e| CodecError::Postcard(e.to_string()))?
            }
            Codec::Json => {
                serde_json::to_vec(value).map_err(|e| CodecError::Json(e.to_string()))?
            }
            Codec::Bytes => value
                .serialize(bytes::ToByteString)
                .map_err(|_| CodecError::NotBytes)?,
            Codec::Other(code) => return Err(CodecError::Unsupported(code)),
        };
        Ok(Payload::new(codec, bytes))
    }

    /// Encodes `value` with postcard.
    ///
    /// # Errors
    /// [`CodecError::Postcard`] if serde fails.
    pub fn postcard<T: Serialize + ?Sized>(value: &T) -> Result<Self, CodecError> {
        Self::encode_as(Codec::Postcard, value)
    }

    /// Wraps a byte string as a bytes payload (codec 2), without copying it.
    pub fn bytes(bytes: impl Into<Bytes>) -> Self {
        Payload::new(Codec::Bytes, bytes)
    }

    /// Encodes `value` as JSON.
    ///
    /// # Errors
    /// [`CodecError::Json`] if serde fails.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, CodecError> {
        Self::encode_as(Codec::Json, value)
    }

    /// Decodes the payload with its own codec. postcard must use every byte.
    ///
    /// # Errors
    /// [`CodecError`] if the bytes do not decode as `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        match self.codec {
            Codec::Postcard => {
                let (value, rest) = postcard::take_from_bytes(&self.bytes)
                    .map_err(|e| CodecError::Postcard(e.to_string()))?;
                if !rest.is_empty() {
                    return Err(CodecError::Postcard(format!(
                        "{} bytes after the value",
                        rest.len()
                    )));
                }
                Ok(value)
            }
            Codec::Json => {
                serde_json::from_slice(&self.bytes).map_err(|e| CodecError::Json(e.to_string()))
            }
            Codec::Bytes => T::deserialize(bytes::ByteString(&self.bytes))
                .map_err(|e| CodecError::Bytes(e.to_string())),
            Codec::Other(code) => Err(CodecError::Unsupported(code)),
        }
    }
}
