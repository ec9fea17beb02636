//! The use cases on an import's staged rows: listing them page by page, and the per-row report
//! (which is read a page at a time while it streams).

use roster_runtime::Caller;

use super::{ImportApp, ImportError};
use crate::domain::import::{Import, ImportId, StagedRow};
use crate::domain::state::RowAction;

/// A page of an import's rows.
pub struct RowPage {
    pub rows: Vec<StagedRow>,
    /// The last row number of the page when more follow.
    pub next_after: Option<i64>,
}

impl ImportApp {
    /// A page of an import's rows in file order after row `after`, only those with `action`
    /// when given; once validation staged them all.
    pub async fn list_rows(
        &self,
        caller: &Caller,
        id: ImportId,
        action: Option<RowAction>,
        after: i64,
        limit: u64,
    ) -> Result<RowPage, ImportError> {
        let import = self.get(caller, id).await?;
        import.state.check_rows_listable()?;
        let mut rows = self.store.rows(id, action, after, limit + 1).await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next_after = rows.last().filter(|_| more).map(|row| row.row_number);
        Ok(RowPage { rows, next_after })
    }

    /// The import whose report the caller asks for, once the report is available; its rows
    /// are then read with [`ImportApp::report_rows`].
    pub async fn report(&self, caller: &Caller, id: ImportId) -> Result<Import, ImportError> {
        let import = self.get(caller, id).await?;
        import.state.check_report_ready(import.columns.is_some())?;
        Ok(import)
    }

    /// The report's next rows, in file order after row `after`.
    pub async fn report_rows(
        &self,
        id: ImportId,
        after: i64,
        limit: u64,
    ) -> Result<Vec<StagedRow>, ImportError> {
        Ok(self.store.rows(id, None, after, limit).await?)
    }
}
