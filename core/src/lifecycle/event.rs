//! What a rig reports to its script with `exp.event` (a trial done, the rig
//! armed): a name and a detail, decoded the same way by every listener (a
//! group of either runtime, the control room).

use serde::de::{Deserialize, Deserializer, Error as _};
use serde_json::Value;

/// An event a rig notifies (`exp.event`): its name, and a detail (empty if
/// the rig sent none).
///
/// On the wire, in postcard: the tuple `(String, String)`. In JSON, what a
/// rig in any language naturally sends: `["armed", "rig 1 ready"]`, the name
/// alone (`"armed"` or `["armed"]`), or a detail that is not a string
/// (`["trial_done", {"n": 3}]`), which is kept as its JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RigEvent {
    /// What happened: the name a script waits for.
    pub name: String,
    /// What the rig said about it.
    pub detail: String,
}

impl<'de> Deserialize<'de> for RigEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            let (name, detail) = <(String, String)>::deserialize(deserializer)?;
            return Ok(RigEvent { name, detail });
        }
        let event = |name: String, detail: Option<Value>| {
            let detail = match detail {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(text)) => text,
                Some(other) => other.to_string(),
            };
            RigEvent { name, detail }
        };
        match Value::deserialize(deserializer)? {
            Value::String(name) => Ok(event(name, None)),
            Value::Array(items) if matches!(items.first(), Some(Value::String(_))) => {
                let mut items = items.into_iter();
                match (items.next(), items.next(), items.next()) {
                    (Some(Value::String(name)), detail, None) => Ok(event(name, detail)),
                    _ => Err(D::Error::custom(
                        "exp.event takes a name, or [name, detail]: more than two items",
                    )),
                }
            }
            other => Err(D::Error::custom(format!(
                "exp.event takes a name, or [name, detail], not {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Payload;

    fn from_json(json: &str) -> Result<RigEvent, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn a_name_with_or_without_a_detail_of_any_kind() {
        let event = |name: &str, detail: &str| {
            Ok(RigEvent {
                name: name.into(),
                detail: detail.into(),
            })
        };
        assert_eq!(from_json(r#"["armed", "ready"]"#), event("armed", "ready"));
        assert_eq!(from_json(r#""armed""#), event("armed", ""));
        assert_eq!(from_json(r#"["armed"]"#), event("armed", ""));
        assert_eq!(from_json(r#"["armed", null]"#), event("armed", ""));
        assert_eq!(
            from_json(r#"["trial_done", {"n": 3}]"#),
            event("trial_done", r#"{"n":3}"#)
        );
        assert_eq!(from_json(r#"["n", 7]"#), event("n", "7"));
        for bad in [
            r#"{"event": "armed"}"#,
            "[1, 2]",
            "[]",
            r#"["a", "b", "c"]"#,
            "3",
        ] {
            let refused = from_json(bad).unwrap_err();
            assert!(
                refused.contains("exp.event takes a name"),
                "{bad}: {refused}"
            );
        }
        // Postcard, what a Rust rig's typed notify sends.
        let sent = Payload::postcard(&("armed", "rig 1 ready")).unwrap();
        assert_eq!(
            sent.decode::<RigEvent>(),
            Ok(event("armed", "rig 1 ready").unwrap())
        );
    }
}
