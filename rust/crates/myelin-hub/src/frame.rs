//! Phoenix Channels v2 JSON frames, as NervesHub's device socket speaks them.
//!
//! Every WebSocket text message is one JSON array of exactly five elements:
//!
//! ```text
//! [join_ref, ref, topic, event, payload]
//! ```
//!
//! - `join_ref`: the `ref` of the `phx_join` that opened the channel the message belongs to
//!   (a string, or `null` for messages outside a joined channel, e.g. heartbeats);
//! - `ref`: the message's own reference, a string the client chooses; a `phx_reply` carries the
//!   `ref` of the message it answers; server pushes carry `null`;
//! - `topic`: the channel (`device`, `console`, `extensions`; `phoenix` for heartbeats);
//! - `event`: `phx_join`, `phx_leave`, `phx_reply`, `phx_error`, `phx_close`, `heartbeat`, or an
//!   application event (`update`, `reboot`, `fwup_progress`, ...);
//! - `payload`: a JSON object (`phx_reply`'s is `{"status": "ok"|"error", "response": {...}}`).
//!
//! Phoenix itself sends refs as strings; a number is accepted too (and kept as its text), since
//! other clients and servers do. Anything else is a malformed frame: the caller closes the socket.

use serde_json::Value;

/// One Phoenix v2 message.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The `ref` of the join this message belongs to.
    pub join_ref: Option<String>,
    /// This message's reference (or, in a reply, the one it answers).
    pub msg_ref: Option<String>,
    /// The channel.
    pub topic: String,
    /// What happened.
    pub event: String,
    /// The event's data: always a JSON object.
    pub payload: Value,
}

/// Why a text message is not a Phoenix v2 frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Not JSON at all.
    #[error("frame is not JSON: {0}")]
    Json(String),
    /// JSON, but not an array.
    #[error("frame is not a JSON array")]
    NotArray,
    /// An array of the wrong length.
    #[error("frame has {0} elements, expected 5 ([join_ref, ref, topic, event, payload])")]
    Length(usize),
    /// An element of the wrong type.
    #[error("frame element {field}: expected {expected}")]
    Field {
        /// `join_ref`, `ref`, `topic`, `event` or `payload`.
        field: &'static str,
        /// What it should have been.
        expected: &'static str,
    },
}

impl Frame {
    /// A frame with a JSON object payload.
    pub fn new(
        join_ref: Option<String>,
        msg_ref: Option<String>,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> Frame {
        Frame {
            join_ref,
            msg_ref,
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload,
        }
    }

    /// The text of the WebSocket message.
    pub fn encode(&self) -> String {
        Value::Array(vec![
            opt(&self.join_ref),
            opt(&self.msg_ref),
            Value::String(self.topic.clone()),
            Value::String(self.event.clone()),
            self.payload.clone(),
        ])
        .to_string()
    }

    /// Parses the text of a WebSocket message.
    pub fn decode(text: &str) -> Result<Frame, FrameError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| FrameError::Json(e.to_string()))?;
        let Value::Array(items) = value else {
            return Err(FrameError::NotArray);
        };
        let n = items.len();
        let Ok([join_ref, msg_ref, topic, event, payload]) = <[Value; 5]>::try_from(items) else {
            return Err(FrameError::Length(n));
        };
        let topic = string(topic, "topic")?;
        let event = string(event, "event")?;
        if !payload.is_object() {
            return Err(FrameError::Field {
                field: "payload",
                expected: "a JSON object",
            });
        }
        Ok(Frame {
            join_ref: reference(join_ref, "join_ref")?,
            msg_ref: reference(msg_ref, "ref")?,
            topic,
            event,
            payload,
        })
    }

    /// For a `phx_reply`: its `status` (`ok`, `error`) and `response`.
    pub fn reply(&self) -> Option<(&str, &Value)> {
        if self.event != "phx_reply" {
            return None;
        }
        let status = self.payload.get("status")?.as_str()?;
        Some((status, self.payload.get("response").unwrap_or(&Value::Null)))
    }
}

fn opt(s: &Option<String>) -> Value {
    s.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}

fn string(v: Value, field: &'static str) -> Result<String, FrameError> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s),
        _ => Err(FrameError::Field {
            field,
            expected: "a non-empty string",
        }),
    }
}

fn reference(v: Value, field: &'static str) -> Result<Option<String>, FrameError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(FrameError::Field {
            field,
            expected: "a string, a number or null",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip() {
        let f = Frame::new(
            Some("1".into()),
            Some("2".into()),
            "device",
            "phx_join",
            json!({"nerves_fw_uuid": "u"}),
        );
        let text = f.encode();
        assert_eq!(
            text,
            r#"["1","2","device","phx_join",{"nerves_fw_uuid":"u"}]"#
        );
        assert_eq!(Frame::decode(&text), Ok(f));
    }

    #[test]
    fn server_push_with_null_refs() {
        let f = Frame::decode(r#"[null,null,"device","reboot",{}]"#).unwrap();
        assert_eq!(f.join_ref, None);
        assert_eq!(f.msg_ref, None);
        assert_eq!(f.event, "reboot");
    }

    #[test]
    fn numeric_refs_are_kept_as_text() {
        let f = Frame::decode(r#"[null,7,"phoenix","phx_reply",{"status":"ok","response":{}}]"#)
            .unwrap();
        assert_eq!(f.msg_ref.as_deref(), Some("7"));
        assert_eq!(f.reply().map(|(s, _)| s), Some("ok"));
    }

    #[test]
    fn malformed_frames_name_the_fault() {
        assert!(matches!(Frame::decode("nope"), Err(FrameError::Json(_))));
        assert_eq!(Frame::decode(r#"{"a":1}"#), Err(FrameError::NotArray));
        assert_eq!(
            Frame::decode(r#"[null,null,"device","x"]"#),
            Err(FrameError::Length(4))
        );
        assert_eq!(
            Frame::decode(r#"[null,null,"device",3,{}]"#),
            Err(FrameError::Field {
                field: "event",
                expected: "a non-empty string"
            })
        );
        assert_eq!(
            Frame::decode(r#"[null,null,"","x",{}]"#)
                .unwrap_err()
                .to_string(),
            "frame element topic: expected a non-empty string"
        );
        assert_eq!(
            Frame::decode(r#"[null,null,"device","x",[]]"#),
            Err(FrameError::Field {
                field: "payload",
                expected: "a JSON object"
            })
        );
        assert_eq!(
            Frame::decode(r#"[true,null,"device","x",{}]"#),
            Err(FrameError::Field {
                field: "join_ref",
                expected: "a string, a number or null"
            })
        );
    }

    #[test]
    fn reply_only_for_phx_reply() {
        let f = Frame::decode(r#"[null,null,"device","update",{"status":"ok"}]"#).unwrap();
        assert_eq!(f.reply(), None);
    }
}
