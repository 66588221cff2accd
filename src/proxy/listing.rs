//! ListObjectsV2 one page at a time: reads only as much of the namespace as the page needs,
//! not the whole prefix per page (which made listing a bucket of n objects O(n²)).
//!
//! S3 lists keys in byte order; the master lists a directory's children in name order. The
//! two differ where a directory `d` (whose keys all start with `d/`) has siblings named `d`
//! followed by a byte below `/` (`d-1`, `d.zip`): they sort before `d/`. The walk keeps the
//! children it has read in a small sorted buffer keyed by how each sorts as a key (`name`,
//! or `name/` for a directory) and takes the first one out only once a child read later sorts
//! above it, so it emits in key order after reading at most the few siblings that sort
//! between a directory's name and its `/`. A resumed listing starts each directory at the
//! first child that can hold keys past the last one returned.

use std::collections::BTreeMap;

use crate::error::FsError;
use crate::proto::FileInfo;

/// Most directories a resumed listing looks up by name where they may sort after the key it
/// resumes from (see [`Cursor::open`]); past this it lists from the shortest of them.
const MAX_SHADOW_LOOKUPS: usize = 4;

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub key: String,
    /// The object's status; `None` for a common prefix.
    pub info: Option<FileInfo>,
}

/// The children of directories, a page at a time, in name order.
#[async_trait::async_trait]
pub trait DirectoryPages {
    /// Children of `dir` named after `start_after` (all if `None`), and whether more follow.
    async fn page(&self, dir: &str, start_after: Option<&str>) -> Result<(Vec<FileInfo>, bool), FsError>;
    /// The status of `path`.
    async fn status(&self, path: &str) -> Result<FileInfo, FsError>;
}

/// What to list: keys below `prefix` in the bucket rooted at `root`, after `after`.
#[derive(Debug, Clone, Copy)]
pub struct ListRequest<'a> {
    /// The bucket's directory (`/bucket`).
    pub root: &'a str,
    pub prefix: &'a str,
    /// Keys whose rest after the prefix holds it are rolled up into one common prefix.
    pub delimiter: Option<&'a str>,
    /// Only keys above this one (empty: from the first).
    pub after: &'a str,
    pub max_keys: usize,
}

/// The page `request` asks for, and whether more keys follow it.
pub async fn list_page(source: &(dyn DirectoryPages + Sync), request: ListRequest<'_>) -> Result<(Vec<Listed>, bool), FsError> {
    let delimiter = request.delimiter.filter(|d| !d.is_empty());
    // The deepest directory the prefix names in full.
    let dir_part = request.prefix.rfind('/').map(|i| &request.prefix[..i]).unwrap_or("");
    let (dir, key_prefix) =
        if dir_part.is_empty() { (request.root.to_string(), String::new()) } else { (format!("{}/{dir_part}", request.root), format!("{dir_part}/")) };
    let mut walk = Walk { source, request, delimiter, out: Vec::new(), last_common: None, resume: Resume::After(request.after) };
    // Keys must start with the prefix and lie above `after`: start at whichever is later.
    let from = if request.after >= request.prefix {
        if !request.after.starts_with(request.prefix) {
            // Above every key starting with the prefix.
            return Ok((Vec::new(), false));
        }
        // After a common prefix nothing it rolls up is wanted: skip the whole block.
        if let Some(common) = walk.common_prefix(request.after) {
            walk.resume = Resume::PastBlock(common);
        }
        walk.resume.clone()
    } else {
        Resume::After(request.prefix)
    };
    // A prefix naming a directory in full lists that directory's own marker when it is empty.
    if request.prefix.ends_with('/') && request.prefix > request.after {
        match source.status(&dir).await {
            Ok(info) if info.is_directory && info.child_count == 0 => walk.emit(request.prefix.to_string(), FileInfo { length: 0, ..info }),
            Ok(_) | Err(FsError::NotFound { .. }) | Err(FsError::NotADirectory { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    // Only children named with the rest of the prefix hold keys starting with it.
    let wanted_names = request.prefix[key_prefix.len()..].to_string();
    let mut stack = vec![Cursor::open(source, dir, key_prefix, &from, wanted_names).await?];
    while walk.out.len() <= request.max_keys {
        let Some(top) = stack.last_mut() else { break };
        match top.next(source).await? {
            Some(child) => {
                if let Some(below) = walk.visit(top, child).await? {
                    stack.push(below);
                }
            }
            None => {
                stack.pop();
            }
        }
    }
    let truncated = walk.out.len() > request.max_keys;
    walk.out.truncate(request.max_keys);
    Ok((walk.out, truncated))
}

/// The listing being built.
struct Walk<'s, 'r> {
    source: &'s (dyn DirectoryPages + Sync),
    request: ListRequest<'r>,
    delimiter: Option<&'r str>,
    out: Vec<Listed>,
    /// The last common prefix emitted: its keys come together, it is listed once.
    last_common: Option<String>,
    /// Where the listing resumes.
    resume: Resume<'r>,
}

/// Where a listing resumes: after a key, or past every key starting with a common prefix
/// the previous page ended with.
#[derive(Debug, Clone)]
enum Resume<'r> {
    After(&'r str),
    PastBlock(String),
}

impl Resume<'_> {
    fn key(&self) -> &str {
        match self {
            Resume::After(key) => key,
            Resume::PastBlock(common) => common,
        }
    }
}

impl Walk<'_, '_> {
    /// The common prefix `key` rolls up into, if the delimiter occurs after the prefix.
    fn common_prefix(&self, key: &str) -> Option<String> {
        let d = self.delimiter?;
        let rest = key.strip_prefix(self.request.prefix)?;
        rest.find(d).map(|i| key[..self.request.prefix.len() + i + d.len()].to_string())
    }

    /// Adds `key` (an object or a directory marker) or its common prefix, if it belongs here.
    fn emit(&mut self, key: String, info: FileInfo) {
        if !key.starts_with(self.request.prefix) {
            return;
        }
        match self.common_prefix(&key) {
            Some(common) => self.emit_common(common),
            None if key.as_str() > self.request.after => self.out.push(Listed { key, info: Some(info) }),
            None => {}
        }
    }

    fn emit_common(&mut self, common: String) {
        if common.as_str() > self.request.after && self.last_common.as_ref() != Some(&common) {
            self.last_common = Some(common.clone());
            self.out.push(Listed { key: common, info: None });
        }
    }

    /// Lists `child` of `parent`: an object, a marker, a common prefix, or a directory to
    /// walk next (returned).
    async fn visit(&mut self, parent: &Cursor, child: FileInfo) -> Result<Option<Cursor>, FsError> {
        let name = child.name.clone();
        if !child.is_directory {
            if child.complete {
                self.emit(format!("{}{name}", parent.key_prefix), child);
            }
            return Ok(None);
        }
        let key = format!("{}{name}/", parent.key_prefix);
        let (prefix, after) = (self.request.prefix, self.request.after);
        // Below it only keys starting with `key`: none wanted if they cannot start with the
        // prefix, or all lie below `after`.
        let wanted = key.starts_with(prefix) || prefix.starts_with(key.as_str());
        if !wanted || (after > key.as_str() && !after.starts_with(key.as_str())) {
            return Ok(None);
        }
        if key.len() >= prefix.len() {
            if let Some(common) = self.common_prefix(&key) {
                // Everything below rolls up into this one prefix.
                self.emit_common(common);
                return Ok(None);
            }
        }
        if child.child_count == 0 {
            // An empty directory shows as its marker.
            self.emit(key, FileInfo { length: 0, ..child });
            return Ok(None);
        }
        let from = if self.resume.key().starts_with(key.as_str()) { self.resume.clone() } else { Resume::After("") };
        Ok(Some(Cursor::open(self.source, format!("{}/{name}", parent.dir), key, &from, String::new()).await?))
    }
}

/// One directory being walked in key order.
struct Cursor {
    /// The directory's path.
    dir: String,
    /// Its key in the bucket with the trailing `/` (empty for the bucket itself).
    key_prefix: String,
    /// Children read, by how they sort as keys, not yet listed.
    pending: BTreeMap<String, FileInfo>,
    /// The last child name read from the master: every later one sorts above it.
    last_read: Option<String>,
    /// Where the next page starts (`None` once the directory is read to its end).
    next_page: Option<Option<String>>,
    /// Only children whose names start with this are wanted (they come together).
    wanted_names: String,
}

impl Cursor {
    /// A cursor on `dir` (key `key_prefix`) that skips children holding no key wanted when
    /// resuming `from`, and stops after the children named with `wanted_names`.
    async fn open(source: &(dyn DirectoryPages + Sync), dir: String, key_prefix: String, from: &Resume<'_>, wanted_names: String) -> Result<Self, FsError> {
        let mut cursor = Cursor { dir, key_prefix, pending: BTreeMap::new(), last_read: None, next_page: Some(None), wanted_names };
        let Some(rest) = from.key().strip_prefix(cursor.key_prefix.as_str()).filter(|r| !r.is_empty()) else {
            return Ok(cursor);
        };
        // The child `from` falls in: children named below it hold only smaller keys, except a
        // directory whose name is a prefix of it followed by a byte below `/` (`d` and `d.zip`):
        // `d/...` sorts above `d.zip`. Those few are looked up; the listing starts at `first`.
        let first = rest.split('/').next().unwrap_or(rest);
        let shadowed: Vec<&str> = first.char_indices().filter(|&(i, c)| i > 0 && c < '/').map(|(i, _)| &first[..i]).collect();
        let past_block = matches!(from, Resume::PastBlock(_)) && !rest.contains('/');
        if shadowed.len() > MAX_SHADOW_LOOKUPS {
            // Too many to look up one by one: list from the shortest instead (it and every
            // longer one sort at or above it), reading the names in between as well.
            cursor.next_page = Some(start_after_for(shadowed[0], false));
            return Ok(cursor);
        }
        for name in shadowed {
            match source.status(&format!("{}/{name}", cursor.dir)).await {
                Ok(info) if info.is_directory => cursor.add(info),
                Ok(_) | Err(FsError::NotFound { .. }) | Err(FsError::InvalidPath { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        cursor.next_page = Some(start_after_for(first, past_block));
        Ok(cursor)
    }

    /// Buffers a child read from the master.
    fn add(&mut self, child: FileInfo) {
        let sort_key = if child.is_directory { format!("{}/", child.name) } else { child.name.clone() };
        self.pending.insert(sort_key, child);
    }

    /// The next child in key order, `None` at the end of the directory.
    async fn next(&mut self, source: &(dyn DirectoryPages + Sync)) -> Result<Option<FileInfo>, FsError> {
        loop {
            let settled = match (self.pending.keys().next(), &self.next_page, &self.last_read) {
                (None, None, _) => return Ok(None),
                (Some(_), None, _) => true,
                (Some(first), Some(_), Some(last)) => first <= last,
                _ => false,
            };
            if settled {
                return Ok(self.pending.pop_first().map(|(_, child)| child));
            }
            let start = self.next_page.take().flatten();
            let (children, more) = source.page(&self.dir, start.as_deref()).await?;
            let Some(last) = children.last().map(|c| c.name.clone()) else {
                continue;
            };
            // Names come in order: past the wanted ones, none is wanted again.
            let past_wanted = !last.starts_with(self.wanted_names.as_str()) && last > self.wanted_names;
            self.next_page = (more && !past_wanted).then(|| Some(last.clone()));
            self.last_read = Some(last);
            for child in children {
                self.add(child);
            }
        }
    }
}

/// The name to list a directory's children after so that the listing starts at `first`
/// (with a few extra names below it, which the walk filters) or, with `past_block`, past
/// every name starting with `first`. `None`: from the first child.
fn start_after_for(first: &str, past_block: bool) -> Option<String> {
    let is_name = |s: &str| !s.is_empty() && !s.contains('/') && crate::core::path::FsPath::parse(&format!("/{s}")).is_ok();
    // No name holds a control character or runs past 255 bytes: from such a point on,
    // listing after the part before it covers every name at or above `first`.
    let cut = first.char_indices().find(|&(i, c)| c.is_control() || i + c.len_utf8() > crate::core::path::MAX_NAME_BYTES);
    if let Some((end, _)) = cut {
        return Some(&first[..end]).filter(|s| is_name(s)).map(str::to_string);
    }
    // Past every name starting with `s`, but for ones going on with the highest character.
    let past = |s: &str| format!("{s}\u{10FFFF}");
    // Just below `first`: its last character one lower (names hold no `/`, so `0` steps
    // down to `.`), past the names starting with that; else `first` less its last character.
    let mut chars: Vec<char> = first.chars().collect();
    let last = chars.pop();
    let shorter: String = chars.iter().collect();
    let below = last.and_then(|c| match c {
        '0' => Some('.'),
        c => char::from_u32((c as u32).checked_sub(1)?),
    });
    let below = below.map(|b| format!("{shorter}{b}"));
    [past_block.then(|| past(first)), below.as_deref().map(past), below, Some(shorter)].into_iter().flatten().find(|s| is_name(s))
}

#[cfg(test)]
mod tests;
