//! sea-orm entities of the notification service's tables.

pub mod notification {
    use sea_orm::entity::prelude::*;

    /// One queued email and where its delivery is.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notifications")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub account_id: Uuid,
        pub recipient: String,
        pub template: String,
        /// The locale it renders in, after fallback.
        pub locale: String,
        /// The locale the caller asked for.
        pub requested_locale: String,
        /// The template variables as a JSON object; emptied once the notification is final,
        /// since they may hold secrets such as a reset link.
        pub variables: String,
        pub account_display_name: String,
        /// A [`crate::domain::state::DeliveryState`] name.
        pub state: String,
        pub attempts: i32,
        /// Attempts made before the latest retry an operator asked for.
        pub attempts_before_retry: i32,
        pub last_error: Option<String>,
        /// `<id@domain>`, fixed at enqueue so every attempt carries the same one.
        pub message_id: String,
        /// When a QUEUED or RETRYING message is due.
        pub next_attempt_at: Option<DateTimeUtc>,
        /// The worker that holds a SENDING message, and until when.
        pub lease_owner: Option<String>,
        pub lease_until: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub sent_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod attempt {
    use sea_orm::entity::prelude::*;

    /// One finished delivery attempt.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notification_attempts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub notification_id: Uuid,
        /// 1 for the first attempt.
        #[sea_orm(primary_key, auto_increment = false)]
        pub number: i32,
        pub worker: String,
        /// `sent`, `retry` or `failed`.
        pub outcome: String,
        /// The SMTP reply code, when the server answered.
        pub smtp_code: Option<i32>,
        pub error: Option<String>,
        pub started_at: DateTimeUtc,
        pub finished_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod request_key {
    use sea_orm::entity::prelude::*;

    /// An idempotency key (AIP-155): the notification a caller's `request_id` created.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notification_request_keys")]
    pub struct Model {
        /// The caller key's name: request ids are scoped to their caller.
        #[sea_orm(primary_key, auto_increment = false)]
        pub scope: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        pub notification_id: Uuid,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod action_key {
    use sea_orm::entity::prelude::*;

    /// An idempotency key (AIP-155) of a retry or a cancel: the notification it acted on.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notification_action_keys")]
    pub struct Model {
        /// The caller key's name: request ids are scoped to their caller.
        #[sea_orm(primary_key, auto_increment = false)]
        pub scope: String,
        /// `retry` or `cancel`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub operation: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        pub notification_id: Uuid,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
