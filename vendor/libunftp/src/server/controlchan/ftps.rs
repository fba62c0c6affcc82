use async_trait::async_trait;

use crate::{
    auth::UserDetail,
    server::{
        Command, ControlChanErrorKind, Event, Reply, ReplyCode,
        controlchan::commands::ProtParam,
        controlchan::error::ControlChanError,
        controlchan::middleware::ControlChanMiddleware,
        ftpserver::options::{FtpsRequired, FtpsRequiredFor},
        session::{SessionState, SharedSession},
    },
    storage::{Metadata, StorageBackend},
};

// Middleware that enforces FTPS on the control channel according to the specified setting/requirement.
pub struct FtpsControlChanEnforcerMiddleware<Storage, User, Next>
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    Next: ControlChanMiddleware,
{
    pub session: SharedSession<Storage, User>,
    pub ftps_requirement: FtpsRequired,
    pub required_for: Option<FtpsRequiredFor>,
    pub next: Next,
}

#[async_trait]
impl<Storage, User, Next> ControlChanMiddleware for FtpsControlChanEnforcerMiddleware<Storage, User, Next>
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    Next: ControlChanMiddleware,
{
    async fn handle(&mut self, event: Event) -> Result<Reply, ControlChanError> {
        // smsdrop: the logins that must use TLS: refused at USER on a plain
        // control channel (before the client sends its password in clear),
        // and they cannot go back to plain text (CCC).
        if let Some(required_for) = &self.required_for {
            let (cmd_tls, username) = {
                let session = self.session.lock().await;
                (session.cmd_tls, session.username.clone())
            };
            match &event {
                Event::Command(Command::User { username }) if !cmd_tls => {
                    if required_for.requires(&String::from_utf8_lossy(username)) {
                        return Ok(Reply::new(ReplyCode::NotLoggedIn, "TLS is required: send AUTH TLS before USER"));
                    }
                }
                Event::Command(Command::Pass { .. }) if !cmd_tls && username.as_deref().is_some_and(|u| required_for.requires(u)) => {
                    return Ok(Reply::new(ReplyCode::NotLoggedIn, "TLS is required: send AUTH TLS before USER"));
                }
                Event::Command(Command::Ccc) if username.as_deref().is_some_and(|u| required_for.requires(u)) => {
                    return Ok(Reply::new(ReplyCode::FtpsRequired, "Cannot downgrade connection, TLS enforced."));
                }
                _ => {}
            }
        }
        match (self.ftps_requirement, event) {
            (FtpsRequired::None, event) => self.next.handle(event).await,
            (FtpsRequired::All, event) => match event {
                Event::Command(Command::Ccc) => Ok(Reply::new(ReplyCode::FtpsRequired, "Cannot downgrade connection, TLS enforced.")),
                Event::Command(Command::User { .. }) | Event::Command(Command::Pass { .. }) => {
                    let is_tls = async {
                        let session = self.session.lock().await;
                        session.cmd_tls
                    }
                    .await;
                    match is_tls {
                        true => self.next.handle(event).await,
                        false => Ok(Reply::new(ReplyCode::FtpsRequired, "A TLS connection is required on the control channel")),
                    }
                }
                _ => self.next.handle(event).await,
            },
            (FtpsRequired::Accounts, event) => {
                let (is_tls, username) = async {
                    let session = self.session.lock().await;
                    (session.cmd_tls, session.username.clone())
                }
                .await;
                match (is_tls, event) {
                    (true, event) => self.next.handle(event).await,
                    (false, Event::Command(Command::User { username })) => {
                        if is_anonymous_user(&username[..])? {
                            self.next.handle(Event::Command(Command::User { username })).await
                        } else {
                            Ok(Reply::new(ReplyCode::FtpsRequired, "A TLS connection is required on the control channel"))
                        }
                    }
                    (false, Event::Command(Command::Pass { password })) => {
                        match username {
                            None => {
                                // Should not happen, username should have already been provided.
                                Err(ControlChanError::new(ControlChanErrorKind::IllegalState))
                            }
                            Some(username) => {
                                if is_anonymous_user(username)? {
                                    self.next.handle(Event::Command(Command::Pass { password })).await
                                } else {
                                    Ok(Reply::new(ReplyCode::FtpsRequired, "A TLS connection is required on the control channel"))
                                }
                            }
                        }
                    }
                    (false, event) => self.next.handle(event).await,
                }
            }
        }
    }
}

// Middleware that enforces FTPS on the data channel according to the specified setting/requirement.
pub struct FtpsDataChanEnforcerMiddleware<Storage, User, Next>
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    Next: ControlChanMiddleware,
{
    pub session: SharedSession<Storage, User>,
    pub ftps_requirement: FtpsRequired,
    pub required_for: Option<FtpsRequiredFor>,
    pub next: Next,
}

#[async_trait]
impl<Storage, User, Next> ControlChanMiddleware for FtpsDataChanEnforcerMiddleware<Storage, User, Next>
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
    Next: ControlChanMiddleware,
{
    async fn handle(&mut self, event: Event) -> Result<Reply, ControlChanError> {
        // smsdrop: a logged-in account that must use TLS transfers over
        // protected data connections only. Checked at the transfer, not at
        // PASV: a client may change PROT between the two.
        if let Some(required_for) = &self.required_for {
            let (logged_in, data_tls, username) = {
                let session = self.session.lock().await;
                (session.state == SessionState::WaitCmd, session.data_tls, session.username.clone())
            };
            if logged_in && username.as_deref().is_some_and(|u| required_for.requires(u)) {
                match &event {
                    Event::Command(Command::Prot { param }) if *param != ProtParam::Private => {
                        return Ok(Reply::new(ReplyCode::FtpsRequired, "Data connections must be protected: use PROT P"));
                    }
                    Event::Command(
                        Command::Retr { .. }
                        | Command::Stor { .. }
                        | Command::Stou
                        | Command::Appe { .. }
                        | Command::List { .. }
                        | Command::Nlst { .. }
                        | Command::Mlsd { .. },
                    ) if !data_tls => {
                        return Ok(Reply::new(ReplyCode::DataProtectionRequired, "Data connections must be protected: send PBSZ 0 and PROT P"));
                    }
                    _ => {}
                }
            }
        }
        match (self.ftps_requirement, event) {
            (FtpsRequired::None, event) => self.next.handle(event).await,
            (FtpsRequired::All, event) => match event {
                Event::Command(Command::Pasv) => {
                    let is_tls = async {
                        let session = self.session.lock().await;
                        session.data_tls
                    }
                    .await;
                    match is_tls {
                        true => self.next.handle(event).await,
                        false => Ok(Reply::new(ReplyCode::FtpsRequired, "A TLS connection is required on the data channel")),
                    }
                }
                _ => self.next.handle(event).await,
            },
            (FtpsRequired::Accounts, event) => match event {
                Event::Command(Command::Pasv) => {
                    let (is_tls, username_opt) = async {
                        let session = self.session.lock().await;
                        (session.cmd_tls, session.username.clone())
                    }
                    .await;

                    let username: String = username_opt.ok_or_else(|| ControlChanError::new(ControlChanErrorKind::IllegalState))?;
                    let is_anonymous = is_anonymous_user(username)?;
                    match (is_tls, is_anonymous) {
                        (true, _) | (false, true) => self.next.handle(event).await,
                        _ => Ok(Reply::new(ReplyCode::FtpsRequired, "A TLS connection is required on the data channel")),
                    }
                }
                _ => self.next.handle(event).await,
            },
        }
    }
}

fn is_anonymous_user(username: impl AsRef<[u8]>) -> Result<bool, std::str::Utf8Error> {
    let username_str = std::str::from_utf8(username.as_ref())?;
    Ok(username_str == "anonymous")
}
