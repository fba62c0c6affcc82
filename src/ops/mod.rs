//! What operators talk to: the HTTP listener with `/metrics` and `/healthz`
//! ([`http`]), and systemd ([`systemd`]: notifications, socket activation).

pub mod http;
pub mod systemd;
