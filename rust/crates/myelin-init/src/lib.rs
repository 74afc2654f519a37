//! Myelin-init: PID 1 with OTP-style supervision.
