//! Contains shared code for the PASV and EPSV commands.

use crate::{
    auth::UserDetail,
    server::{
        ControlChanErrorKind, ControlChanMsg,
        chancomms::{DataChanCmd, PortAllocationError, SwitchboardMessage, SwitchboardSender},
        controlchan::{Reply, ReplyCode, error::ControlChanError, handler::CommandContext},
        datachan,
        session::SharedSession,
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;
use std::{fmt::Debug, io, net::SocketAddr, ops::RangeInclusive, time::Duration};
use tokio::net::TcpSocket;
use tokio::sync::{
    mpsc::{Receiver, Sender, channel},
    oneshot,
};

/// How long a passive port waits for the client to connect.
const PASSIVE_ACCEPT_TIMEOUT: Duration = Duration::from_secs(15);

/// smsdrop: whether a data connection's address is the control connection's
/// (an IPv4 client may appear as an IPv4-mapped IPv6 address on one of them).
pub(crate) fn same_host(a: std::net::IpAddr, b: std::net::IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// smsdrop: closes the session's passive port, if one is still waiting, and
/// remembers `next` as the one now waiting.
pub(crate) async fn replace_passive_listener<S, U>(session: &SharedSession<S, U>, next: Option<tokio::task::AbortHandle>)
where
    U: UserDetail + 'static,
    S: StorageBackend<U> + 'static,
    S::Metadata: Metadata,
{
    let previous = std::mem::replace(&mut session.lock().await.passive_listener, next);
    if let Some(previous) = previous {
        previous.abort();
    }
}

#[async_trait]
pub(crate) trait LegacyReplyProducer<Storage, User>: Send + Sync + Debug
where
    Storage: StorageBackend<User> + 'static,
    User: UserDetail + 'static,
{
    async fn build_reply(&self, args: &CommandContext<Storage, User>, port: u16) -> Result<Reply, ControlChanError>;
}

// smsdrop: every port of the range is tried, from a random one on, instead
// of 9 random picks: with ports of the range taken (other sessions' listeners,
// or outgoing connections whose ephemeral ports fall in it), the picks could
// all miss while free ports were left (PASV answered 425; 1 upload in ~400
// on a quiet server in tools/siege.py).
#[tracing_attributes::instrument]
pub(crate) fn try_port_range(local_addr: SocketAddr, passive_ports: RangeInclusive<u16>) -> io::Result<TcpSocket> {
    let ip = local_addr.ip();
    let rng_length = u32::from(passive_ports.end() - passive_ports.start()) + 1;
    let first = {
        let mut data = [0; 4];
        getrandom::fill(&mut data).expect("Error generating random port");
        u32::from_ne_bytes(data) % rng_length
    };
    let mut last_error = io::Error::new(io::ErrorKind::AddrInUse, "no free port in the passive range");
    for offset in 0..rng_length {
        let port = (first + offset) % rng_length + u32::from(*passive_ports.start());
        let s = match ip {
            std::net::IpAddr::V4(_) => TcpSocket::new_v4()?,
            std::net::IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        s.set_reuseaddr(true)?;
        match s.bind(std::net::SocketAddr::new(ip, port as u16)) {
            Ok(()) => return Ok(s),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

// modifies the session by adding channels that are used to communicate with the data connection
// processing loop.
#[tracing_attributes::instrument]
pub(crate) async fn setup_inter_loop_comms<S, U>(session: SharedSession<S, U>, control_loop_tx: Sender<ControlChanMsg>)
where
    U: UserDetail + 'static,
    S: StorageBackend<U> + 'static,
    S::Metadata: Metadata,
{
    let (cmd_tx, cmd_rx): (Sender<DataChanCmd>, Receiver<DataChanCmd>) = channel(1);
    let (data_abort_tx, data_abort_rx): (Sender<()>, Receiver<()>) = channel(1);

    let mut session = session.lock().await;
    session.data_cmd_tx = Some(cmd_tx);
    session.data_cmd_rx = Some(cmd_rx);
    session.data_abort_tx = Some(data_abort_tx);
    session.data_abort_rx = Some(data_abort_rx);
    session.control_msg_tx = Some(control_loop_tx);
}

// For legacy mode we choose a data port here and start listening on it while letting the control
// channel know (via method return) what the address is that the client should connect to.
#[tracing_attributes::instrument]
pub(crate) async fn handle_legacy_mode<S, U, T>(cmd: &T, args: CommandContext<S, U>) -> Result<Reply, ControlChanError>
where
    U: UserDetail + 'static,
    S: StorageBackend<U> + 'static,
    S::Metadata: Metadata,
    T: LegacyReplyProducer<S, U>,
{
    // smsdrop: one passive port per session: an earlier one still waiting is
    // closed before another is taken.
    replace_passive_listener(&args.session, None).await;
    let listener = match args.session.lock().await.binder {
        Some(ref mut binder) => binder.bind(args.local_addr.ip(), args.passive_ports.clone()).await,
        _ => try_port_range(args.local_addr, args.passive_ports.clone()),
    };
    let listener = match listener {
        Err(_) => return Ok(Reply::new(ReplyCode::CantOpenDataConnection, "No data connection established")),
        Ok(l) => l,
    };
    let listener = listener.listen(1024)?;

    let port = listener.local_addr()?.port();

    let reply = cmd.build_reply(&args, port).await?;
    if reply.is_positive() {
        setup_inter_loop_comms(args.session.clone(), args.tx_control_chan.clone()).await;
        let control_ip = args.session.lock().await.source.ip();
        let session = args.session.clone();
        // Open the data connection in a new task and process it.
        // We cannot await this since we first need to let the client know where to connect :-)
        let waiting = tokio::spawn(async move {
            // smsdrop: connections from another address than the control
            // connection's are dropped and the port keeps waiting for the
            // client: a sweep of the passive range can no longer take (and
            // fail) another customer's transfer.
            let accept_client = async {
                loop {
                    match listener.accept().await {
                        Ok((socket, peer)) if same_host(peer.ip(), control_ip) => return Ok(socket),
                        Ok((_, peer)) => slog::info!(args.logger, "Dropped a data connection from {} (the control connection is from {})", peer.ip(), control_ip),
                        Err(e) => return Err(e),
                    }
                }
            };
            // Timeout if the client doesn't connect to the socket in a while, to avoid leaving the socket hanging open permanently.
            let r = tokio::time::timeout(PASSIVE_ACCEPT_TIMEOUT, accept_client).await;
            match r {
                Ok(Ok(socket)) => datachan::spawn_processing(args.logger, args.session, socket).await,
                Ok(Err(e)) => slog::error!(args.logger, "Error waiting for data connection: {}", e),
                Err(_) => slog::warn!(args.logger, "Client did not connect to data port in time"),
            }
        });
        replace_passive_listener(&session, Some(waiting.abort_handle())).await;
    }

    Ok(reply)
}

// For delegated mode, we prepare the session and let the listener loop know (via channel) that it
// should choose a data port and check for connections on it.
#[tracing_attributes::instrument]
pub(crate) async fn handle_delegated_mode<S, U>(args: CommandContext<S, U>, tx: SwitchboardSender<S, U>) -> Result<Reply, ControlChanError>
where
    U: UserDetail + 'static,
    S: StorageBackend<U> + 'static,
    S::Metadata: Metadata,
{
    setup_inter_loop_comms(args.session.clone(), args.tx_control_chan).await;

    let (oneshot_tx, oneshot_rx) = oneshot::channel::<Result<Reply, PortAllocationError>>();

    tx.send(SwitchboardMessage::AssignDataPortCommand(args.session.clone(), oneshot_tx))
        .await
        .map_err(|_| ControlChanErrorKind::InternalServerError)?;

    match oneshot_rx.await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(_)) => Ok(Reply::new(ReplyCode::CantOpenDataConnection, "Could not allocate passive port")),
        Err(_) => Ok(Reply::new(ReplyCode::CantOpenDataConnection, "Internal error: Channel closed")),
    }
}

#[cfg(test)]
mod tests {
    use super::try_port_range;

    // smsdrop: the one free port of a range is found, whichever it is.
    #[test]
    fn the_free_port_of_a_busy_range_is_found() {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = first.local_addr().unwrap().port();
        drop(first);
        let Some(end) = base.checked_add(15) else { return };
        let mut held = Vec::new();
        for port in base..=end {
            if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                held.push(l);
            }
        }
        if held.len() < 2 {
            return; // the machine's ports are too busy for this test
        }
        let free = held.remove(held.len() / 2).local_addr().unwrap();
        for _ in 0..20 {
            let socket = try_port_range(free, base..=end).expect("the free port");
            assert_eq!(socket.local_addr().unwrap(), free);
        }
    }
}
