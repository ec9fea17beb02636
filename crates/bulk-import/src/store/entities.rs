//! sea-orm entities of bulk-import's tables. Times are milliseconds since the Unix epoch, so
//! that lease and expiry comparisons read the same on SQLite and PostgreSQL.

pub mod import {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "imports")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub account_id: Uuid,
        pub file_name: String,
        /// `ImportState` code.
        pub state: i32,
        /// The WHATWG name of the encoding the file is read in (`UTF-8`, `windows-1251`), once
        /// the upload is complete. Imports of older versions hold `Windows-1252`.
        pub encoding: Option<String>,
        /// The template headers the file has, in file order (JSON array), once validated.
        pub columns: Option<String>,
        pub file_bytes: i64,
        pub total_row_count: i64,
        pub create_count: i64,
        pub update_count: i64,
        pub unchanged_count: i64,
        pub error_count: i64,
        pub applied_count: i64,
        pub failed_count: i64,
        pub error_message: String,
        /// `<caller>:<account id>:<request_id>` of the creating request, unique.
        pub request_key: Option<String>,
        pub submit_request_id: Option<String>,
        pub cancel_request_id: Option<String>,
        /// The caller key's name that created the import.
        pub created_by: String,
        pub created_at: i64,
        pub updated_at: i64,
        pub expire_at: Option<i64>,
        pub version: i64,
        /// The W3C `traceparent` of the request that created the import; its validation and
        /// apply continue that trace. Empty when tracing was off.
        pub trace_context: String,
        /// Whether the profiles the apply creates get a welcome email (set by SubmitImport).
        pub welcome_emails: bool,
        /// The request named `encoding` (rather than it being detected).
        pub encoding_given: bool,
        /// The column delimiter (`,` or `;`), once validation read the header row.
        pub delimiter: Option<String>,
        /// `CRLF`, `LF`, `CR` or `MIXED`, once validation read the file's lines.
        pub line_ending: Option<String>,
        /// Rows per batch of the apply, set by SubmitImport; NULL for imports submitted by
        /// versions that did not pin it.
        pub apply_batch_size: Option<i32>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod chunk {
    use sea_orm::entity::prelude::*;

    /// A piece of an uploaded file, kept until validation has read it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "import_chunks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub import_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i32,
        pub data: Vec<u8>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod row {
    use sea_orm::entity::prelude::*;

    /// One staged data row: the plan made by validation. What the apply did with it is an
    /// [`outcome`](super::outcome) row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "import_rows")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub import_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub row_number: i64,
        /// `RowAction` code.
        pub action: i32,
        pub profile_id: Option<String>,
        /// The canonical username the row would take (same-username-twice detection).
        pub claim: Option<String>,
        /// Cell values by template header (JSON object).
        pub cells: String,
        /// JSON arrays.
        pub changes: String,
        pub errors: String,
        pub notes: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod outcome {
    use sea_orm::entity::prelude::*;

    /// What the apply did with one staged row: a narrow row inserted once (updated only when
    /// a row skipped by a cancel turns out to have been written). A staged row without one is
    /// still pending.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "import_outcomes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub import_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub row_number: i64,
        /// `RowOutcome` code.
        pub outcome: i32,
        pub message: String,
        /// The profile the row created.
        pub profile_id: Option<String>,
        /// The lease owner that recorded the outcome.
        pub applied_by: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::row::Entity",
            from = "(Column::ImportId, Column::RowNumber)",
            to = "(super::row::Column::ImportId, super::row::Column::RowNumber)"
        )]
        Row,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod claim {
    use sea_orm::entity::prelude::*;

    /// Something a staged row would take that no other row of the file may take too: a
    /// username's skeleton, an extension number. Kept only while the import validates, to find
    /// such repeats with one query over the file.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "import_claims")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub import_id: Uuid,
        /// [`crate::domain::import::Claimed`] code.
        #[sea_orm(primary_key, auto_increment = false)]
        pub kind: i32,
        #[sea_orm(primary_key, auto_increment = false)]
        pub value: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub row_number: i64,
        /// The row's profile holds it already (an extension number it keeps).
        pub held: bool,
        /// Another profile that holds the extension number now, and its username.
        pub holder_id: Option<String>,
        pub holder_username: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod lease {
    use sea_orm::entity::prelude::*;

    /// Which replica works on an import: one owner at a time, until `expires_at`, renewed by
    /// heartbeats. An expired lease may be claimed by any replica.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "import_leases")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub import_id: Uuid,
        pub owner: Option<String>,
        pub expires_at: i64,
        pub heartbeat_at: i64,
        /// How many times the import was claimed (1 unless a replica died or stopped).
        pub claims: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod purged {
    use sea_orm::entity::prelude::*;

    /// An import retention deleted, whose staged rows and file pieces are still being deleted
    /// a batch at a time.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "import_purges")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub import_id: Uuid,
        /// When it was deleted (milliseconds since the epoch).
        pub purged_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
