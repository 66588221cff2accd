//! The under-storages of one process: the root one (`tachyon.underfs.address`) and one per
//! mounted URI, opened on first use and kept (an HDFS or S3 client is costly to build).
//! The namespace decides where a path lives ([`crate::core::namespace::Namespace::resolve_ufs`]);
//! this only opens what it names.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::{UfsOptions, UnderFs};
use crate::core::namespace::{Mount, UfsLocation};
use crate::error::FsError;

/// Most distinct mounted under-storages kept open at once; more are opened per use.
const MAX_OPEN_MOUNTS: usize = 64;

/// Opened under-storages by mount.
pub struct UfsMounts {
    root: Option<Arc<dyn UnderFs>>,
    /// Settings from this process's configuration; a mount's own options go on top.
    base: UfsOptions,
    opened: Mutex<BTreeMap<Mount, Arc<dyn UnderFs>>>,
    /// Opens mount credentials sealed in the journal (`None`: this process has no cluster
    /// secret, so sealed credentials cannot be used here).
    sealer: Option<Arc<crate::security::SecretSealer>>,
}

impl UfsMounts {
    /// The root under-storage (if configured) and the settings mounts start from.
    pub fn new(root: Option<Arc<dyn UnderFs>>, base: UfsOptions) -> Self {
        UfsMounts { root, base, opened: Mutex::new(BTreeMap::new()), sealer: None }
    }

    /// Uses `sealer` to open sealed mount credentials.
    pub fn with_sealer(mut self, sealer: Option<crate::security::SecretSealer>) -> Self {
        self.sealer = sealer.map(Arc::new);
        self
    }

    /// The root under-storage, if configured.
    pub fn root(&self) -> Option<&Arc<dyn UnderFs>> {
        self.root.as_ref()
    }

    /// The under-storage mounted as `mount`, opened now if it is not yet.
    pub fn open_mount(&self, mount: &Mount) -> Result<Arc<dyn UnderFs>, FsError> {
        if let Some(ufs) = self.opened.lock().unwrap_or_else(PoisonError::into_inner).get(mount) {
            return Ok(ufs.clone());
        }
        let plain = crate::security::open_options(self.sealer.as_deref(), &mount.options).map_err(|reason| FsError::InvalidArgument { reason })?;
        let options = self.base.with_mount_options(&plain).map_err(|reason| FsError::InvalidArgument { reason })?;
        let ufs = super::open(&mount.ufs_uri, &options)
            .map_err(|e| FsError::InvalidArgument { reason: format!("cannot open the mounted under-storage {}: {e}", mount.ufs_uri) })?;
        let mut opened = self.opened.lock().unwrap_or_else(PoisonError::into_inner);
        if opened.len() < MAX_OPEN_MOUNTS {
            opened.insert(mount.clone(), ufs.clone());
        }
        Ok(ufs)
    }

    /// The under-storage holding `location` and the path there; `why` names the operation
    /// for the error when the root has no under-storage.
    pub fn open(&self, location: &UfsLocation, why: &str) -> Result<(Arc<dyn UnderFs>, String), FsError> {
        let ufs = match &location.mount {
            Some(point) => self.open_mount(&point.mount)?,
            None => self
                .root
                .clone()
                .ok_or_else(|| FsError::InvalidArgument { reason: format!("{why} needs an under-storage: set {}", crate::config::UNDERFS_ADDRESS) })?,
        };
        Ok((ufs, location.relative.clone()))
    }
}
