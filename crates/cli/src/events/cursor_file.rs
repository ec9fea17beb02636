//! The file `roster events watch --cursor-file` keeps its position in: one sequence number and
//! a line break. It is replaced whole (a temporary file beside it, renamed over it), so a watch
//! killed at any moment leaves either the old position or the new one, never a torn file.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::args::parse_sequence;

/// The position saved in `path`, or `None` when there is no such file yet.
pub async fn load(path: &Path) -> anyhow::Result<Option<i64>> {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(error).with_context(|| format!("reading --cursor-file {}", path.display()));
        }
    };
    parse_sequence(text.trim())
        .map(Some)
        .map_err(|error| anyhow::anyhow!("--cursor-file {}: {error}", path.display()))
}

/// Saves `sequence` in `path`, replacing what it held at once.
pub async fn save(path: &Path, sequence: i64) -> anyhow::Result<()> {
    let temporary = temporary_beside(path);
    let written = async {
        tokio::fs::write(&temporary, format!("{sequence}\n")).await?;
        tokio::fs::rename(&temporary, path).await
    };
    if let Err(error) = written.await {
        let _ = tokio::fs::remove_file(&temporary).await;
        return Err(error).with_context(|| format!("saving --cursor-file {}", path.display()));
    }
    Ok(())
}

/// A name in `path`'s directory that no other process writing the same file uses.
fn temporary_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_saved_position_reads_back_and_replaces_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.cursor");
        assert_eq!(load(&path).await.unwrap(), None);
        save(&path, 41).await.unwrap();
        save(&path, 42).await.unwrap();
        assert_eq!(load(&path).await.unwrap(), Some(42));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "42\n");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");

        std::fs::write(&path, "yesterday\n").unwrap();
        let error = load(&path).await.unwrap_err().to_string();
        assert!(
            error.contains("--cursor-file") && error.contains("yesterday"),
            "{error}"
        );
    }
}
