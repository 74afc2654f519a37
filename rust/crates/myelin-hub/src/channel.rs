//! The device side of one socket connection, as a pure state machine.
//!
//! Once the WebSocket is open the device joins the `device` topic with its firmware metadata;
//! the server answers with a `phx_reply` carrying the join's ref (`status` `ok`, or `error` with
//! a reason). Every `heartbeat_interval` the device sends `[null, ref, "phoenix", "heartbeat",
//! {}]`; a heartbeat still unanswered when the next one is due means the connection is dead.
//! A `phx_error` or `phx_close` on the device topic (the channel process crashed or was shut
//! down) ends the connection too: the caller reconnects with backoff, which rejoins.
//!
//! Other topics on the same socket (`console`, `extensions`) are joined with [`Channel::join`];
//! their replies, closes and pushes come out as [`Output::TopicJoined`], [`Output::TopicClosed`]
//! and [`Output::TopicEvent`] for the caller to interpret. Their end does not end the connection.
//!
//! Times are milliseconds of a monotonic clock the caller reads; nothing here sleeps or does I/O.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::frame::{Frame, FrameError};
use crate::message::{self, BadMessage, ServerEvent};

/// The device topic.
pub const DEVICE_TOPIC: &str = "device";
/// Heartbeats' topic.
pub const PHOENIX_TOPIC: &str = "phoenix";

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The join is sent, no reply yet.
    Joining,
    /// The device channel is joined.
    Joined,
}

/// What the caller must do after an input.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this frame.
    Send(Frame),
    /// The device channel joined (the server's response).
    Joined(Value),
    /// A server event to carry out.
    Event(ServerEvent),
    /// A known event with a bad payload: log it, carry on.
    Ignored(BadMessage),
    /// Another topic's join succeeded, with the server's response.
    TopicJoined {
        /// The topic.
        topic: String,
        /// The join's response.
        response: Value,
    },
    /// Another topic ended: the server closed it, its process crashed, or it refused the join.
    TopicClosed {
        /// The topic.
        topic: String,
        /// Why (the event, or the refusal's response).
        reason: String,
    },
    /// A push on another joined topic.
    TopicEvent {
        /// The topic.
        topic: String,
        /// The event.
        event: String,
        /// Its payload.
        payload: Value,
    },
}

/// A topic other than `device` joined on the socket.
#[derive(Debug)]
struct Topic {
    join_ref: String,
    joined: bool,
}

/// Why the connection must be closed (and reopened after a backoff delay).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Close {
    /// The server sent something that is not a Phoenix frame.
    #[error("malformed frame: {0}")]
    Malformed(#[from] FrameError),
    /// The server refused the join.
    #[error("join refused: {0}")]
    JoinRefused(String),
    /// The server did not answer a heartbeat in time.
    #[error("heartbeat {0} not answered")]
    HeartbeatTimeout(String),
    /// The server closed or crashed the device channel.
    #[error("device channel ended by the server ({0})")]
    ChannelEnded(String),
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Channel {
    state: State,
    next_ref: u64,
    join_ref: String,
    heartbeat_interval: u64,
    last_heartbeat: u64,
    pending_heartbeat: Option<String>,
    topics: HashMap<String, Topic>,
}

impl Channel {
    /// A connection just opened at `now`: returns the machine and the join frame to send.
    pub fn open(join_payload: Value, now: u64, heartbeat_interval_ms: u64) -> (Channel, Frame) {
        let mut c = Channel {
            state: State::Joining,
            next_ref: 1,
            join_ref: String::new(),
            heartbeat_interval: heartbeat_interval_ms.max(1),
            last_heartbeat: now,
            pending_heartbeat: None,
            topics: HashMap::new(),
        };
        let r = c.take_ref();
        c.join_ref = r.clone();
        let join = Frame::new(
            Some(r.clone()),
            Some(r),
            DEVICE_TOPIC,
            "phx_join",
            join_payload,
        );
        (c, join)
    }

    /// Where the connection is.
    pub fn state(&self) -> State {
        self.state
    }

    fn take_ref(&mut self) -> String {
        let r = self.next_ref.to_string();
        self.next_ref += 1;
        r
    }

    /// A push on the device topic (progress, status); `None` before the join succeeded.
    pub fn push(&mut self, event: &str, payload: Value) -> Option<Frame> {
        if self.state != State::Joined {
            return None;
        }
        let r = self.take_ref();
        Some(Frame::new(
            Some(self.join_ref.clone()),
            Some(r),
            DEVICE_TOPIC,
            event,
            payload,
        ))
    }

    /// Joins another topic (again, if it was joined before): the frame to send.
    pub fn join(&mut self, topic: &str, payload: Value) -> Frame {
        let r = self.take_ref();
        self.topics.insert(
            topic.to_owned(),
            Topic {
                join_ref: r.clone(),
                joined: false,
            },
        );
        Frame::new(Some(r.clone()), Some(r), topic, "phx_join", payload)
    }

    /// Whether another topic is joined.
    pub fn joined(&self, topic: &str) -> bool {
        self.topics.get(topic).is_some_and(|t| t.joined)
    }

    /// A push on another joined topic; `None` if it is not joined.
    pub fn push_to(&mut self, topic: &str, event: &str, payload: Value) -> Option<Frame> {
        let join_ref = self
            .topics
            .get(topic)
            .filter(|t| t.joined)?
            .join_ref
            .clone();
        let r = self.take_ref();
        Some(Frame::new(Some(join_ref), Some(r), topic, event, payload))
    }

    /// When [`Channel::tick`] has something to do next.
    pub fn next_deadline(&self) -> u64 {
        self.last_heartbeat + self.heartbeat_interval
    }

    /// Time passed: sends a heartbeat when one is due, or closes if the last one is unanswered.
    pub fn tick(&mut self, now: u64) -> Result<Option<Frame>, Close> {
        if now < self.next_deadline() {
            return Ok(None);
        }
        if let Some(r) = self.pending_heartbeat.take() {
            return Err(Close::HeartbeatTimeout(r));
        }
        let r = self.take_ref();
        self.pending_heartbeat = Some(r.clone());
        self.last_heartbeat = now;
        Ok(Some(Frame::new(
            None,
            Some(r),
            PHOENIX_TOPIC,
            "heartbeat",
            json!({}),
        )))
    }

    /// A text message arrived.
    pub fn receive(&mut self, text: &str) -> Result<Vec<Output>, Close> {
        let frame = Frame::decode(text)?;
        let mut out = Vec::new();
        match (frame.topic.as_str(), frame.event.as_str()) {
            (PHOENIX_TOPIC, "phx_reply") => {
                if frame.msg_ref.is_some() && frame.msg_ref == self.pending_heartbeat {
                    self.pending_heartbeat = None;
                }
            }
            (DEVICE_TOPIC, "phx_reply") => {
                let is_join = frame.msg_ref.as_deref() == Some(self.join_ref.as_str());
                if is_join && self.state == State::Joining {
                    match frame.reply() {
                        Some(("ok", response)) => {
                            self.state = State::Joined;
                            out.push(Output::Joined(response.clone()));
                        }
                        Some((_, response)) => {
                            return Err(Close::JoinRefused(response.to_string()));
                        }
                        None => {
                            return Err(Close::Malformed(FrameError::Field {
                                field: "payload",
                                expected: "a phx_reply with a status",
                            }));
                        }
                    }
                }
                // Replies to pushes carry nothing the device acts on.
            }
            (DEVICE_TOPIC, "phx_error" | "phx_close") => {
                return Err(Close::ChannelEnded(frame.event));
            }
            (DEVICE_TOPIC, event) => match message::parse(event, &frame.payload) {
                Ok(e) => out.push(Output::Event(e)),
                Err(bad) => out.push(Output::Ignored(bad)),
            },
            (topic, _) if self.topics.contains_key(topic) => {
                if let Some(o) = self.topic_frame(&frame) {
                    out.push(o);
                }
            }
            (topic, event) => {
                out.push(Output::Event(ServerEvent::Unknown(format!(
                    "{topic}/{event}"
                ))));
            }
        }
        Ok(out)
    }
}

impl Channel {
    /// A frame on another topic this connection joined.
    fn topic_frame(&mut self, frame: &Frame) -> Option<Output> {
        let topic = frame.topic.clone();
        let t = self.topics.get_mut(&topic)?;
        // Frames of an earlier join of this topic are stale.
        if frame.join_ref.is_some() && frame.join_ref.as_deref() != Some(t.join_ref.as_str()) {
            return None;
        }
        match frame.event.as_str() {
            "phx_reply" => {
                let is_join = frame.msg_ref.as_deref() == Some(t.join_ref.as_str());
                if !is_join || t.joined {
                    return None;
                }
                match frame.reply() {
                    Some(("ok", response)) => {
                        t.joined = true;
                        Some(Output::TopicJoined {
                            topic,
                            response: response.clone(),
                        })
                    }
                    other => {
                        self.topics.remove(&topic);
                        Some(Output::TopicClosed {
                            topic,
                            reason: format!(
                                "join refused: {}",
                                other.map_or_else(|| "no status".into(), |(_, r)| r.to_string())
                            ),
                        })
                    }
                }
            }
            "phx_close" | "phx_error" => {
                self.topics.remove(&topic);
                Some(Output::TopicClosed {
                    topic,
                    reason: frame.event.clone(),
                })
            }
            _ if t.joined => Some(Output::TopicEvent {
                topic,
                event: frame.event.clone(),
                payload: frame.payload.clone(),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined() -> Channel {
        let (mut c, _) = Channel::open(json!({}), 0, 30_000);
        let out = c
            .receive(r#"["1","1","device","phx_reply",{"status":"ok","response":{}}]"#)
            .unwrap();
        assert_eq!(out, vec![Output::Joined(json!({}))]);
        c
    }

    #[test]
    fn join_frame_carries_the_payload() {
        let (c, join) = Channel::open(json!({"nerves_fw_uuid": "u"}), 0, 30_000);
        assert_eq!(
            join.encode(),
            r#"["1","1","device","phx_join",{"nerves_fw_uuid":"u"}]"#
        );
        assert_eq!(c.state(), State::Joining);
    }

    #[test]
    fn pushes_wait_for_the_join() {
        let (mut c, _) = Channel::open(json!({}), 0, 30_000);
        assert_eq!(c.push("fwup_progress", json!({})), None);
        let mut c = joined();
        let f = c.push("fwup_progress", json!({"value": 1})).unwrap();
        assert_eq!(f.join_ref.as_deref(), Some("1"));
        assert_eq!(f.msg_ref.as_deref(), Some("2"));
    }

    #[test]
    fn refused_join_closes() {
        let (mut c, _) = Channel::open(json!({}), 0, 30_000);
        let e = c
            .receive(r#"["1","1","device","phx_reply",{"status":"error","response":{"error":"could not connect"}}]"#)
            .unwrap_err();
        assert!(matches!(e, Close::JoinRefused(ref r) if r.contains("could not connect")));
    }

    #[test]
    fn heartbeat_cycle_and_timeout() {
        let mut c = joined();
        assert_eq!(c.tick(29_999), Ok(None));
        let hb = c.tick(30_000).unwrap().unwrap();
        assert_eq!(hb.encode(), r#"[null,"2","phoenix","heartbeat",{}]"#);
        c.receive(r#"[null,"2","phoenix","phx_reply",{"status":"ok","response":{}}]"#)
            .unwrap();
        let hb = c.tick(60_000).unwrap().unwrap();
        assert_eq!(hb.msg_ref.as_deref(), Some("3"));
        // No reply to "3" before the next one is due.
        assert_eq!(c.tick(90_000), Err(Close::HeartbeatTimeout("3".into())));
    }

    #[test]
    fn a_reply_to_another_ref_does_not_count_as_heartbeat() {
        let mut c = joined();
        c.tick(30_000).unwrap();
        c.receive(r#"[null,"99","phoenix","phx_reply",{"status":"ok","response":{}}]"#)
            .unwrap();
        assert!(c.tick(60_000).is_err());
    }

    #[test]
    fn events_are_dispatched_and_bad_ones_ignored() {
        let mut c = joined();
        assert_eq!(
            c.receive(r#"[null,null,"device","reboot",{}]"#).unwrap(),
            vec![Output::Event(ServerEvent::Reboot)]
        );
        assert!(matches!(
            c.receive(r#"[null,null,"device","update",{"firmware_meta":{}}]"#)
                .unwrap()[..],
            [Output::Ignored(_)]
        ));
        assert_eq!(
            c.receive(r#"[null,null,"device","brand_new_thing",{"x":1}]"#)
                .unwrap(),
            vec![Output::Event(ServerEvent::Unknown(
                "brand_new_thing".into()
            ))]
        );
    }

    #[test]
    fn other_topics_join_push_and_close_without_ending_the_connection() {
        let mut c = joined();
        let j = c.join("console", json!({"console_version": "2.0.0"}));
        assert_eq!(
            j.encode(),
            r#"["2","2","console","phx_join",{"console_version":"2.0.0"}]"#
        );
        assert_eq!(c.push_to("console", "up", json!({})), None);
        // A push before the join's reply is not delivered.
        assert_eq!(
            c.receive(r#"["2",null,"console","dn",{}]"#).unwrap(),
            vec![]
        );
        assert_eq!(
            c.receive(r#"["2","2","console","phx_reply",{"status":"ok","response":{}}]"#)
                .unwrap(),
            vec![Output::TopicJoined {
                topic: "console".into(),
                response: json!({})
            }]
        );
        assert!(c.joined("console"));
        let up = c.push_to("console", "up", json!({"data": "x"})).unwrap();
        assert_eq!(up.encode(), r#"["2","3","console","up",{"data":"x"}]"#);
        assert_eq!(
            c.receive(r#"["2",null,"console","dn",{"data":"ls"}]"#)
                .unwrap(),
            vec![Output::TopicEvent {
                topic: "console".into(),
                event: "dn".into(),
                payload: json!({"data": "ls"})
            }]
        );
        // A stale join's frames are dropped.
        assert_eq!(
            c.receive(r#"["1",null,"console","dn",{}]"#).unwrap(),
            vec![]
        );
        assert_eq!(
            c.receive(r#"["2","2","console","phx_close",{}]"#).unwrap(),
            vec![Output::TopicClosed {
                topic: "console".into(),
                reason: "phx_close".into()
            }]
        );
        assert!(!c.joined("console"));
        assert_eq!(c.state(), State::Joined);
        // A refused join.
        c.join("extensions", json!({}));
        assert!(matches!(
            &c.receive(r#"["4","4","extensions","phx_reply",{"status":"error","response":{"reason":"no"}}]"#)
                .unwrap()[..],
            [Output::TopicClosed { topic, reason }] if topic == "extensions" && reason.contains("no")
        ));
    }

    #[test]
    fn malformed_or_channel_end_closes() {
        let mut c = joined();
        assert!(matches!(c.receive("[1,2"), Err(Close::Malformed(_))));
        assert_eq!(
            c.receive(r#"["1","1","device","phx_error",{}]"#),
            Err(Close::ChannelEnded("phx_error".into()))
        );
    }
}
