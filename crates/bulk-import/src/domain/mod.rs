//! Pure types and rules of bulk import: no gRPC, no SQL.
//!
//! - [`encoding`]: which encoding an upload is in, decided while it streams in.
//! - [`reader`]: decoding and CSV parsing, piece by piece, rows numbered as a spreadsheet does.
//! - [`columns`]: the template's columns and the reading of a header row.
//! - [`assignments`]: the Extensions and Roles cells (several values to a cell).
//! - [`cells`]: trimming and formula (un)escaping of one cell.
//! - [`rows`]: what becomes of each row (create / update / unchanged / error) and its diff.
//! - [`csv_out`]: writing the template and the report.
//! - [`state`]: the life cycle of imports and rows: which steps each state allows.
//! - [`import`]: an import and its staged rows, with typed ids.
//! - [`report`]: the per-row report's columns and cells.

pub mod assignments;
pub mod cells;
pub mod columns;
pub mod csv_out;
pub mod encoding;
pub mod import;
pub mod reader;
pub mod report;
pub mod rows;
pub mod state;
