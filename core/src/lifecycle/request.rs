//! What a lifecycle call asks for, decoded from its arguments once for every
//! runtime: `exp.init` with optional data, `exp.start` with an experiment
//! reference, `exp.stop` with `{immediately}` (which means interrupt), and
//! `exp.cleanup`.

use serde_json::{Map, Value};

use super::{methods, ExpRef, Step, StopArgs};
use crate::codec::Payload;
use crate::handler_error::HandlerError;
use crate::message::{Codec, ErrorKind};

/// The data `exp.init` may carry (iblutil's init sends a dict): nothing,
/// `null`, or an object.
///
/// On the wire, in JSON: no bytes, `null`, `{}` or any object. In
/// postcard: no bytes (the unit value), or an `Option<String>` holding the
/// object as JSON text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InitData(pub Option<Map<String, Value>>);

impl InitData {
    /// The typed argument that carries this data in postcard (what a
    /// group's typed call sends): the object as JSON text, if any.
    pub fn as_postcard_arg(&self) -> Option<String> {
        self.0
            .as_ref()
            .map(|map| Value::Object(map.clone()).to_string())
    }

    /// Encodes the data in `codec`, as `exp.init` expects it (an unknown
    /// codec gets JSON).
    ///
    /// # Errors
    /// Never for JSON; a postcard failure is impossible for a string.
    pub fn encode(&self, codec: Codec) -> Result<Payload, crate::CodecError> {
        match (codec, &self.0) {
            (_, None) => Ok(Payload::new(codec, Vec::new())),
            (Codec::Json | Codec::Bytes | Codec::Other(_), Some(map)) => Payload::json(map),
            (Codec::Postcard, Some(_)) => Payload::postcard(&self.as_postcard_arg()),
        }
    }

    /// Decodes `exp.init`'s arguments.
    ///
    /// # Errors
    /// A `BadArguments` error naming what is accepted.
    pub fn decode(args: &Payload) -> Result<InitData, HandlerError> {
        let bad = |why: String| {
            HandlerError::with_kind(
                ErrorKind::BadArguments,
                format!("exp.init takes nothing, null or an object of data: {why}"),
            )
        };
        if args.bytes.is_empty() {
            return Ok(InitData(None));
        }
        let value = match args.codec {
            Codec::Json => {
                serde_json::from_slice::<Value>(&args.bytes).map_err(|e| bad(e.to_string()))?
            }
            Codec::Postcard => match postcard::from_bytes::<Option<String>>(&args.bytes) {
                Ok(None) => Value::Null,
                Ok(Some(text)) => serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?,
                Err(e) => return Err(bad(e.to_string())),
            },
            Codec::Bytes => return Err(bad("a byte string".into())),
            Codec::Other(n) => return Err(bad(format!("unknown codec {n}"))),
        };
        match value {
            Value::Null => Ok(InitData(None)),
            Value::Object(map) => Ok(InitData(Some(map))),
            other => Err(bad(format!("got {other}"))),
        }
    }
}

/// A lifecycle call, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum StepRequest {
    /// `exp.init`, with its data.
    Init(InitData),
    /// `exp.start`, with the experiment reference.
    Start(ExpRef),
    /// `exp.stop`; `immediately` means interrupt.
    Stop {
        /// Interrupt at once instead of stopping at the end of the trial.
        immediately: bool,
    },
    /// `exp.cleanup`.
    Cleanup,
}

impl StepRequest {
    /// Decodes the arguments of `method` (one of the four step methods).
    ///
    /// # Errors
    /// `BadArguments` for arguments that do not decode, or `NoSuchMethod`
    /// for a method that is not a step.
    pub fn decode(method: &str, args: &Payload) -> Result<StepRequest, HandlerError> {
        let decode_err = |e: crate::CodecError| {
            HandlerError::with_kind(ErrorKind::BadArguments, format!("{method}: {e}"))
        };
        Ok(match method {
            methods::INIT => StepRequest::Init(InitData::decode(args)?),
            methods::START
                if args.codec == Codec::Json && matches!(&args.bytes[..], b"" | b"null") =>
            {
                return Err(HandlerError::with_kind(
                    ErrorKind::BadArguments,
                    format!(
                        "{method} takes the experiment's reference, as text of the form \
                         yyyy-mm-dd_n_subject (\"2026-11-28_1_mouse\"), and none was sent"
                    ),
                ))
            }
            methods::START => StepRequest::Start(args.decode().map_err(decode_err)?),
            methods::STOP => {
                let stop: Option<StopArgs> = match args.bytes.is_empty() {
                    true => None,
                    false => args.decode().map_err(decode_err)?,
                };
                StepRequest::Stop {
                    immediately: stop.unwrap_or_default().immediately,
                }
            }
            methods::CLEANUP => StepRequest::Cleanup,
            other => {
                return Err(HandlerError::with_kind(
                    ErrorKind::NoSuchMethod,
                    format!("{other} is not a lifecycle step"),
                ))
            }
        })
    }

    /// The step it asks for: a stop `immediately` is an interrupt.
    pub fn step(&self) -> Step {
        match self {
            StepRequest::Init(_) => Step::Init,
            StepRequest::Start(_) => Step::Start,
            StepRequest::Stop { immediately: true } => Step::Interrupt,
            StepRequest::Stop { immediately: false } => Step::Stop,
            StepRequest::Cleanup => Step::Cleanup,
        }
    }

    /// The experiment reference, for a start.
    pub fn exp_ref(&self) -> Option<ExpRef> {
        match self {
            StepRequest::Start(exp_ref) => Some(exp_ref.clone()),
            _ => None,
        }
    }
}

/// A step that has begun ([`Lifecycle::begin_call`](super::Lifecycle::begin_call))
/// and finishes however the rig's work ends: applied only through
/// [`succeed`](Self::succeed); an error, a panic or a cancel (dropped
/// unfinished) leaves the status as it was. `lock` gives access to the
/// rig's shared lifecycle (a runtime's mutex guard, say).
pub struct StepInProgress<'a, F, G>
where
    F: Fn() -> G,
    G: std::ops::DerefMut<Target = super::Lifecycle>,
{
    lock: F,
    request: &'a StepRequest,
    succeeded: bool,
}

impl<'a, F, G> StepInProgress<'a, F, G>
where
    F: Fn() -> G,
    G: std::ops::DerefMut<Target = super::Lifecycle>,
{
    /// Watches `request`'s step, begun on the lifecycle `lock` reaches.
    pub fn new(lock: F, request: &'a StepRequest) -> Self {
        StepInProgress {
            lock,
            request,
            succeeded: false,
        }
    }

    /// The rig's work succeeded: applies the step and returns the status.
    pub fn succeed(mut self) -> super::ExpStatus {
        self.succeeded = true;
        (self.lock)().finish(self.request.step(), self.request.exp_ref(), true)
    }
}

impl<F, G> Drop for StepInProgress<'_, F, G>
where
    F: Fn() -> G,
    G: std::ops::DerefMut<Target = super::Lifecycle>,
{
    fn drop(&mut self) {
        if !self.succeeded {
            (self.lock)().finish(self.request.step(), None, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_takes_nothing_null_or_an_object_in_either_codec() {
        let json = |text: &str| Payload::new(Codec::Json, text.as_bytes().to_vec());
        assert_eq!(InitData::decode(&json("")).unwrap(), InitData(None));
        assert_eq!(InitData::decode(&json("null")).unwrap(), InitData(None));
        assert_eq!(
            InitData::decode(&json("{}")).unwrap(),
            InitData(Some(Map::new()))
        );
        let data = InitData::decode(&json(r#"{"subject": "mouse-1"}"#)).unwrap();
        assert_eq!(data.0.unwrap()["subject"], "mouse-1");
        let err = InitData::decode(&json("[1]")).unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadArguments);
        assert!(
            err.message.contains("nothing, null or an object"),
            "{}",
            err.message
        );
        // Postcard: unit, or the object as JSON text; both round trip.
        let unit = Payload::postcard(&()).unwrap();
        assert_eq!(InitData::decode(&unit).unwrap(), InitData(None));
        let mut map = Map::new();
        map.insert("n".into(), Value::from(3));
        for codec in [Codec::Postcard, Codec::Json] {
            let sent = InitData(Some(map.clone()));
            let payload = sent.encode(codec).unwrap();
            assert_eq!(InitData::decode(&payload).unwrap(), sent);
        }
    }

    #[test]
    fn a_start_without_its_reference_says_what_to_send() {
        for sent in ["", "null"] {
            let args = Payload::new(Codec::Json, sent.as_bytes().to_vec());
            let err = StepRequest::decode(methods::START, &args).unwrap_err();
            assert_eq!(err.kind, ErrorKind::BadArguments);
            assert_eq!(
                err.message,
                "exp.start takes the experiment's reference, as text of the form \
                 yyyy-mm-dd_n_subject (\"2026-11-28_1_mouse\"), and none was sent"
            );
        }
        let sent = Payload::json("2026-11-28_1_mouse").unwrap();
        let start = StepRequest::decode(methods::START, &sent).unwrap();
        assert_eq!(start.step(), Step::Start);
    }

    #[test]
    fn stop_immediately_is_an_interrupt() {
        let stop = |args: &Payload| StepRequest::decode(methods::STOP, args).unwrap().step();
        assert_eq!(stop(&Payload::new(Codec::Json, Vec::new())), Step::Stop);
        assert_eq!(stop(&Payload::json(&None::<StopArgs>).unwrap()), Step::Stop);
        let now = StopArgs { immediately: true };
        assert_eq!(stop(&Payload::json(&Some(now)).unwrap()), Step::Interrupt);
        assert_eq!(
            stop(&Payload::postcard(&Some(now)).unwrap()),
            Step::Interrupt
        );
    }
}
