//! Making a fleet safe on a real network: password hashes (mosquitto's
//! format, shared by the broker, the embedded broker and the dashboard),
//! certificates, and `viewer broker-config`. docs/security.md tells the
//! threat model and the set-up.

pub mod broker_config;
pub mod certs;
pub mod passwd;
