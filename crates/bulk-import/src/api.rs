//! gRPC handlers of ImportService.

use roster_proto::imports::v1::import_service_server::ImportService;

/// ImportService. Its RPCs answer UNIMPLEMENTED until the import workflow lands.
pub struct ImportApi;

impl ImportService for ImportApi {}
