//! smsdrop: `MFMT YYYYMMDDHHMMSS path` (draft-somers-ftp-mfxx), which rclone
//! and WinSCP send after an upload to set the file's time. smsdrop keeps the
//! upload time (it orders archives), so this answers as if the time was set,
//! for a file that exists: `213 Modify=<time>; <path>`.

use crate::{
    auth::UserDetail,
    server::{
        chancomms::ControlChanMsg,
        controlchan::{
            Reply, ReplyCode,
            error::ControlChanError,
            handler::{CommandContext, CommandHandler},
        },
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;
use std::{path::PathBuf, sync::Arc};

#[derive(Debug)]
pub struct Mfmt {
    time: String,
    file: PathBuf,
}

impl Mfmt {
    pub fn new(time: String, file: PathBuf) -> Self {
        Mfmt { time, file }
    }
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Mfmt
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        if !self.time.bytes().take(14).all(|b| b.is_ascii_digit()) {
            return Ok(Reply::new(ReplyCode::ParameterSyntaxError, "MFMT YYYYMMDDHHMMSS path"));
        }
        let session = args.session.lock().await;
        let user = session.user.clone();
        let storage = Arc::clone(&session.storage);
        let path = session.cwd.join(&self.file);
        drop(session);
        let tx = args.tx_control_chan.clone();
        let reply = format!("Modify={}; {}", self.time, self.file.display());
        let logger = args.logger;
        tokio::spawn(async move {
            let msg = match storage.metadata((*user).as_ref().unwrap(), &path).await {
                Ok(_) => ControlChanMsg::CommandChannelReply(Reply::new_with_string(ReplyCode::FileStatus, reply)),
                Err(err) => ControlChanMsg::StorageError(err),
            };
            if let Err(err) = tx.send(msg).await {
                slog::warn!(logger, "MFMT: Could not send internal message: {}", err);
            }
        });
        Ok(Reply::none())
    }
}
