//! What operators talk to: the HTTP listener with `/metrics` and `/healthz`
//! ([`http`]).

pub mod http;
