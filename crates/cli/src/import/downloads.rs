//! `roster import template` and `roster import report`: a server stream of file chunks written
//! to standard output, a file (`-o`), or under `--json` one message holding the whole file.
//! The two differ only in their request and the message their stream brings ([`Chunk`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use roster_proto::imports::v1 as pb;

use super::Client;
use crate::client::Streaming;
use crate::output;

/// A file `roster import` downloads.
pub(super) enum File {
    /// The account's CSV template (its current profiles).
    Template { account_id: String },
    /// An import's per-row report.
    Report { import_id: String },
}

impl File {
    /// The file's name in messages.
    fn name(&self) -> &'static str {
        match self {
            File::Template { .. } => "template",
            File::Report { .. } => "report",
        }
    }
}

/// A message of a download's stream: a piece of the file. Under `--json` without `-o` one such
/// message holds the whole file.
trait Chunk: prost::Message + prost::Name + Sized {
    fn into_bytes(self) -> Vec<u8>;
    fn from_bytes(chunk: Vec<u8>) -> Self;
}

impl Chunk for pb::DownloadTemplateResponse {
    fn into_bytes(self) -> Vec<u8> {
        self.chunk
    }
    fn from_bytes(chunk: Vec<u8>) -> Self {
        Self { chunk }
    }
}

impl Chunk for pb::DownloadReportResponse {
    fn into_bytes(self) -> Vec<u8> {
        self.chunk
    }
    fn from_bytes(chunk: Vec<u8>) -> Self {
        Self { chunk }
    }
}

const DOWNLOAD_TEMPLATE: &str = "roster.imports.v1.ImportService/DownloadTemplate";
const DOWNLOAD_REPORT: &str = "roster.imports.v1.ImportService/DownloadReport";

impl Client<'_> {
    /// Downloads `file` to `output` (see [`Sink`]), which is opened once the stream is.
    pub(super) async fn download(self, file: File, output: Option<PathBuf>) -> anyhow::Result<()> {
        let mut imports = self.imports.clone();
        let what = file.name();
        match file {
            File::Template { account_id } => {
                let request = pb::DownloadTemplateRequest { account_id };
                let send = async |request| imports.download_template(request).await;
                let stream = self.connection.stream(DOWNLOAD_TEMPLATE, request, send);
                self.save(what, stream.await?, output).await
            }
            File::Report { import_id } => {
                let request = pb::DownloadReportRequest { import_id };
                let send = async |request| imports.download_report(request).await;
                let stream = self.connection.stream(DOWNLOAD_REPORT, request, send);
                self.save(what, stream.await?, output).await
            }
        }
    }

    /// Writes the file of `what` that `stream` brings to `output` (see [`Sink`]).
    async fn save<M: Chunk>(
        &self,
        what: &str,
        mut stream: Streaming<M>,
        output: Option<PathBuf>,
    ) -> anyhow::Result<()> {
        let mut sink = Sink::open(output.as_deref(), self.connection.json())?;
        while let Some(piece) = stream.message().await? {
            sink.write(&piece.into_bytes())?;
        }
        sink.done::<M>(what)
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

    /// Ends the download of `what`; held bytes are printed as one message `M`.
    fn done<M: Chunk>(self, what: &str) -> anyhow::Result<()> {
        match self {
            Sink::Stdout(mut out) => out.flush().map_err(output::stdout_error)?,
            Sink::File(path, file) => {
                file.sync_all()?;
                eprintln!("{what} written to {}", path.display());
            }
            Sink::Message(held) => output::print_message(&M::from_bytes(held))?,
        }
        Ok(())
    }
}
