//! The methods that encoded file descriptor sets declare. The deadline layer reads which of them
//! take a request stream, the metrics each one's labels: both walk the sets the same way here.

use prost::Message;
use prost_types::{FileDescriptorSet, MethodDescriptorProto};

/// One method a descriptor set declares.
pub struct DeclaredMethod {
    /// The full name of its service (`roster.identity.v1.ProfileService`).
    pub service: String,
    pub descriptor: MethodDescriptorProto,
}

impl DeclaredMethod {
    /// The `/package.Service/Method` path its calls arrive on.
    pub fn path(&self) -> String {
        format!("/{}/{}", self.service, self.descriptor.name())
    }
}

/// Every method of every service in `descriptor_sets`, in their order; a set that does not
/// decode declares none.
pub fn declared_methods(descriptor_sets: &[&[u8]]) -> Vec<DeclaredMethod> {
    let mut methods = Vec::new();
    for encoded in descriptor_sets {
        let Ok(set) = FileDescriptorSet::decode(*encoded) else {
            continue;
        };
        for file in set.file {
            let package = file.package().to_owned();
            for service in file.service {
                let full = if package.is_empty() {
                    service.name().to_owned()
                } else {
                    format!("{package}.{}", service.name())
                };
                methods.extend(service.method.into_iter().map(|descriptor| DeclaredMethod {
                    service: full.clone(),
                    descriptor,
                }));
            }
        }
    }
    methods
}
