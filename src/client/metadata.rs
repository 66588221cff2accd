//! Metadata calls of the client: status, listings, directories, renames, deletes,
//! attributes and ownership, and what the masters report about the cluster; each is one
//! request to the leader, retried through a failover (`FileSystem::call`).

use super::*;

impl FileSystem {
    /// Status of a file or directory.
    pub async fn get_status(&self, path: &str) -> Result<FileInfo, FsError> {
        let req = PathRequest { path: path.to_string() };
        self.call("getStatus", |mut c| {
            let req = self.signed(req.clone());
            async move { c.get_status(req).await }
        })
        .await
    }

    /// True if `path` exists.
    pub async fn exists(&self, path: &str) -> Result<bool, FsError> {
        match self.get_status(path).await {
            Ok(_) => Ok(true),
            Err(FsError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The entries of a directory (everything below it with `recursive`); a file lists itself.
    /// Listed entries carry no block lists.
    pub async fn list_status(&self, path: &str, recursive: bool) -> Result<Vec<FileInfo>, FsError> {
        let mut all = Vec::new();
        self.list_status_pages(path, recursive, |page| {
            all.extend(page);
            Ok(())
        })
        .await?;
        Ok(all)
    }

    /// [`Self::list_status`] a page at a time (the master bounds each page), handing each
    /// page to `each` as it arrives: a listing of millions of entries never has to fit in
    /// memory or in one message.
    pub async fn list_status_pages(&self, path: &str, recursive: bool, mut each: impl FnMut(Vec<FileInfo>) -> Result<(), FsError>) -> Result<(), FsError> {
        let mut start_after = String::new();
        loop {
            let (files, next) = self.list_status_page(path, recursive, &start_after).await?;
            each(files)?;
            if next.is_empty() {
                return Ok(());
            }
            start_after = next;
        }
    }

    /// One page of the listing of `path`: the entries after the path `start_after` (empty:
    /// from the first; it need not exist), and the path the next page starts after (empty:
    /// this was the last). Only the first page looks at the under-storage.
    pub async fn list_status_page(&self, path: &str, recursive: bool, start_after: &str) -> Result<(Vec<FileInfo>, String), FsError> {
        let req = ListStatusRequest {
            path: path.to_string(),
            recursive,
            sync_interval_ms: self.inner.options.metadata_sync_interval_ms,
            start_after: start_after.to_string(),
            limit: 0,
        };
        let page = self
            .call("listStatus", |mut c| {
                let req = self.signed(req.clone());
                async move { c.list_status(req).await }
            })
            .await?;
        Ok((page.files, page.next_start_after))
    }

    /// Creates a directory.
    pub async fn create_directory(&self, path: &str, recursive: bool, allow_exists: bool) -> Result<FileInfo, FsError> {
        let req = CreateDirectoryRequest {
            path: path.to_string(),
            recursive,
            allow_exists,
            ownership: Some(self.ownership(0o777)),
            request_id: self.next_request_id(),
        };
        self.call("createDirectory", |mut c| {
            let req = self.signed(req.clone());
            async move { c.create_directory(req).await }
        })
        .await
    }

    /// Deletes a file or directory.
    pub async fn delete(&self, path: &str, recursive: bool) -> Result<(), FsError> {
        let req = DeleteRequest { path: path.to_string(), recursive, request_id: self.next_request_id() };
        self.call("delete", |mut c| {
            let req = self.signed(req.clone());
            async move { c.delete(req).await }
        })
        .await
        .map(|_| ())
    }

    /// Renames `src` to `dst` (which must not exist).
    pub async fn rename(&self, src: &str, dst: &str) -> Result<(), FsError> {
        let req = RenameRequest { src: src.to_string(), dst: dst.to_string(), request_id: self.next_request_id() };
        self.call("rename", |mut c| {
            let req = self.signed(req.clone());
            async move { c.rename(req).await }
        })
        .await
        .map(|_| ())
    }

    /// Frees a file's (or directory's) blocks from memory; only persisted data may be freed.
    pub async fn free(&self, path: &str, recursive: bool) -> Result<u64, FsError> {
        let req = FreeRequest { path: path.to_string(), recursive };
        self.call("free", |mut c| {
            let req = self.signed(req.clone());
            async move { c.free(req).await }
        })
        .await
        .map(|r| r.blocks_freed)
    }

    /// Pins (or unpins) a file, or a directory with everything below it: pinned blocks are
    /// never evicted from workers and `free` refuses them.
    pub async fn set_pinned(&self, path: &str, pinned: bool) -> Result<FileInfo, FsError> {
        self.set_attribute(path, Some(pinned), None).await
    }

    /// Sets a time to live: `action` runs once `ttl_ms` have passed since the creation of
    /// the file or directory. `None` removes the TTL.
    pub async fn set_ttl(&self, path: &str, ttl: Option<(i64, TtlAction)>) -> Result<FileInfo, FsError> {
        if let Some((ttl_ms, _)) = ttl.filter(|(ms, _)| *ms <= 0) {
            return Err(FsError::InvalidArgument { reason: format!("TTL must be a positive number of milliseconds, not {ttl_ms}") });
        }
        let (ttl_ms, action) = ttl.unwrap_or((-1, TtlAction::TtlDelete));
        self.set_attribute(path, None, Some((ttl_ms, action))).await
    }

    async fn set_attribute(&self, path: &str, pinned: Option<bool>, ttl: Option<(i64, TtlAction)>) -> Result<FileInfo, FsError> {
        let req = SetAttributeRequest {
            path: path.to_string(),
            pinned,
            ttl_ms: ttl.map(|(ms, _)| ms),
            ttl_action: ttl.map_or(TtlAction::TtlDelete, |(_, a)| a) as i32,
            request_id: self.next_request_id(),
            ..SetAttributeRequest::default()
        };
        self.send_set_attribute(req).await
    }

    /// Changes owner (superusers only), group (superusers, or the owner into a group it is
    /// in) and/or mode (the owner or a superuser) of `path`, and with `recursive` of
    /// everything below it.
    pub async fn set_ownership(&self, path: &str, change: crate::core::namespace::OwnershipChange) -> Result<FileInfo, FsError> {
        let req = SetAttributeRequest {
            path: path.to_string(),
            owner: change.owner,
            group: change.group,
            mode: change.mode,
            recursive: change.recursive,
            request_id: self.next_request_id(),
            ..SetAttributeRequest::default()
        };
        self.send_set_attribute(req).await
    }

    async fn send_set_attribute(&self, req: SetAttributeRequest) -> Result<FileInfo, FsError> {
        self.call("setAttribute", |mut c| {
            let req = self.signed(req.clone());
            async move { c.set_attribute(req).await }
        })
        .await
    }

    /// Every worker the leader knows.
    pub async fn workers(&self) -> Result<Vec<WorkerReport>, FsError> {
        self.call("getWorkers", |mut c| {
            let req = self.signed(Empty {});
            async move { c.get_workers(req).await }
        })
        .await
        .map(|r| r.workers)
    }

    /// The leader's view of the masters and the cluster.
    pub async fn master_info(&self) -> Result<MasterInfoResponse, FsError> {
        self.call("getMasterInfo", |mut c| {
            let req = self.signed(Empty {});
            async move { c.get_master_info(req).await }
        })
        .await
    }

    /// Every running master the coordinator lists, each as it describes itself (role, epoch,
    /// applied journal sequence); a master that does not answer is listed as unreachable.
    pub async fn masters(&self) -> Result<Vec<MasterStatus>, FsError> {
        let answers = self
            .ask_each_master(|mut c| {
                let req = self.signed(Empty {});
                async move { c.get_master_info(req).await }
            })
            .await?;
        let mut statuses = Vec::with_capacity(answers.len());
        for (address, answer) in answers {
            match answer {
                Ok(info) => statuses.extend(info.masters),
                Err(e) => {
                    tracing::debug!(%address, error = %e, "master did not answer");
                    statuses.push(MasterStatus { address, role: "unreachable".into(), ..MasterStatus::default() });
                }
            }
        }
        Ok(statuses)
    }

    /// Sends one request to every master the coordinator lists (not only the leader);
    /// returns each address with its answer.
    async fn ask_each_master<T, F, Fut>(&self, ask: F) -> Result<Vec<(String, Result<T, FsError>)>, FsError>
    where
        F: Fn(MasterServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut answers = Vec::new();
        for address in self.inner.leader.coordinator().masters().await? {
            let answer = match rpc::connect(&address, self.inner.options.request_timeout, self.inner.options.security.tls.as_ref()).await {
                Ok(channel) => ask(MasterServiceClient::new(channel)).await.map(tonic::Response::into_inner).map_err(status),
                Err(e) => Err(e),
            };
            answers.push((address, answer));
        }
        Ok(answers)
    }

    /// Every running master's namespace digest and position (a full pass over each
    /// master's namespace: for consistency checks). Masters that do not answer are left out.
    pub async fn state_digests(&self) -> Result<Vec<StateDigest>, FsError> {
        let answers = self
            .ask_each_master(|mut c| {
                let req = self.signed(Empty {});
                async move { c.get_state_digest(req).await }
            })
            .await?;
        Ok(answers.into_iter().filter_map(|(_, answer)| answer.ok()).collect())
    }
}
