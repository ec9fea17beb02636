//! `roster import template` and `roster import report`: a server stream of file chunks written
//! to standard output, a file (`-o`), or under `--json` one message holding the whole file.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use roster_proto::imports::v1 as pb;

use super::Client;
use crate::client::Streaming;
use crate::output;

impl Client<'_> {
    pub(super) async fn template(
        self,
        account_id: String,
        output: Option<PathBuf>,
    ) -> anyhow::Result<()> {
        let mut imports = self.imports.clone();
        let stream = self
            .connection
            .stream(
                "roster.imports.v1.ImportService/DownloadTemplate",
                pb::DownloadTemplateRequest { account_id },
                async |request| imports.download_template(request).await,
            )
            .await?;
        self.save(
            stream,
            output,
            "template",
            |piece| piece.chunk,
            |chunk| pb::DownloadTemplateResponse { chunk },
        )
        .await
    }

    pub(super) async fn report(
        self,
        import_id: String,
        output: Option<PathBuf>,
    ) -> anyhow::Result<()> {
        let mut imports = self.imports.clone();
        let stream = self
            .connection
            .stream(
                "roster.imports.v1.ImportService/DownloadReport",
                pb::DownloadReportRequest { import_id },
                async |request| imports.download_report(request).await,
            )
            .await?;
        self.save(
            stream,
            output,
            "report",
            |piece| piece.chunk,
            |chunk| pb::DownloadReportResponse { chunk },
        )
        .await
    }

    /// Writes the file of `what` that `stream` brings to `output` (see [`Sink`]): `chunk` takes
    /// a message's bytes, `message` makes the one message printed under `--json`.
    async fn save<M: prost::Message + prost::Name>(
        &self,
        mut stream: Streaming<M>,
        output: Option<PathBuf>,
        what: &str,
        chunk: impl Fn(M) -> Vec<u8>,
        message: impl FnOnce(Vec<u8>) -> M,
    ) -> anyhow::Result<()> {
        let mut sink = Sink::open(output.as_deref(), self.connection.json())?;
        while let Some(piece) = stream.message().await? {
            sink.write(&chunk(piece))?;
        }
        sink.done(what, message)
    }
}

/// Standard output, a file, or (under `--json` without a file) the bytes held for one message.
enum Sink {
    Stdout(std::io::Stdout),
    File(PathBuf, std::fs::File),
    Message(Vec<u8>),
}

impl Sink {
    fn open(path: Option<&Path>, json: bool) -> anyhow::Result<Sink> {
        Ok(match path {
            None if json => Sink::Message(Vec::new()),
            None => Sink::Stdout(std::io::stdout()),
            Some(path) => Sink::File(
                path.to_owned(),
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            ),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        match self {
            Sink::Stdout(out) => out.write_all(bytes).map_err(output::stdout_error)?,
            Sink::File(_, file) => file.write_all(bytes)?,
            Sink::Message(held) => held.extend_from_slice(bytes),
        }
        Ok(())
    }

    /// Ends the download of `what`; held bytes are printed as the message `message` makes.
    fn done<M: prost::Message + prost::Name>(
        self,
        what: &str,
        message: impl FnOnce(Vec<u8>) -> M,
    ) -> anyhow::Result<()> {
        match self {
            Sink::Stdout(mut out) => out.flush().map_err(output::stdout_error)?,
            Sink::File(path, file) => {
                file.sync_all()?;
                eprintln!("{what} written to {}", path.display());
            }
            Sink::Message(held) => output::print_message(&message(held))?,
        }
        Ok(())
    }
}
