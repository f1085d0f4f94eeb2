//! The key tree on znodes: which znodes are keys, and the writes that keep that true.
//!
//! A registry key is a znode whose data was written at least once (`stat.version > 0`): every
//! `put` writes the value with a create *and* a set in one transaction, so a new key starts at
//! version 1. Znodes at version 0 are structure, not keys: implied parents (created empty by
//! `put` for its missing ancestors) and lock nodes. They are listed by `children` but not seen by
//! `get`, `exists` or subscribers, so a subscriber of `/nodes` sees `/nodes/a/b` added, not a
//! spurious empty `/nodes/a` first.

use registry_api::{Mode, RegistryError, path};
use zookeeper_client as zk;

use crate::error::{BACKEND, from_zk};

/// Whether a znode with this stat is a registry key (see the module docs).
pub(crate) fn is_key(stat: &zk::Stat) -> bool {
    stat.version > 0
}

/// Why a `put` failed.
pub(crate) fn conflict(key: &str, owner: i64) -> RegistryError {
    RegistryError::Conflict {
        path: key.to_owned(),
        reason: if owner == 0 {
            "it is a persistent key written by someone else".to_owned()
        } else {
            format!("it is an ephemeral key of another live session ({owner:#x})")
        },
    }
}

/// Creates or overwrites `key`, creating missing parents as empty persistent znodes.
///
/// # Notable behaviors
/// - A key of another session (`ephemeralOwner` not ours) is never overwritten: `Conflict`.
/// - Changing a key between persistent and ephemeral deletes and re-creates it in one
///   transaction, so nobody sees it missing; subscribers see `Removed` then `Added`.
/// - Concurrent writers retry on version conflicts; the last write wins.
///
/// # Notable errors
/// `InvalidPath` when the parent is ephemeral, or when an ephemeral put hits a node with children.
pub(crate) async fn put(
    client: &zk::Client,
    acls: zk::Acls<'static>,
    session_id: i64,
    key: &str,
    value: &[u8],
    mode: Mode,
) -> Result<(), RegistryError> {
    let want_ephemeral = mode == Mode::Ephemeral;
    loop {
        let stat = client.check_stat(key).await.map_err(|e| from_zk(e, key))?;
        let Some(stat) = stat else {
            match create_key(client, acls, key, value, mode).await {
                Ok(()) => return Ok(()),
                Err(zk::Error::NodeExists) => continue,
                Err(zk::Error::NoNode) => {
                    make_parents(client, acls, key).await?;
                    continue;
                }
                Err(error) => return Err(from_zk(error, key)),
            }
        };
        let owner = stat.ephemeral_owner;
        if owner != 0 && owner != session_id {
            return Err(conflict(key, owner));
        }
        if (owner != 0) == want_ephemeral {
            match client.set_data(key, value, Some(stat.version)).await {
                Ok(_) => return Ok(()),
                // Changed or replaced since we looked: look again.
                Err(zk::Error::BadVersion | zk::Error::NoNode) => continue,
                Err(error) => return Err(from_zk(error, key)),
            }
        }
        if want_ephemeral && stat.num_children > 0 {
            return Err(RegistryError::InvalidPath {
                path: key.to_owned(),
                reason: "it has children, and ephemeral keys cannot have children".to_owned(),
            });
        }
        match replace_key(client, acls, key, value, mode, stat.version).await {
            Ok(()) => return Ok(()),
            Err(
                zk::Error::BadVersion
                | zk::Error::NoNode
                | zk::Error::NodeExists
                | zk::Error::NotEmpty,
            ) => continue,
            Err(error) => return Err(from_zk(error, key)),
        }
    }
}

/// Creates `key` as a key (version 1) in one transaction.
pub(crate) async fn create_key(
    client: &zk::Client,
    acls: zk::Acls<'static>,
    key: &str,
    value: &[u8],
    mode: Mode,
) -> Result<(), zk::Error> {
    let options = create_mode(mode).with_acls(acls);
    let mut writer = client.new_multi_writer();
    writer.add_create(key, value, &options)?;
    writer.add_set_data(key, value, None)?;
    writer.commit().await.map(drop).map_err(zk::Error::from)
}

/// Deletes `key` (if still at `version`) and creates it anew with `mode`, atomically.
async fn replace_key(
    client: &zk::Client,
    acls: zk::Acls<'static>,
    key: &str,
    value: &[u8],
    mode: Mode,
    version: i32,
) -> Result<(), zk::Error> {
    let options = create_mode(mode).with_acls(acls);
    let mut writer = client.new_multi_writer();
    writer.add_delete(key, Some(version))?;
    writer.add_create(key, value, &options)?;
    writer.add_set_data(key, value, None)?;
    writer.commit().await.map(drop).map_err(zk::Error::from)
}

fn create_mode(mode: Mode) -> zk::CreateMode {
    match mode {
        Mode::Persistent => zk::CreateMode::Persistent,
        Mode::Ephemeral => zk::CreateMode::Ephemeral,
    }
}

/// Creates the missing ancestors of `path` as empty persistent znodes (not keys).
pub(crate) async fn make_parents(
    client: &zk::Client,
    acls: zk::Acls<'static>,
    path: &str,
) -> Result<(), RegistryError> {
    let Some(parent) = path::parent(path).filter(|p| *p != path::ROOT) else {
        return Ok(());
    };
    make_dir(client, acls, parent).await
}

/// Creates `dir` and its missing ancestors as empty persistent znodes.
pub(crate) async fn make_dir(
    client: &zk::Client,
    acls: zk::Acls<'static>,
    dir: &str,
) -> Result<(), RegistryError> {
    let options = zk::CreateMode::Persistent.with_acls(acls);
    client
        .mkdir(dir, &options)
        .await
        .map_err(|error| match error {
            zk::Error::NoNode => RegistryError::Backend {
                backend: BACKEND,
                message: "the namespace node was deleted; reconnect to re-create it".to_owned(),
            },
            other => from_zk(other, dir),
        })
}

/// The value of `key`, or `None` if it is missing or not a key.
pub(crate) async fn get(client: &zk::Client, key: &str) -> Result<Option<Vec<u8>>, RegistryError> {
    match client.get_data(key).await {
        Ok((value, stat)) => Ok(is_key(&stat).then_some(value)),
        Err(zk::Error::NoNode) => Ok(None),
        Err(error) => Err(from_zk(error, key)),
    }
}

/// Whether `key` holds a value.
pub(crate) async fn exists(client: &zk::Client, key: &str) -> Result<bool, RegistryError> {
    match client.check_stat(key).await {
        Ok(stat) => Ok(stat.is_some_and(|stat| is_key(&stat))),
        Err(error) => Err(from_zk(error, key)),
    }
}

/// The sorted names of the znodes directly below `parent` (keys, implied parents, lock dirs).
pub(crate) async fn children(
    client: &zk::Client,
    parent: &str,
) -> Result<Vec<String>, RegistryError> {
    match client.list_children(parent).await {
        Ok(mut names) => {
            names.sort();
            Ok(names)
        }
        Err(zk::Error::NoNode) => Ok(Vec::new()),
        Err(error) => Err(from_zk(error, parent)),
    }
}

/// Every znode at or below `root`, parents before children; empty if `root` is missing.
pub(crate) async fn subtree(client: &zk::Client, root: &str) -> Result<Vec<String>, zk::Error> {
    let mut all = Vec::new();
    let mut level = vec![root.to_owned()];
    while !level.is_empty() {
        // One round trip per level: the requests are sent before any reply is awaited.
        let listings =
            futures::future::join_all(level.iter().map(|node| client.list_children(node))).await;
        let mut next = Vec::new();
        for (node, listing) in level.into_iter().zip(listings) {
            match listing {
                Ok(names) => {
                    next.extend(names.iter().map(|name| path::join(&node, name)));
                    all.push(node);
                }
                Err(zk::Error::NoNode) => {}
                Err(error) => return Err(error),
            }
        }
        level = next;
    }
    Ok(all)
}

/// Deletes `key` and everything below it, then the implied parents it leaves empty.
///
/// # Notable behaviors
/// Deleting a missing key is not an error. A child created during the delete is deleted too.
pub(crate) async fn delete(client: &zk::Client, key: &str) -> Result<(), RegistryError> {
    'again: loop {
        let nodes = subtree(client, key).await.map_err(|e| from_zk(e, key))?;
        for node in nodes.iter().rev() {
            match client.delete(node, None).await {
                Ok(()) | Err(zk::Error::NoNode) => {}
                // Someone added a child meanwhile: walk the tree again.
                Err(zk::Error::NotEmpty) => continue 'again,
                Err(error) => return Err(from_zk(error, node)),
            }
        }
        break;
    }
    prune_empty_parents(client, key).await;
    Ok(())
}

/// Deletes the implied parents of `path` (bottom-up) that are now empty, so that the tree looks
/// like the keys in it. Best effort: a parent that gained a child or a value meanwhile stays.
async fn prune_empty_parents(client: &zk::Client, path: &str) {
    let ancestors: Vec<&str> = path::ancestors(path).collect();
    for parent in ancestors.into_iter().rev() {
        let Ok(Some(stat)) = client.check_stat(parent).await else {
            return;
        };
        if is_key(&stat) || stat.num_children > 0 || stat.ephemeral_owner != 0 {
            return;
        }
        // Version 0 in the delete: a value written meanwhile makes it a key, which stays.
        if client.delete(parent, Some(0)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(version: i32) -> zk::Stat {
        zk::Stat {
            czxid: 1,
            mzxid: 1,
            pzxid: 1,
            ctime: 0,
            mtime: 0,
            version,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: 0,
            data_length: 0,
            num_children: 0,
        }
    }

    #[test]
    fn only_written_znodes_are_keys() {
        assert!(
            !is_key(&stat(0)),
            "implied parents and lock nodes are not keys"
        );
        assert!(is_key(&stat(1)));
    }

    #[test]
    fn conflicts_name_the_owner() {
        let message = conflict("/a", 0x1f).to_string();
        assert!(message.contains("0x1f"), "{message}");
    }
}
