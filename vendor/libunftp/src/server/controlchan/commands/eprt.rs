//! smsdrop: the RFC 2428 Extended Data Port (`EPRT`) command: active mode for
//! IPv4 and IPv6, `EPRT |1|192.0.2.7|6275|` or `EPRT |2|2001:db8::7|6275|`.
//! The same rules as `PORT` (`port::connect_to_client`): the client's own
//! address only, ports of 1024 and above. An unspecified address (`::`,
//! `0.0.0.0`, as lftp sends on loopback) means the client's own.

use crate::{
    auth::UserDetail,
    server::{
        controlchan::{
            Reply, ReplyCode,
            error::ControlChanError,
            handler::{CommandContext, CommandHandler},
        },
        datachan,
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug)]
pub struct Eprt {
    addr: String,
}

impl Eprt {
    pub fn new(addr: String) -> Self {
        Eprt { addr }
    }
}

/// `|proto|address|port|` (any delimiter in 33..=126, as RFC 2428 allows).
fn parse(arg: &str) -> Option<(u8, IpAddr, u16)> {
    let delimiter = arg.chars().next().filter(|c| (33..=126).contains(&(*c as u32)))?;
    let mut parts = arg.split(delimiter);
    let (Some(""), Some(proto), Some(addr), Some(port), Some(""), None) = (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let proto: u8 = proto.parse().ok()?;
    let addr: IpAddr = addr.parse().ok()?;
    match (proto, addr) {
        (1, IpAddr::V4(_)) | (2, IpAddr::V6(_)) => Some((proto, addr, port.parse().ok()?)),
        _ => None,
    }
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Eprt
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        let CommandContext {
            logger,
            tx_control_chan: tx,
            session,
            ..
        } = args;
        let Some((_, ip, port)) = parse(self.addr.trim()) else {
            return Ok(Reply::new(ReplyCode::ParameterSyntaxError, "EPRT |1|address|port| or |2|address|port|"));
        };
        let ip = if ip.is_unspecified() { session.lock().await.source.ip() } else { ip };
        let stream = match super::port::connect_to_client(&logger, &session, SocketAddr::new(ip, port)).await {
            Ok(stream) => stream,
            Err(reply) => return Ok(reply),
        };
        super::passive_common::setup_inter_loop_comms(session.clone(), tx).await;
        datachan::spawn_processing(logger, session, stream).await;
        Ok(Reply::new(ReplyCode::CommandOkay, "EPRT command successful"))
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn eprt_arguments() {
        assert_eq!(parse("|1|132.235.1.2|6275|"), Some((1, "132.235.1.2".parse().unwrap(), 6275)));
        assert_eq!(parse("|2|1080::8:800:200C:417A|5282|"), Some((2, "1080::8:800:200C:417A".parse().unwrap(), 5282)));
        assert_eq!(parse("!2!::!5282!"), Some((2, "::".parse().unwrap(), 5282)));
        for bad in ["", "|1|::1|5282|", "|2|1.2.3.4|1|", "|1|1.2.3.4|70000|", "|1|1.2.3.4|1", "|3|1.2.3.4|1|"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
