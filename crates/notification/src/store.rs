//! The notification service's database schema.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

/// The notification service's migrations, applied in order.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        Vec::new()
    }
}
