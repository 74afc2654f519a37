//! A reading: what the sensor said, checked before anything else sees it.

use serde::Serialize;

/// One accepted temperature reading, as published and shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reading {
    /// Counts this process's accepted readings from 1: a gap on the broker is a lost reading.
    pub seq: u64,
    /// Degrees Celsius.
    pub celsius: f32,
    /// When it was taken, milliseconds since the Unix epoch.
    pub time_ms: u64,
}

impl Reading {
    /// The MQTT payload: one JSON object.
    pub fn to_json(&self) -> String {
        // Serialising three numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why a value from the sensor is not a reading.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejected {
    /// Not a number at all.
    #[error("sensor value {0} is not a number")]
    NotANumber(f32),
    /// Outside what the sensor can measure or the product accepts.
    #[error("sensor value {value} °C is outside {min}..={max} °C")]
    OutOfRange {
        /// The value.
        value: f32,
        /// The lowest accepted.
        min: f32,
        /// The highest accepted.
        max: f32,
    },
}

/// Accepts `value` if it is a temperature within `min..=max`.
///
/// A TMP102's register holds -128..128 °C, more than the part measures (-40..125 °C specified):
/// a value outside the range is a broken part, a wrong address answering, or a bus glitch.
pub fn check(value: f32, min: f32, max: f32) -> Result<f32, Rejected> {
    if !value.is_finite() {
        return Err(Rejected::NotANumber(value));
    }
    if value < min || value > max {
        return Err(Rejected::OutOfRange { value, min, max });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_range_inclusive() {
        assert_eq!(check(23.5, -40.0, 125.0), Ok(23.5));
        assert_eq!(check(-40.0, -40.0, 125.0), Ok(-40.0));
        assert_eq!(check(125.0, -40.0, 125.0), Ok(125.0));
    }

    #[test]
    fn rejects_what_no_sensor_measured() {
        // 0x7FF: the TMP102 register's maximum, 127.9375 °C.
        assert!(matches!(
            check(127.9375, -40.0, 125.0),
            Err(Rejected::OutOfRange { .. })
        ));
        assert!(matches!(
            check(-128.0, -40.0, 125.0),
            Err(Rejected::OutOfRange { .. })
        ));
        assert!(matches!(
            check(f32::NAN, -40.0, 125.0),
            Err(Rejected::NotANumber(_))
        ));
        assert!(
            check(f32::INFINITY, -40.0, 125.0)
                .unwrap_err()
                .to_string()
                .contains("not a number")
        );
        assert_eq!(
            check(130.0, -40.0, 125.0).unwrap_err().to_string(),
            "sensor value 130 °C is outside -40..=125 °C"
        );
    }

    #[test]
    fn payload_is_json() {
        let r = Reading {
            seq: 7,
            celsius: 23.5,
            time_ms: 1_700_000_000_000,
        };
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["celsius"], 23.5);
        assert_eq!(v["time_ms"], 1_700_000_000_000u64);
    }
}
