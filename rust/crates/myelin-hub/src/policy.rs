//! Whether the product lets an offered update install now: NervesHubLink's `update_available`
//! callback, as a command the product names in hub.toml (`update_command`).
//!
//! The command runs with the offer in its environment (`MYELIN_UPDATE_VERSION`,
//! `MYELIN_UPDATE_UUID`, `MYELIN_UPDATE_PLATFORM`) and answers on the first line of its standard
//! output:
//!
//! ```text
//! apply                        install now
//! ignore [REASON]              never install this offer (the server is told, with the reason)
//! reschedule SECONDS [REASON]  ask again later: a maintenance window, "the machine is busy"
//! ```
//!
//! A command that cannot run, fails, hangs past [`ASK_TIMEOUT`] or answers anything else lets the
//! update install, with a warning: a broken hook must not keep out the update that may fix it.

use std::time::Duration;

/// How long the command may take to answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest wait a `reschedule` gets, whatever it asks: the offer is reconsidered at least
/// daily.
pub const MAX_RESCHEDULE: Duration = Duration::from_secs(24 * 3600);

/// What the product decided about an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Install now.
    Apply,
    /// Do not install this offer; the reason.
    Ignore(String),
    /// Ask again after this long; the reason.
    Reschedule(Duration, String),
}

/// Why an answer is not one of the three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// Nothing on the first line.
    #[error("the answer is empty (expected apply, ignore or reschedule SECONDS)")]
    Empty,
    /// A first word that is none of the three.
    #[error("unknown answer `{0}` (expected apply, ignore or reschedule SECONDS)")]
    Unknown(String),
    /// `reschedule` without a whole number of seconds.
    #[error("reschedule needs a whole number of seconds, got `{0}`")]
    Seconds(String),
}

/// Reads the first line of the command's output.
pub fn parse_answer(output: &str) -> Result<Decision, AnswerError> {
    let line = output.lines().next().unwrap_or_default().trim();
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    match word {
        "" => Err(AnswerError::Empty),
        "apply" => Ok(Decision::Apply),
        "ignore" => Ok(Decision::Ignore(rest.to_owned())),
        "reschedule" => {
            let (secs, why) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let secs: u64 = secs
                .parse()
                .map_err(|_| AnswerError::Seconds(secs.to_owned()))?;
            let after = Duration::from_secs(secs).min(MAX_RESCHEDULE);
            Ok(Decision::Reschedule(after, why.trim().to_owned()))
        }
        other => Err(AnswerError::Unknown(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse() {
        assert_eq!(parse_answer("apply\n"), Ok(Decision::Apply));
        assert_eq!(
            parse_answer("ignore pinned by the operator\nmore"),
            Ok(Decision::Ignore("pinned by the operator".into()))
        );
        assert_eq!(parse_answer("ignore"), Ok(Decision::Ignore(String::new())));
        assert_eq!(
            parse_answer("reschedule 600 outside the maintenance window"),
            Ok(Decision::Reschedule(
                Duration::from_secs(600),
                "outside the maintenance window".into()
            ))
        );
        assert_eq!(
            parse_answer("reschedule 9999999"),
            Ok(Decision::Reschedule(MAX_RESCHEDULE, String::new()))
        );
    }

    #[test]
    fn bad_answers_name_what_is_wrong() {
        assert_eq!(parse_answer(""), Err(AnswerError::Empty));
        assert_eq!(parse_answer("  \n"), Err(AnswerError::Empty));
        assert_eq!(
            parse_answer("later"),
            Err(AnswerError::Unknown("later".into()))
        );
        assert_eq!(
            parse_answer("reschedule soon"),
            Err(AnswerError::Seconds("soon".into()))
        );
        assert_eq!(
            parse_answer("reschedule"),
            Err(AnswerError::Seconds(String::new()))
        );
        assert_eq!(
            parse_answer("reschedule -5"),
            Err(AnswerError::Seconds("-5".into()))
        );
    }
}
