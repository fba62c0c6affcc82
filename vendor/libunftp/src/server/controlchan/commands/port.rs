//! The RFC 959 Data Port (`PORT`) command
//
// The argument is a HOST-PORT specification for the data port
// to be used in data connection.  There are defaults for both
// the user and server data ports, and under normal
// circumstances this command and its reply are not needed.  If
// this command is used, the argument is the concatenation of a
// 32-bit internet host address and a 16-bit TCP port address.
// This address information is broken into 8-bit fields and the
// value of each field is transmitted as a decimal number (in
// character string representation).  The fields are separated
// by commas.  A port command would be:
//
// PORT h1,h2,h3,h4,p1,p2
//
// where h1 is the high order 8 bits of the internet host
// address.

use crate::{
    auth::UserDetail,
    server::{
        ControlChanMsg,
        chancomms::DataChanCmd,
        controlchan::{
            Reply, ReplyCode,
            error::ControlChanError,
            handler::{CommandContext, CommandHandler},
        },
        datachan,
        session::SharedSession,
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc::{Receiver, Sender, channel};

#[derive(Debug)]
pub struct Port {
    addr: String,
}

impl Port {
    pub fn new(addr: String) -> Self {
        Port { addr }
    }

    // modifies the session by adding channels that are used to communicate with the data connection
    // processing loop.
    #[tracing_attributes::instrument]
    async fn setup_inter_loop_comms<S, U>(&self, session: SharedSession<S, U>, control_loop_tx: Sender<ControlChanMsg>)
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
}

/// smsdrop: how long an active-mode connect may take (a black-holed address
/// held the session for the kernel's 2 minutes and more).
pub(crate) const ACTIVE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// smsdrop: the active-mode data connection, to the client's own address
/// only and to a port of 1024 or above, checked before anything is sent: no
/// FTP bounce, no port scan through the server (a refusal before the connect
/// says nothing about the port). Shared by PORT and EPRT.
pub(crate) async fn connect_to_client<S, U>(logger: &slog::Logger, session: &SharedSession<S, U>, addr: SocketAddr) -> Result<TcpStream, Reply>
where
    U: UserDetail + 'static,
    S: StorageBackend<U> + 'static,
    S::Metadata: Metadata,
{
    let control_ip = session.lock().await.source.ip();
    if !super::passive_common::same_host(addr.ip(), control_ip) || addr.port() < 1024 {
        slog::warn!(logger, "Refused an active data connection to {} (control connection from {})", addr, control_ip);
        return Err(Reply::new(
            ReplyCode::CommandNotImplementedForParameter,
            "Data connections only to your own address and to ports 1024 and above",
        ));
    }
    // One data connection at a time: a passive port still waiting closes.
    super::passive_common::replace_passive_listener(session, None).await;
    match tokio::time::timeout(ACTIVE_CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => {
            slog::info!(logger, "Could not connect to client for active mode: {}", e);
            Err(Reply::new(ReplyCode::CantOpenDataConnection, "Could not establish data connection"))
        }
        Err(_) => {
            slog::info!(logger, "Could not connect to client for active mode within {:?}", ACTIVE_CONNECT_TIMEOUT);
            Err(Reply::new(ReplyCode::CantOpenDataConnection, "Could not establish data connection"))
        }
    }
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Port
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

        let bytes: Vec<u8> = self.addr.split(',').map(|x| x.parse::<u8>()).filter_map(Result::ok).collect();
        if bytes.len() != 6 {
            return Ok(Reply::new(ReplyCode::ParameterSyntaxError, "Invalid address format"));
        }
        let port = ((bytes[4] as u16) << 8) | bytes[5] as u16;
        let addr = SocketAddrV4::new(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]), port);

        let stream = match connect_to_client(&logger, &session, addr.into()).await {
            Ok(stream) => stream,
            Err(reply) => return Ok(reply),
        };

        self.setup_inter_loop_comms(session.clone(), tx).await;
        datachan::spawn_processing(logger, session, stream).await;

        Ok(Reply::new(ReplyCode::CommandOkay, "PORT command successful"))
    }
}
