//! `roster import list`, `show` and `rows`: the account's imports, one import as it is now, and
//! an import's rows with their changes, errors and notes.

use roster_proto::imports::v1 as pb;

use super::{Client, RowFilter, State, described, how_read, print_preview, short_state};
use crate::output::{self, Paging};

impl Client<'_> {
    pub(super) async fn list(
        self,
        account_id: String,
        state: Option<State>,
        paging: Paging,
    ) -> anyhow::Result<()> {
        let (items, next) = output::pages(&paging, "imports", async |page_token| {
            let mut imports = self.imports.clone();
            let response = self
                .connection
                .call(
                    "roster.imports.v1.ImportService/ListImports",
                    None,
                    pb::ListImportsRequest {
                        account_id: account_id.clone(),
                        page_size: paging.page_size,
                        page_token,
                        state: state.map_or(0, |state| state.proto() as i32),
                    },
                    async |request| imports.list_imports(request).await,
                )
                .await?;
            Ok((response.imports, response.next_page_token))
        })
        .await?;
        let response = pb::ListImportsResponse {
            imports: items,
            next_page_token: next,
        };
        output::show(self.connection.json(), &response, |response| {
            output::listing(
                "No imports.",
                &[
                    "id", "file", "state", "rows", "errors", "created", "message",
                ],
                response.imports.iter().map(|import| {
                    [
                        import.id.clone(),
                        import.file_name.clone(),
                        short_state(import.state),
                        import.total_row_count.to_string(),
                        import.error_count.to_string(),
                        output::time(import.create_time.as_ref()),
                        import.error_message.clone(),
                    ]
                }),
                &response.next_page_token,
            )
        })
    }

    pub(super) async fn show(self, import_id: String) -> anyhow::Result<()> {
        let mut imports = self.imports.clone();
        let response = self
            .connection
            .call(
                "roster.imports.v1.ImportService/GetImport",
                None,
                pb::GetImportRequest { import_id },
                async |request| imports.get_import(request).await,
            )
            .await?;
        output::show(self.connection.json(), &response, |response| {
            let import = output::returned(response.import.as_ref(), "import")?;
            print_preview(import)?;
            if let Some(read) = how_read(import) {
                output::outln!("  {read}")?;
            }
            if import.applied_count > 0 || import.failed_count > 0 {
                output::outln!(
                    "  applied {}, failed {}",
                    import.applied_count,
                    import.failed_count
                )?;
            }
            Ok(())
        })
    }

    pub(super) async fn rows(
        self,
        import_id: String,
        filter: RowFilter,
        paging: Paging,
    ) -> anyhow::Result<()> {
        let (items, next) = output::pages(&paging, "rows", async |page_token| {
            let mut imports = self.imports.clone();
            let response = self
                .connection
                .call(
                    "roster.imports.v1.ImportService/ListImportRows",
                    None,
                    pb::ListImportRowsRequest {
                        import_id: import_id.clone(),
                        page_size: paging.page_size,
                        page_token,
                        filter: filter.proto() as i32,
                    },
                    async |request| imports.list_import_rows(request).await,
                )
                .await?;
            Ok((response.rows, response.next_page_token))
        })
        .await?;
        let response = pb::ListImportRowsResponse {
            rows: items,
            next_page_token: next,
        };
        output::show(self.connection.json(), &response, |response| {
            if response.rows.is_empty() {
                output::outln!("No rows.")?;
            }
            for row in &response.rows {
                let action = output::short_enum(row.action, "IMPORT_ROW_ACTION_", |action| {
                    pb::ImportRowAction::as_str_name(&action)
                });
                let outcome = output::short_enum(row.outcome, "IMPORT_ROW_OUTCOME_", |outcome| {
                    pb::ImportRowOutcome::as_str_name(&outcome)
                });
                let mut line = format!("row {} {action}", row.row_number);
                if !row.profile_id.is_empty() {
                    line.push_str(&format!(" {}", row.profile_id));
                }
                if row.outcome != pb::ImportRowOutcome::Unspecified as i32 {
                    line.push_str(&format!(" ({outcome})"));
                }
                output::outln!("{line}")?;
                for change in &row.changes {
                    output::outln!(
                        "  {}: '{}' -> '{}'",
                        change.column,
                        change.old_value,
                        change.new_value
                    )?;
                }
                for error in &row.errors {
                    output::outln!(
                        "  {}",
                        described(&error.column, &error.reason, &error.message)
                    )?;
                }
                for note in &row.notes {
                    output::outln!(
                        "  note {}",
                        described(&note.column, &note.reason, &note.message)
                    )?;
                }
                if !row.outcome_message.is_empty() {
                    output::outln!("  {}", row.outcome_message)?;
                }
            }
            output::more_hint(&response.next_page_token);
            Ok(())
        })
    }
}
